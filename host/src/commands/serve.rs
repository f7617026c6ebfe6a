//! `clemhost serve`: registry models behind an OpenAI-compatible HTTP endpoint.

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::runner::limits::RetryPolicy;
use crate::serve::auth::ApiKey;
use crate::serve::models::{CallOptions, Limits};
use crate::serve::ServeConfig;
use clap::Args;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Options of this command.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A model to serve (a registry name or a JSON selector; repeatable),
    /// opened before the server listens. Without -m: every registry entry
    /// whose plugin is installed, each opened on first use.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// The address to listen on. Anything but loopback needs --api-key-env.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub host: String,
    /// The port (0: any free port; the startup line says which).
    #[arg(long, value_name = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer <key>` with the key in environment
    /// variable VAR (required off loopback).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The largest request body accepted (bigger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// The most requests at one model's plugin at once (default: what the
    /// plugin and the entry's rate_limit allow).
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<usize>,
    /// The most requests waiting per model; more are answered 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub queue: usize,
    /// Seconds from a request's arrival to its answer (waiting included)
    /// before it is cancelled and answered 504.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub timeout: f64,
    /// Attempts per request; rate limits, timeouts and unavailable services
    /// are tried again with exponential back-off within --timeout.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,
    /// The first back-off delay in milliseconds (doubled per attempt, with jitter).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub retry_delay_ms: u64,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub grace: f64,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Let web pages from ORIGIN (`scheme://host[:port]`, e.g.
    /// http://localhost:5173) use the server (repeatable). Without it, any
    /// request with an `Origin` header is refused: a page in your browser
    /// must not spend your keys.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
}

/// A duration option, with `run --timeout`'s bounds (0.001 s to 7 days).
fn seconds(flag: &str, v: f64) -> Result<Duration> {
    crate::runner::limits::duration_flag(flag, v).map_err(|m| Error::with_exit(Exit::Usage, m))
}

fn parse_host(host: &str) -> Result<IpAddr> {
    if host == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.parse().map_err(|_| {
        Error::with_exit(
            Exit::Usage,
            format!("--host {host} is not an IP address; use e.g. 127.0.0.1, ::1 or 0.0.0.0"),
        )
    })
}

/// Checks the options into a [`ServeConfig`].
pub fn config(args: &ServeArgs) -> Result<ServeConfig> {
    let host = parse_host(&args.host)?;
    let api_key = match &args.api_key_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Some(ApiKey::new(v.trim())),
            _ => {
                return Err(Error::with_exit(
                    Exit::Usage,
                    format!(
                        "--api-key-env {var}: the environment variable {var} is not set or empty; export the key in it first"
                    ),
                ))
            }
        },
    };
    if api_key.is_none() && !host.is_loopback() {
        return Err(Error::with_exit(
            Exit::Usage,
            format!(
                "--host {host} is reachable from other machines, so the server needs an API key: \
                 put one in an environment variable and pass --api-key-env VAR (clients send it as a bearer token)"
            ),
        ));
    }
    if args.max_concurrent == Some(0) || args.retries == 0 {
        return Err(Error::with_exit(
            Exit::Usage,
            "--max-concurrent and --retries must be at least 1",
        ));
    }
    for origin in &args.allow_origin {
        if crate::serve::guard::normalize_origin(origin).is_none() {
            return Err(Error::with_exit(
                Exit::Usage,
                format!(
                    "--allow-origin {}: an origin is scheme://host[:port] as a browser sends it (e.g. http://localhost:5173), without a path or a wildcard",
                    crate::error::escape_for_terminal(origin)
                ),
            ));
        }
    }
    if args.max_body_bytes == 0 {
        return Err(Error::with_exit(
            Exit::Usage,
            "--max-body-bytes must be at least 1",
        ));
    }
    Ok(ServeConfig {
        models: args.models.clone(),
        host,
        port: args.port,
        api_key,
        max_body: args.max_body_bytes,
        limits: Limits {
            max_concurrent: args.max_concurrent,
            queue: args.queue,
        },
        call: CallOptions {
            timeout: seconds("--timeout", args.timeout)?,
            retry: RetryPolicy {
                tries: args.retries,
                base_delay: Duration::from_millis(args.retry_delay_ms),
                ..RetryPolicy::default()
            },
        },
        grace: seconds("--grace", args.grace)?,
        header_timeout: seconds("--header-timeout", args.header_timeout)?,
        allow_origins: args.allow_origin.clone(),
    })
}

/// Runs the command.
pub fn run(global: &GlobalArgs, args: &ServeArgs) -> Result<Exit> {
    crate::serve::run(global, config(args)?)?;
    Ok(Exit::Success)
}
