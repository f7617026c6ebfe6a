//! A small closed-loop load generator for OpenAI-compatible servers, used
//! by `scripts/bench-serve`: N clients, each on its own keep-alive HTTP/1.1
//! connection (TCP_NODELAY), POST a fixed chat completion for a number of
//! seconds. Prints one JSON line: requests answered within the window,
//! errors, requests per second over the window and latency percentiles in
//! milliseconds.
//!
//!   serve_load HOST:PORT PATH MODEL CLIENTS SECONDS
//!
//! The bearer token sent is `$BENCH_KEY` (default `bench`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(addr: &str) -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let r = BufReader::new(s.try_clone()?);
    Ok((s, r))
}

/// Reads one response; returns its status.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other("connection closed"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
                chunked = true;
            }
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length.unwrap_or(0)];
        r.read_exact(&mut body)?;
    }
    Ok(status)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: serve_load HOST:PORT PATH MODEL CLIENTS SECONDS");
        std::process::exit(2);
    }
    let (addr, path, model) = (args[1].clone(), args[2].clone(), args[3].clone());
    let clients: usize = args[4].parse().expect("CLIENTS is a number");
    let seconds: f64 = args[5].parse().expect("SECONDS is a number");
    let body = format!(
        r#"{{"model": "{model}", "messages": [{{"role": "user", "content": "Your task is to greet and happily welcome the other person with the name:\n\nPeter\n\nLet's start."}}], "temperature": 0.0, "max_tokens": 20}}"#
    );
    let key = std::env::var("BENCH_KEY").unwrap_or_else(|_| "bench".into());
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, request) = (addr.clone(), request.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut conn = None;
                while Instant::now() < end {
                    if conn.is_none() {
                        match connect(&addr) {
                            Ok(c) => conn = Some(c),
                            Err(_) => {
                                errors += 1;
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        }
                    }
                    let (s, r) = conn.as_mut().expect("connected");
                    let t = Instant::now();
                    let result = s
                        .write_all(request.as_bytes())
                        .and_then(|_| read_response(r));
                    match result {
                        // Only answers within the window count (the rate is over the window).
                        Ok(200) if Instant::now() <= end => {
                            latencies.push(t.elapsed().as_secs_f64() * 1000.0)
                        }
                        Ok(200) => {}
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.join().expect("client thread");
        all.extend(l);
        errors += e;
    }
    let window = seconds;
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        all[((all.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "{{\"clients\": {clients}, \"requests\": {}, \"errors\": {errors}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}",
        all.len(),
        all.len() as f64 / window,
        pct(0.5),
        pct(0.99)
    );
}
