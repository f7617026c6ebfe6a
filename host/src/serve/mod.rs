//! `clemhost serve`: every registry model behind an OpenAI-compatible HTTP
//! endpoint.
//!
//! The principal pieces:
//! - [`ServeConfig`]: the checked options (from `commands/serve.rs`).
//! - [`models`]: which entries are served, opening them with the run
//!   pipeline's `runner::open_models` (the one place a model is opened),
//!   and a call with its deadline, cancel flag and retries.
//! - [`gate`]: per model, the most requests at the plugin at once and a
//!   bounded queue (full: 429 with `Retry-After`).
//! - [`routes`] with [`openai`] (the wire format and the `clemhost`
//!   extension object), [`errors`] (OpenAI's error shape), [`auth`] (the
//!   bearer key, compared in constant time), [`metrics`] (Prometheus text).
//! - [`guard`]: the `Host`, `Origin` and `Content-Type` checks that keep
//!   web pages away from a server on loopback.
//! - [`shutdown`]: SIGINT/SIGTERM, then a graceful drain.
//!
//! Plugins stay blocking C-ABI calls: each runs on tokio's blocking pool,
//! so concurrent requests to one model reach its plugin together (llamacpp
//! batches them into one decode step). HTTP is hyper's HTTP/1.1 server
//! under an axum router, on a multi-threaded tokio runtime; every accepted
//! socket has TCP_NODELAY set and a header read timeout.

pub mod auth;
pub mod errors;
pub mod gate;
pub mod guard;
pub mod metrics;
pub mod models;
pub mod openai;
pub mod routes;
pub mod shutdown;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use models::{CallOptions, Limits, ModelTable};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The checked options of `clemhost serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `-m`: the models to serve, opened at start (empty: every entry whose
    /// plugin is installed, opened on first use).
    pub models: Vec<String>,
    /// `--host`.
    pub host: IpAddr,
    /// `--port` (0: any free port; the startup line says which).
    pub port: u16,
    /// From `--api-key-env` (required when `host` is not loopback).
    pub api_key: Option<auth::ApiKey>,
    /// `--max-body-bytes`.
    pub max_body: usize,
    /// `--max-concurrent`, `--queue`.
    pub limits: Limits,
    /// `--timeout`, `--retries`, `--retry-delay-ms`.
    pub call: CallOptions,
    /// `--grace`: how long in-flight requests get at shutdown.
    pub grace: Duration,
    /// `--header-timeout`: how long a client may take to send its headers.
    pub header_timeout: Duration,
    /// `--allow-origin`: web pages that may use the server (checked origins).
    pub allow_origins: Vec<String>,
}

/// What every request handler shares.
pub struct AppState {
    table: ModelTable,
    metrics: metrics::Metrics,
    api_key: Option<auth::ApiKey>,
    /// The Host, Origin and Content-Type checks.
    guard: guard::Guard,
    max_body: usize,
    limits: Limits,
    call: CallOptions,
    global: GlobalArgs,
    /// Raised when the grace period is over: running calls are cancelled.
    stop: watch::Sender<bool>,
}

/// Serves until SIGINT or SIGTERM, then drains and returns.
pub fn run(global: &GlobalArgs, config: ServeConfig) -> Result<()> {
    let table = ModelTable::plan(global, &config.models)?;
    if !config.models.is_empty() {
        table.open_all(global, &config.limits)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("clemhost-serve")
        .build()
        .map_err(|e| Error::msg(format!("cannot start the server's runtime: {e}")))?;
    let result = runtime.block_on(serve(global, config, table));
    // Calls abandoned at shutdown may still run on blocking threads; their
    // answers are not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn startup_lines(addr: SocketAddr, table: &ModelTable, lazy: bool) -> String {
    let count = table.slots().count();
    let mut out = format!(
        "clemhost serve: listening on http://{addr}/v1 with {count} model{}{}\n",
        if count == 1 { "" } else { "s" },
        if lazy {
            " (each opened on first use)"
        } else {
            ""
        }
    );
    for s in table.slots() {
        let limits = match s.opened() {
            Some(m) => format!("{} at once, {} queued", m.gate.limit(), m.gate.queue()),
            None => "not open yet".to_string(),
        };
        out.push_str(&format!(
            "  {}  backend {}  plugin {}  ({limits})\n",
            s.name,
            s.backend,
            s.plugin_path.display()
        ));
    }
    out
}

async fn serve(global: &GlobalArgs, config: ServeConfig, table: ModelTable) -> Result<()> {
    let wanted = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(wanted).await.map_err(|e| {
        Error::msg(format!(
            "cannot listen on {wanted}: {e}; choose another --port (0 picks a free one) or --host"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::msg(format!("cannot read the listening address: {e}")))?;
    let lazy = config.models.is_empty();
    let (stop, _) = watch::channel(false);
    {
        let mut out = std::io::stdout().lock();
        // Model names come from registry files of others.
        let lines = startup_lines(addr, &table, lazy);
        let _ = out.write_all(crate::error::escape_for_terminal(&lines).as_bytes());
        let _ = out.flush();
    }
    let state = Arc::new(AppState {
        table,
        metrics: metrics::Metrics::default(),
        api_key: config.api_key.clone(),
        guard: guard::Guard::new(addr, config.api_key.is_some(), &config.allow_origins),
        max_body: config.max_body,
        limits: config.limits.clone(),
        call: config.call.clone(),
        global: global.clone(),
        stop,
    });
    let router = routes::router(state.clone());
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    let signal = shutdown::signalled();
    tokio::pin!(signal);
    let name = loop {
        tokio::select! {
            name = &mut signal => break name,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Headers and body leave in one segment without waiting for
                // an ACK (Nagle plus delayed ACK would add ~40 ms per request).
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
        }
    };
    drop(listener);
    eprintln!(
        "clemhost serve: {name}: no new connections; finishing the requests in flight (up to {:.0} s)",
        config.grace.as_secs_f64()
    );
    if !shutdown::drain(graceful, config.grace, &state.stop).await {
        tracing::warn!("some connections did not finish; closing them");
    }
    // The last handle of each model is dropped with the state (unless an
    // abandoned call still holds one): the plugins close their models.
    drop(router);
    drop(state);
    eprintln!("clemhost serve: stopped");
    Ok(())
}
