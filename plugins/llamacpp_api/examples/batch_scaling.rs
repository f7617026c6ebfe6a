//! How the llamacpp engine's decode rate grows with the number of sequences
//! decoded together: for each batch size B, B copies of one prompt (each
//! with a distinct suffix) are queued at once, prefilled one by one, then
//! decoded together for a fixed number of tokens (end-of-generation
//! ignored). Prints a table of B, milliseconds per decode step and tokens/s.
//!
//! ```text
//! batch_scaling --gguf FILE --prompt-file FILE [--threads 2] [--new 64] [--sizes 1,2,4,8,16] [--flash-attention]
//! ```

use llamacpp_api::engine::{Engine, EngineConfig, Job, Sampling};
use std::time::Duration;

struct Args {
    gguf: String,
    prompt: String,
    threads: u32,
    new: u32,
    sizes: Vec<u32>,
    flash_attention: bool,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut gguf, mut prompt_file) = (None, None);
    let (mut threads, mut new) = (2, 64);
    let mut sizes = vec![1, 2, 4, 8, 16];
    let mut flash_attention = false;
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--gguf" => gguf = Some(val()?),
            "--prompt-file" => prompt_file = Some(val()?),
            "--threads" => threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--flash-attention" => flash_attention = true,
            "--new" => new = val()?.parse().map_err(|e| format!("--new: {e}"))?,
            "--sizes" => {
                sizes = val()?
                    .split(',')
                    .map(|s| s.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--sizes: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let gguf = gguf.ok_or("--gguf FILE is required")?;
    let prompt_file = prompt_file.ok_or("--prompt-file FILE is required")?;
    let prompt =
        std::fs::read_to_string(&prompt_file).map_err(|e| format!("{prompt_file}: {e}"))?;
    if sizes.contains(&0) || new < 2 {
        return Err("--sizes must be positive and --new at least 2".into());
    }
    Ok(Args {
        gguf,
        prompt: prompt.trim_end().to_string(),
        threads,
        new,
        sizes,
        flash_attention,
    })
}

fn main() {
    let args = parse().unwrap_or_else(|e| {
        eprintln!("batch_scaling: {e}");
        std::process::exit(2);
    });
    let largest = args.sizes.iter().copied().max().unwrap_or(1);
    let engine = Engine::load(
        std::path::Path::new(&args.gguf),
        &EngineConfig {
            threads: args.threads,
            n_ctx: Some(1024),
            parallel: Some(largest),
            kv_cache_mib: 0,
            n_batch: 512,
            gpu_layers: None,
            flash_attention: args.flash_attention,
            concurrency: None,
        },
    )
    .unwrap_or_else(|e| {
        eprintln!("batch_scaling: {e}");
        std::process::exit(1);
    });
    println!("| sequences | ms per step | decode tok/s (all sequences) |");
    println!("|---|---|---|");
    for &size in &args.sizes {
        let tickets: Vec<_> = (0..size)
            .map(|i| {
                let text = format!(
                    "<|im_start|>user\n{}\n\nYou are player {}.<|im_end|>\n<|im_start|>assistant\n",
                    args.prompt,
                    i + 1
                );
                let prompt = engine
                    .model()
                    .vocab()
                    .tokenize(text.as_bytes(), false, true);
                engine
                    .submit(Job {
                        prompt,
                        max_new_tokens: args.new,
                        sampling: Sampling::Greedy,
                        ignore_eos: true,
                    })
                    .expect("the job fits")
            })
            .collect();
        let done: Vec<_> = tickets
            .iter()
            .map(|t| loop {
                if let Some(r) = t.wait(Duration::from_millis(20)) {
                    break r.expect("generation succeeds");
                }
            })
            .collect();
        // The last admitted sequence decodes only while all others do too.
        let span = done
            .iter()
            .map(|c| c.decode)
            .min()
            .unwrap_or_default()
            .as_secs_f64();
        let steps = f64::from(args.new - 1);
        println!(
            "| {size} | {:.1} | {:.1} |",
            span * 1000.0 / steps,
            f64::from(size) * steps / span
        );
    }
}
