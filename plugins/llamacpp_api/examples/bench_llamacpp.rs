//! Prefill and decode speed of the `llamacpp` backend, measured the way
//! `measurements/perf-anchors.md` measured llama-cpp-python: one prompt, a
//! fixed number of new tokens (end-of-generation ignored), one warm-up run,
//! then the median of the timed runs. Run by `scripts/bench-local`.
//!
//! ```text
//! bench --gguf FILE --prompt-file FILE [--threads 2] [--new 128] [--runs 3] [--parallel 10]
//! ```
//!
//! Prints one `key=value` line per measurement; `--parallel N` adds a run of
//! N concurrent requests (distinct prompts) and reports its wall time.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{Backend, Ctx, GenArgs, GenerateRequest, Message, ModelConfig, Timings};
use llamacpp_api::LlamaCpp;
use std::time::Instant;

struct Args {
    gguf: String,
    prompt: String,
    threads: u32,
    new: u32,
    runs: usize,
    parallel: usize,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut gguf, mut prompt_file) = (None, None);
    let (mut threads, mut new, mut runs, mut parallel) = (2, 128, 3, 0);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--gguf" => gguf = Some(val()?),
            "--prompt-file" => prompt_file = Some(val()?),
            "--threads" => threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--new" => new = val()?.parse().map_err(|e| format!("--new: {e}"))?,
            "--runs" => runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--parallel" => parallel = val()?.parse().map_err(|e| format!("--parallel: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let gguf = gguf.ok_or("--gguf FILE is required")?;
    let prompt_file = prompt_file.ok_or("--prompt-file FILE is required")?;
    let prompt =
        std::fs::read_to_string(&prompt_file).map_err(|e| format!("{prompt_file}: {e}"))?;
    Ok(Args {
        gguf,
        prompt: prompt.trim_end().to_string(),
        threads,
        new,
        runs: runs.max(1),
        parallel,
    })
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn request(text: &str, new: u32) -> GenerateRequest {
    let mut extra = clemhost_plugin_sdk::serde_json::Map::new();
    extra.insert("ignore_eos".into(), Value::Bool(true));
    GenerateRequest {
        messages: vec![Message::new("user", text)],
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens: new,
            extra,
        }),
        ..GenerateRequest::default()
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    let spec = json!({
        "model_name": "bench",
        "backend": "llamacpp",
        "huggingface_id": args.gguf,
        "model_config": {"premade_chat_template": true, "threads": args.threads, "n_ctx": 1024,
                          "parallel": args.parallel.max(1)}
    });
    let config = ModelConfig {
        spec: spec.as_object().cloned().unwrap_or_default(),
        ..ModelConfig::default()
    };
    let load = Instant::now();
    let model = match LlamaCpp::create(config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    println!("load_s={:.3}", load.elapsed().as_secs_f64());
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    let mut prompt_tokens = 0;
    for run in 0..=args.runs {
        let g = match model.generate(request(&args.prompt, args.new), &Ctx::detached()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("bench: {e}");
                std::process::exit(1);
            }
        };
        let usage = g.usage.unwrap_or_default();
        let t = g.timings.unwrap_or_default();
        prompt_tokens = usage.prompt_tokens;
        if run == 0 {
            continue; // warm-up
        }
        prefill.push(usage.prompt_tokens as f64 / (t.prefill_ms.unwrap_or(f64::NAN) / 1000.0));
        decode.push(
            (usage.completion_tokens.saturating_sub(1)) as f64
                / (t.decode_ms.unwrap_or(f64::NAN) / 1000.0),
        );
    }
    println!("prompt_tokens={prompt_tokens}");
    println!("new_tokens={}", args.new);
    println!("prefill_tok_s={:.1}", median(prefill));
    println!("decode_tok_s={:.1}", median(decode));
    if args.parallel > 0 {
        let started = Instant::now();
        let done: Vec<(u64, Timings)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..args.parallel)
                .map(|i| {
                    let model = &model;
                    let text = format!("{}\n\nYou are player number {}.", args.prompt, i + 1);
                    s.spawn(move || {
                        model
                            .generate(request(&text, args.new), &Ctx::detached())
                            .map(|g| {
                                (
                                    g.usage.unwrap_or_default().completion_tokens,
                                    g.timings.unwrap_or_default(),
                                )
                            })
                            .unwrap_or_default()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let wall = started.elapsed().as_secs_f64();
        let total: u64 = done.iter().map(|(n, _)| n).sum();
        // Where the wall time went: until the last prompt was in, every
        // request waited or prefilled; after it, all decoded together.
        let prefilled_s = done
            .iter()
            .map(|(_, t)| t.queue_ms.unwrap_or(0.0) + t.prefill_ms.unwrap_or(0.0))
            .fold(0.0, f64::max)
            / 1000.0;
        let step_ms = median(
            done.iter()
                .filter(|(n, _)| *n > 1)
                .map(|(n, t)| t.decode_ms.unwrap_or(f64::NAN) / (*n - 1) as f64)
                .collect(),
        );
        println!("parallel={}", args.parallel);
        println!("parallel_wall_s={wall:.2}");
        println!("parallel_tok_s={:.1}", total as f64 / wall);
        println!("parallel_prefilled_s={prefilled_s:.2}");
        println!("parallel_step_ms={step_ms:.1}");
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak_rss_mib={rss:.0}");
    }
}
