//! What the plugin boundary costs: opening a plugin (dlopen + entry symbol +
//! ABI check + manifest JSON) and one `generate` round trip through the C ABI
//! (request JSON out, generation JSON back, buffer freed), on the echo plugin.
//!
//! Run with `scripts/bench-plugin-abi` (it builds the release echo plugin
//! first). Prints a table; the numbers are recorded in docs/writing-a-backend.md.

use clemhost_plugin_sdk::host::Plugin;
use clemhost_plugin_sdk::{GenerateRequest, Message, ModelConfig};
use std::path::PathBuf;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("bench binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn row(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {name:<44} | {:>9} | {:>10.2} | {:>10.2} | {:>10.2} |",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.9).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let src = release_dir().join("libecho_api.so");
    if !src.exists() {
        eprintln!(
            "{} is missing: run `cargo build --release -p echo_api` first (scripts/bench-plugin-abi does)",
            src.display()
        );
        std::process::exit(1);
    }
    // Each copy is a distinct file, so each open is a real dlopen.
    let dir = std::env::temp_dir().join(format!("clemhost-abi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let copies: Vec<PathBuf> = (0..50)
        .map(|i| {
            let p = dir.join(format!("libecho{i}_api.so"));
            std::fs::copy(&src, &p).expect("copy plugin");
            p
        })
        .collect();
    println!(
        "| {:<44} | {:>9} | {:>10} | {:>10} | {:>10} |",
        "operation", "samples", "p50 µs", "p90 µs", "p99 µs"
    );
    println!(
        "|{:-<46}|{:->11}|{:->12}|{:->12}|{:->12}|",
        "", "", "", "", ""
    );

    let mut opens = Vec::new();
    let mut plugin = None;
    for p in &copies {
        let t = Instant::now();
        let opened = Plugin::open(p).expect("echo opens");
        opens.push(t.elapsed());
        plugin = Some(opened);
    }
    row("open plugin (dlopen, ABI check, manifest)", opens);

    let plugin = plugin.expect("at least one copy");
    let spec = serde_json::json!({"model_name": "echo-bench", "backend": "echo"});
    let config = ModelConfig {
        spec: spec.as_object().expect("object").clone(),
        ..ModelConfig::default()
    };
    let mut creates = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let m = plugin.create_model(&config).expect("model opens");
        creates.push(t.elapsed());
        drop(m);
    }
    row("create + destroy model", creates);

    let model = plugin.create_model(&config).expect("model opens");
    let cancel = AtomicU8::new(0);
    for (label, text) in [
        (
            "generate round trip, 1 short message",
            "GREET: hello".to_string(),
        ),
        ("generate round trip, 2 KB prompt", "word ".repeat(400)),
    ] {
        let request = GenerateRequest {
            request_id: "bench".into(),
            messages: vec![Message::new("user", text)],
            ..GenerateRequest::default()
        };
        for _ in 0..1000 {
            model.generate(&request, &cancel).expect("warm-up");
        }
        let samples: Vec<Duration> = (0..20_000)
            .map(|_| {
                let t = Instant::now();
                model.generate(&request, &cancel).expect("generate");
                t.elapsed()
            })
            .collect();
        row(label, samples);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
