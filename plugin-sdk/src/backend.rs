//! The plain Rust trait a plugin author implements.

use crate::abi::CANCEL_NONE;
use crate::protocol::{
    BackendError, Capabilities, ErrorKind, GenerateRequest, Generation, ModelConfig,
};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// What a backend says about itself; the SDK adds name, versions and ABI.
#[derive(Clone, Debug, Default)]
pub struct BackendInfo {
    /// The registry `backend` names served. Empty means the plugin's file
    /// name without `lib` and `_api` (e.g. `openai` for `libopenai_api.so`).
    pub backends: Vec<String>,
    /// One line for `clemhost plugins list`.
    pub description: String,
    /// What the host may do with the models.
    pub capabilities: Capabilities,
}

/// One model of a backend. The SDK turns an implementation into the C ABI
/// with [`crate::export_backend!`].
///
/// ```no_run
/// use clemhost_plugin_sdk::{Backend, BackendError, Ctx, GenerateRequest, Generation, ModelConfig};
///
/// struct Shout;
/// impl Backend for Shout {
///     fn create(_config: ModelConfig) -> Result<Self, BackendError> {
///         Ok(Shout)
///     }
///     fn generate(&self, request: GenerateRequest, _ctx: &Ctx) -> Result<Generation, BackendError> {
///         let last = request.messages.last().map(|m| m.content.to_uppercase()).unwrap_or_default();
///         Ok(Generation { text: last, ..Generation::default() })
///     }
/// }
/// clemhost_plugin_sdk::export_backend!(Shout);
/// ```
pub trait Backend: Send + Sync + Sized + 'static {
    /// Describes the plugin (served backend names, capabilities).
    fn info() -> BackendInfo {
        BackendInfo::default()
    }

    /// Opens a model: reads the registry entry, credentials, loads weights or
    /// builds a client. Errors here fail the run before any game starts.
    fn create(config: ModelConfig) -> Result<Self, BackendError>;

    /// Answers one request. Must return soon after `ctx.is_cancelled()`
    /// turns true or the deadline passes.
    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError>;
}

/// The context of one `generate` call: cancellation and deadline.
pub struct Ctx<'a> {
    cancel: Option<&'a AtomicU8>,
    deadline: Option<Instant>,
}

impl<'a> Ctx<'a> {
    /// A context with an optional cancel flag and a timeout counted from now.
    pub fn new(cancel: Option<&'a AtomicU8>, timeout: Option<Duration>) -> Self {
        Ctx {
            cancel,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// A context that is never cancelled and has no deadline (for tests).
    pub fn detached() -> Ctx<'static> {
        Ctx {
            cancel: None,
            deadline: None,
        }
    }

    /// Whether the host asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .map(|c| c.load(Ordering::Relaxed) != CANCEL_NONE)
            .unwrap_or(false)
    }

    /// When the host stops waiting.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (`None` = no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// `Err(cancelled)` or `Err(timeout)` when the call should stop now.
    pub fn check(&self) -> Result<(), BackendError> {
        if self.is_cancelled() {
            return Err(BackendError::new(
                ErrorKind::Cancelled,
                "cancelled by the host",
            ));
        }
        if let Some(d) = self.deadline {
            if Instant::now() >= d {
                return Err(BackendError::new(ErrorKind::Timeout, "deadline passed"));
            }
        }
        Ok(())
    }

    /// Sleeps for `dur`, waking early (with an error) on cancel or deadline.
    pub fn sleep(&self, dur: Duration) -> Result<(), BackendError> {
        let end = Instant::now() + dur;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(5)));
        }
    }
}
