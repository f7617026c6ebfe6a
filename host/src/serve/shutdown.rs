//! Waiting for the signal to stop (SIGINT or SIGTERM) and draining: no new
//! connections, in-flight requests finish within the grace period, then
//! the calls still running are cancelled and the models closed.

use hyper_util::server::graceful::GracefulShutdown;
use std::time::Duration;
use tokio::sync::watch;

/// How long cancelled calls get to answer (503) after the grace period.
const AFTER_CANCEL: Duration = Duration::from_secs(2);

/// Resolves with the signal's name when SIGINT or SIGTERM arrives.
#[cfg(unix)]
pub async fn signalled() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => {
            tracing::warn!("cannot listen for SIGINT/SIGTERM; stop the server with SIGKILL");
            std::future::pending().await
        }
    }
}

/// Resolves when Ctrl-C arrives.
#[cfg(not(unix))]
pub async fn signalled() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

/// Lets every watched connection finish its request within `grace`; past
/// it, raises `stop` (calls are cancelled and answer 503) and waits a
/// little more. Returns whether every connection finished.
pub async fn drain(
    graceful: GracefulShutdown,
    grace: Duration,
    stop: &watch::Sender<bool>,
) -> bool {
    let open = graceful.count();
    let done = graceful.shutdown();
    tokio::pin!(done);
    if tokio::time::timeout(grace, &mut done).await.is_ok() {
        return true;
    }
    tracing::warn!(
        "grace period of {:.0} s over with requests still running ({open} connection(s) at the start); cancelling them",
        grace.as_secs_f64()
    );
    let _ = stop.send(true);
    tokio::time::timeout(AFTER_CANCEL, &mut done).await.is_ok()
}
