//! # clemhost-plugin-sdk
//!
//! The plugin ABI of [clemhost](https://example.invalid/clemhost) and the
//! toolkit for writing a backend plugin: a `cdylib` named
//! `lib<name>_api.so` that clemhost finds at start-up and routes registry
//! entries with `"backend": "<name>"` to.
//!
//! The principal pieces:
//! - [`Backend`]: the plain Rust trait a plugin implements (`create` a model
//!   from its [`ModelConfig`], `generate` a [`Generation`] for a
//!   [`GenerateRequest`]), with a [`Ctx`] for cancellation and deadlines.
//! - [`export_backend!`]: emits the entry symbol; all logic is in [`export`].
//! - [`protocol`]: the JSON messages that cross the boundary (pure data).
//! - [`abi`]: the small frozen C ABI (`#[repr(C)]` tables of function pointers).
//! - [`redact`]: credentials taken out of text before it is shown or written.
//! - `runtime()` (feature `tokio`): a tokio runtime owned by the plugin.
//! - `host` (feature `host`): loading plugins, used by clemhost itself.
//!
//! Panics inside a backend are caught at the boundary and reported as an
//! error of kind [`ErrorKind::Panic`]; the model handle is then poisoned.
//! Log with the `log` crate: records reach the host's log under the
//! plugin's name. Never print to stdout.
//!
//! ```no_run
//! use clemhost_plugin_sdk::{Backend, BackendError, Ctx, GenerateRequest, Generation, ModelConfig};
//!
//! struct Echo;
//! impl Backend for Echo {
//!     fn create(_config: ModelConfig) -> Result<Self, BackendError> {
//!         Ok(Echo)
//!     }
//!     fn generate(&self, request: GenerateRequest, _ctx: &Ctx) -> Result<Generation, BackendError> {
//!         let text = request.messages.last().map(|m| m.content.clone()).unwrap_or_default();
//!         Ok(Generation { text, ..Generation::default() })
//!     }
//! }
//! clemhost_plugin_sdk::export_backend!(Echo);
//! ```
#![deny(missing_docs)]

pub mod abi;
mod backend;
pub mod export;
#[cfg(feature = "host")]
pub mod host;
mod logging;
pub mod protocol;
pub mod redact;
#[cfg(feature = "tokio")]
mod runtime;

pub use backend::{Backend, BackendInfo, Ctx};
pub use protocol::{
    BackendError, Capabilities, ErrorKind, GenArgs, GenerateRequest, Generation, Manifest, Message,
    ModelConfig, Timings, Usage,
};
#[cfg(feature = "tokio")]
pub use runtime::runtime;

/// The `log` crate, re-exported so plugins log without adding it themselves.
pub use log;
/// `serde_json`, re-exported for building prompt and response objects.
pub use serde_json;
