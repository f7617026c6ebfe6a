//! Prefill and decode speed of the huggingface_local engine, printed as
//! `key=value` lines for scripts/bench-local.
//!
//! ```text
//! cargo run --release -p huggingface_local_api --example bench_candle -- \
//!     --model ~/.cache/clemhost/models/smollm2-135m-instruct-hf \
//!     --prompt-file scripts/fixtures/bench-prompt.txt --threads 2 --new 128 --runs 3 --parallel 10
//! ```
//!
//! The prompt file is one user message, rendered with the model's chat
//! template. Each run makes one prompt pass and `new - 1` single-token
//! steps, not stopping at EOS; one warm-up run, then the median of `runs`.
//! With `--parallel N`, N copies of the request then run concurrently
//! through the backend (one batch), stopping at the end token as real calls
//! do, and the tokens generated and the wall time are shown.

use clemhost_plugin_sdk::{Backend, Ctx, GenArgs, GenerateRequest, Message, ModelConfig};
use huggingface_local_api::HuggingfaceLocal;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

struct Args {
    model: String,
    prompt_file: String,
    threads: usize,
    new: usize,
    runs: usize,
    parallel: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: String::new(),
        prompt_file: "scripts/fixtures/bench-prompt.txt".into(),
        threads: 2,
        new: 128,
        runs: 3,
        parallel: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--model" => args.model = value()?,
            "--prompt-file" => args.prompt_file = value()?,
            "--threads" => args.threads = number(value()?)?,
            "--new" => args.new = number(value()?)?,
            "--runs" => args.runs = number(value()?)?,
            "--parallel" => args.parallel = number(value()?)?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.model.is_empty() {
        let home = std::env::var("HOME").unwrap_or_default();
        args.model = format!("{home}/.cache/clemhost/models/smollm2-135m-instruct-hf");
    }
    if args.new == 0 || args.runs == 0 || args.threads == 0 {
        return Err("--new, --runs and --threads must be positive".into());
    }
    Ok(args)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let prompt = std::fs::read_to_string(&args.prompt_file)
        .map_err(|e| format!("{}: {e}", args.prompt_file))?;
    let spec = json!({
        "model_name": "bench",
        "backend": "huggingface_local",
        "huggingface_id": args.model,
        "model_config": {"premade_chat_template": true, "eos_to_cull": "<\\|im_end\\|>", "threads": args.threads}
    });
    let Value::Object(spec) = spec else {
        return Err("registry entry is not an object".into());
    };
    let load = Instant::now();
    let model = HuggingfaceLocal::create(ModelConfig {
        spec,
        ..ModelConfig::default()
    })
    .map_err(|e| e.to_string())?;
    println!("load_s={:.3}", load.elapsed().as_secs_f64());
    let messages = vec![Message::new("user", prompt)];
    let engine = model.engine();
    let prepared = engine
        .prepare(&messages, &GenArgs::default())
        .map_err(|e| e.to_string())?;
    let n_prompt = prepared.prompt_ids.len();
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    for run in 0..=args.runs {
        let (_, p_ms, d_ms) = engine
            .greedy_fixed(&prepared.prompt_ids, args.new)
            .map_err(|e| e.to_string())?;
        if run > 0 {
            prefill.push(n_prompt as f64 / (p_ms / 1e3));
            decode.push((args.new - 1) as f64 / (d_ms / 1e3));
        }
    }
    println!("prompt_tokens={n_prompt}");
    println!("new_tokens={}", args.new);
    println!("threads={}", args.threads);
    println!("prefill_tok_s={:.1}", median(prefill));
    println!("decode_tok_s={:.1}", median(decode));
    if args.parallel > 0 {
        let model = Arc::new(model);
        let start = Instant::now();
        let handles: Vec<_> = (0..args.parallel)
            .map(|_| {
                let model = Arc::clone(&model);
                let request = GenerateRequest {
                    messages: messages.clone(),
                    gen_args: Some(GenArgs {
                        temperature: 0.0,
                        max_tokens: args.new as u32,
                        ..GenArgs::default()
                    }),
                    ..GenerateRequest::default()
                };
                std::thread::spawn(move || model.generate(request, &Ctx::detached()))
            })
            .collect();
        let mut total = 0u64;
        for h in handles {
            let g = h
                .join()
                .map_err(|_| "a generate thread panicked".to_string())?
                .map_err(|e| e.to_string())?;
            total += g.usage.map(|u| u.completion_tokens).unwrap_or(0);
        }
        let wall = start.elapsed().as_secs_f64();
        println!("parallel={}", args.parallel);
        println!("parallel_tokens={total}");
        println!("parallel_wall_s={wall:.2}");
        println!("parallel_tok_s={:.1}", total as f64 / wall);
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak_rss_mib={rss:.0}");
    }
    Ok(())
}
