//! The machine's read bandwidth, the bound of every decode step that streams
//! the weights: a STREAM-like read (sum) of a buffer of `--bytes` bytes (the
//! size of a model's weights) split over `--threads` threads, one warm-up
//! pass and the median of `--runs` timed passes. Run by `scripts/bench-local`,
//! which divides it by the bytes a decoded token reads.
//!
//! ```text
//! read_bandwidth --bytes N [--threads 2] [--runs 9]
//! ```
//!
//! Prints `bytes=`, `threads=` and `read_gb_s=` (10^9 bytes per second).

use std::time::Instant;

struct Args {
    bytes: usize,
    threads: usize,
    runs: usize,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut bytes, mut threads, mut runs) = (None, 2, 9);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--bytes" => bytes = Some(val()?.parse().map_err(|e| format!("--bytes: {e}"))?),
            "--threads" => threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--runs" => runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let bytes: usize = bytes.ok_or("--bytes N is required")?;
    if bytes < 1 << 20 || threads == 0 {
        return Err("--bytes must be at least 1 MiB and --threads at least 1".into());
    }
    Ok(Args {
        bytes,
        threads,
        runs: runs.max(1),
    })
}

/// Sums a slice with eight independent accumulators, so the loop is bound
/// by the loads, not by one addition chain.
#[inline(always)]
fn sum_plain(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (a, w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*w);
        }
    }
    let tail: u64 = chunks.remainder().iter().fold(0, |s, w| s.wrapping_add(*w));
    acc.iter().fold(tail, |s, a| s.wrapping_add(*a))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(words: &[u64]) -> u64 {
    sum_plain(words)
}

fn sum(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { sum_avx2(words) };
    }
    sum_plain(words)
}

/// One pass over the buffer, split in `threads` contiguous parts; seconds.
fn pass(buffer: &[u64], threads: usize) -> (f64, u64) {
    let part = buffer.len().div_ceil(threads);
    let started = Instant::now();
    let total = std::thread::scope(|s| {
        let handles: Vec<_> = buffer
            .chunks(part)
            .map(|chunk| s.spawn(move || sum(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a summing thread does not panic"))
            .fold(0u64, u64::wrapping_add)
    });
    (started.elapsed().as_secs_f64(), total)
}

fn main() {
    let args = parse().unwrap_or_else(|e| {
        eprintln!("read_bandwidth: {e}");
        std::process::exit(2);
    });
    let words = args.bytes / 8;
    // Distinct values, so no page is shared with the zero page.
    let buffer: Vec<u64> = (0..words as u64).collect();
    let mut check = pass(&buffer, args.threads).1;
    let mut times = Vec::new();
    for _ in 0..args.runs {
        let (t, s) = pass(&buffer, args.threads);
        check = check.wrapping_add(s);
        times.push(t);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    println!("bytes={}", words * 8);
    println!("threads={}", args.threads);
    println!("read_gb_s={:.1}", (words * 8) as f64 / median / 1e9);
    // Printed so the sums cannot be optimised away.
    println!("checksum={:x}", check);
}
