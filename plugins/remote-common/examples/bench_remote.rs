//! Benchmark of the remote plugin path: requests per second and host-side
//! overhead per request at several concurrencies, against the loopback fake
//! server with a fixed latency. Drives a built plugin through the C ABI, as
//! clemhost does.
//!
//! ```text
//! cargo build --release -p openai_compatible_api
//! cargo run --release -p clemhost-remote-common --features test-support \
//!     --example bench_remote -- <path/to/libopenai_compatible_api.so> [latency_ms] [seconds_per_level]
//! ```
//! `scripts/bench-remote` does both and prints the table.

use clemhost_plugin_sdk::host::Plugin;
use clemhost_plugin_sdk::serde_json::json;
use clemhost_plugin_sdk::{GenerateRequest, Message};
use clemhost_remote_common::test_support::{test_config, FakeServer, Reply};
use std::path::PathBuf;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

/// CPU time of this whole process (plugin, host side and fake server).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // rest starts at field 3 (state), so utime (14) is index 11 and stime (15) index 12.
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 10) // USER_HZ is 100 on Linux
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!(
            "usage: bench_remote <libopenai_compatible_api.so> [latency_ms] [seconds_per_level]"
        );
        std::process::exit(2);
    };
    let latency_ms: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seconds: f64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(4.0);
    let plugin = match Plugin::open(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot open {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let latency = Duration::from_millis(latency_ms);
    let answer = json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "fake-model",
        "choices": [{ "index": 0, "finish_reason": "stop",
                      "message": { "role": "assistant", "content": "GREET: Hello Peter, welcome!" } }],
        "usage": { "prompt_tokens": 60, "completion_tokens": 7, "total_tokens": 67 }
    });
    let server = FakeServer::always(Reply::json(answer).after(latency));
    let config = test_config(
        "fake-model",
        json!({ "api_key": "sk-bench", "base_url": format!("{}/v1", server.base_url()) }),
        None,
    );
    let model = match plugin.create_model(&config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("cannot open the model: {e}");
            std::process::exit(1);
        }
    };
    let prompt = "Your task is to greet and happily welcome the other person with the name:\n\nPeter\n\nRules:\n\n1. You must start your message with 'GREET:'\n2. Your message must include 'Hello', 'welcome' and the other person's name\n\nImportant: You only have one try.\n\nLet's start.";
    let request = GenerateRequest {
        request_id: "bench".into(),
        messages: vec![Message::new("user", prompt)],
        gen_args: None,
        timeout_ms: Some(60_000),
    };
    // Warm-up: connection set-up and the plugin's runtime start are not measured.
    let cancel = AtomicU8::new(0);
    for _ in 0..2 {
        if let Err(e) = model.generate(&request, &cancel) {
            eprintln!("warm-up call failed: {e}");
            std::process::exit(1);
        }
    }

    println!(
        "latency {latency_ms} ms, about {seconds} s per level, plugin {}",
        path.display()
    );
    println!(
        "{:<8} {:>11} {:>8} {:>9} {:>9} {:>8} {:>14} {:>13} {:>13} {:>12}",
        "client",
        "concurrency",
        "requests",
        "req/s",
        "ideal",
        "% ideal",
        "overhead mean",
        "call-lat p50",
        "call-lat p99",
        "CPU/request"
    );
    let body = json!({
        "model": "fake-model", "messages": [{ "role": "user", "content": prompt }],
        "temperature": 0.0, "max_tokens": 300
    })
    .to_string();
    let addr = server.base_url().trim_start_matches("http://").to_string();
    for concurrency in [1usize, 8, 64] {
        let per_thread = ((seconds * 1000.0 / latency_ms.max(1) as f64).ceil() as usize).max(3);
        for client in ["plugin", "raw"] {
            let served_before = server.handling_times().len();
            let cpu_before = process_cpu();
            let started = Instant::now();
            let mut durations: Vec<Duration> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..concurrency)
                    .map(|_| {
                        let model = model.clone();
                        let request = request.clone();
                        let body = body.as_str();
                        let addr = addr.as_str();
                        s.spawn(move || {
                            if client == "raw" {
                                return raw_calls(addr, body, per_thread);
                            }
                            let cancel = AtomicU8::new(0);
                            let mut out = Vec::with_capacity(per_thread);
                            for _ in 0..per_thread {
                                let t = Instant::now();
                                if let Err(e) = model.generate(&request, &cancel) {
                                    eprintln!("call failed: {e}");
                                }
                                out.push(t.elapsed());
                            }
                            out
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            let wall = started.elapsed();
            let cpu = process_cpu().saturating_sub(cpu_before);
            durations.sort();
            let n = durations.len();
            let rps = n as f64 / wall.as_secs_f64();
            let ideal = concurrency as f64 / latency.as_secs_f64().max(1e-9);
            let over = |p| percentile(&durations, p).saturating_sub(latency);
            let served: Vec<Duration> = server.handling_times().split_off(served_before);
            let mean =
                |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64() / v.len().max(1) as f64;
            // What the caller waited beyond what the server took, on average.
            let overhead = mean(&durations) - mean(&served);
            println!(
                "{:<8} {:>11} {:>8} {:>9.1} {:>9.1} {:>7.1}% {:>11.3} ms {:>10.3} ms {:>10.3} ms {:>9.3} ms",
                client,
                concurrency,
                n,
                rps,
                ideal,
                100.0 * rps / ideal,
                overhead * 1000.0,
                over(0.5).as_secs_f64() * 1000.0,
                over(0.99).as_secs_f64() * 1000.0,
                cpu.as_secs_f64() * 1000.0 / n as f64,
            );
        }
    }
}

/// The baseline: the same request over one keep-alive connection with a
/// minimal blocking HTTP/1.1 client (no JSON handling, no TLS stack, no
/// async runtime, no ABI). What it measures is the machine, not clemhost.
fn raw_calls(addr: &str, body: &str, count: usize) -> Vec<Duration> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut out = Vec::with_capacity(count);
    let Ok(stream) = std::net::TcpStream::connect(addr) else {
        eprintln!("raw client: cannot connect to {addr}");
        return out;
    };
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return out;
    };
    let mut reader = BufReader::new(stream);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..count {
        let t = Instant::now();
        if writer.write_all(request.as_bytes()).is_err() {
            break;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return out;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut answer = vec![0; length];
        if reader.read_exact(&mut answer).is_err() {
            break;
        }
        out.push(t.elapsed());
    }
    out
}
