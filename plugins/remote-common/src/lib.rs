//! # clemhost-remote-common
//!
//! What clemhost's remote API plugins (`openai_api`, `anthropic_api`, ...)
//! share, so that each plugin is only its provider's wire format.
//!
//! The principal pieces:
//! - [`Endpoint`] and [`HttpClient`]: credentials and connection settings
//!   read from the model's key section, and one reqwest client (rustls, TLS
//!   verification on unless explicitly opted out) per model handle. A call is
//!   exactly one HTTP attempt on the plugin's own tokio runtime; it stops
//!   early when the host cancels or the deadline passes. Retries are the
//!   host's job.
//! - [`error`]: HTTP status, transport failure and bad answers mapped to
//!   typed [`BackendError`](clemhost_plugin_sdk::BackendError)s (`auth`,
//!   `rate_limited` with `retry_after_ms`, `unavailable`, `timeout`,
//!   `invalid_response` with an excerpt of the body).
//! - [`ensure_alternating_roles`]: clemcore's message preprocessing.
//! - [`Provider`] and [`RemoteModel`]: a provider supplies path, body and
//!   answer reading; the model does preprocessing, images, the call, and the
//!   recorded objects (`prompt` = body as sent, `response` = provider JSON
//!   plus clemcore's `clem_player`).
//! - [`ChatCompletions`]: the chat-completions format shared by OpenAI,
//!   OpenAI-compatible servers, OpenRouter and Mistral.
//! - `test_support` (feature `test-support`): a loopback fake HTTP server
//!   and helpers for the plugins' tests and benchmarks.
//!
//! A plugin is a few lines around these:
//!
//! ```no_run
//! use clemhost_plugin_sdk::{Backend, BackendError, Ctx, GenerateRequest, Generation, ModelConfig};
//! use clemhost_remote_common::{
//!     model_id, ChatCompletions, Endpoint, Header, HttpClient, NullContent, PassArgs, RemoteModel,
//! };
//!
//! struct Example(RemoteModel<ChatCompletions>);
//!
//! impl Backend for Example {
//!     fn create(config: ModelConfig) -> Result<Self, BackendError> {
//!         let endpoint = Endpoint::from_config(
//!             &config, "Example", "example", Some("https://api.example.com/v1"), true,
//!         )?;
//!         let key = endpoint.api_key().unwrap_or_default().to_string();
//!         let client = HttpClient::new(
//!             endpoint,
//!             vec![Header::secret("authorization", format!("Bearer {key}"))],
//!         )?;
//!         let format = ChatCompletions::from_config(
//!             &config, "Example", model_id(&config)?, PassArgs::All, NullContent::Empty, None,
//!         )?;
//!         Ok(Example(RemoteModel::new(&config, client, format)?))
//!     }
//!     fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
//!         self.0.generate(request, ctx)
//!     }
//! }
//! ```
#![deny(missing_docs)]

pub mod chat_completions;
pub mod client;
pub mod error;
pub mod images;
pub mod messages;
pub mod model;
pub mod record;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use chat_completions::{ChatCompletions, NullContent, PassArgs};
pub use client::{Endpoint, Header, HttpClient};
pub use messages::ensure_alternating_roles;
pub use model::{has_flag, model_id, Answer, ImageMode, Provider, RemoteModel, Turn};

/// The capabilities every remote plugin declares: concurrent calls on one
/// model, up to `max_concurrency` at once, a key section `key_name`. A
/// plugin adds its environment fallbacks
/// (`Capabilities { key_env: ..., ..remote_capabilities(...) }`).
pub fn remote_capabilities(
    key_name: &str,
    requires_key: bool,
    max_concurrency: u32,
) -> clemhost_plugin_sdk::Capabilities {
    clemhost_plugin_sdk::Capabilities {
        concurrent_generate: true,
        max_concurrency,
        batching: false,
        remote: true,
        key_name: Some(key_name.to_string()),
        requires_key,
        ..Default::default()
    }
}
