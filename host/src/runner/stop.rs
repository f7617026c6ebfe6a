//! The run's stop token, which is the plugin ABI's cancel flag itself.

use clemhost_plugin_sdk::abi::{CANCEL_NONE, CANCEL_REQUESTED};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

/// One flag for a whole run (or a whole `serve` process): Ctrl-C raises it,
/// episodes and waiting threads read it, and every model call hands the
/// very same atomic to its plugin as the ABI cancel flag. So a stop reaches
/// the plugins in flight at once, with no thread copying one flag into
/// another. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct StopToken(Arc<AtomicU8>);

impl StopToken {
    /// A token that is not stopped.
    pub fn new() -> Self {
        StopToken(Arc::new(AtomicU8::new(CANCEL_NONE)))
    }

    /// Asks everything that shares this token to stop; returns whether it
    /// was already stopped.
    pub fn stop(&self) -> bool {
        self.0.swap(CANCEL_REQUESTED, Ordering::SeqCst) != CANCEL_NONE
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed) != CANCEL_NONE
    }

    /// The flag as plugins read it (`generate`'s `cancel` argument).
    pub fn abi_flag(&self) -> &AtomicU8 {
        &self.0
    }

    /// The process's token that Ctrl-C raises. The handler is installed once
    /// per process; a second Ctrl-C ends the process at once (files are
    /// written atomically, so nothing is left half-written).
    pub fn ctrl_c() -> StopToken {
        static TOKEN: OnceLock<StopToken> = OnceLock::new();
        TOKEN
            .get_or_init(|| {
                let token = StopToken::new();
                let t = token.clone();
                let installed = ctrlc::set_handler(move || {
                    if t.stop() {
                        eprintln!("\ninterrupted again: stopping now");
                        std::process::exit(130);
                    }
                    eprintln!("\ninterrupted: finishing the files of running episodes (Ctrl-C again to quit at once)");
                });
                if let Err(e) = installed {
                    tracing::warn!("Ctrl-C handling is not available: {e}");
                }
                token
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_flag_plugins_read() {
        let token = StopToken::new();
        let seen_by_plugin = token.clone();
        assert_eq!(
            seen_by_plugin.abi_flag().load(Ordering::Relaxed),
            CANCEL_NONE
        );
        assert!(!token.stop());
        assert_eq!(
            seen_by_plugin.abi_flag().load(Ordering::Relaxed),
            CANCEL_REQUESTED
        );
        assert!(seen_by_plugin.is_stopped());
        assert!(token.stop(), "a second stop says it was stopped already");
    }
}
