//! # mistral_api
//!
//! The clemhost backend `mistral`: Mistral's chat-completions API, as
//! clemcore's `mistral` backend uses it.
//!
//! - key.json section `mistral`: `api_key` (required), `base_url` (default
//!   `https://api.mistral.ai/v1`).
//! - Sends `model`, `messages`, `temperature`, `max_tokens` (plus
//!   `model_config.extra_body`); the answer is `choices[0].message.content`,
//!   stripped. Content given as a list of chunks (reasoning models) is read
//!   from its text chunks.

use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Capabilities, Ctx, GenerateRequest, Generation, ModelConfig,
};
use clemhost_remote_common::{
    model_id, remote_capabilities, ChatCompletions, Endpoint, Header, HttpClient, NullContent,
    PassArgs, RemoteModel,
};

/// The key.json section this backend reads.
pub const KEY_NAME: &str = "mistral";
/// Where requests go unless the key section sets `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.mistral.ai/v1";

/// A model served by Mistral.
pub struct Mistral(RemoteModel<ChatCompletions>);

impl Backend for Mistral {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec![KEY_NAME.to_string()],
            description: "Mistral chat completions API (remote)".to_string(),
            capabilities: Capabilities {
                // Stand in for the section's api_key when key.json lacks one.
                key_env: ["MISTRAL_API_KEY"].map(String::from).to_vec(),
                ..remote_capabilities(KEY_NAME, true, 32)
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let endpoint =
            Endpoint::from_config(&config, "Mistral", KEY_NAME, Some(DEFAULT_BASE_URL), true)?;
        let headers = vec![Header::secret(
            "authorization",
            format!("Bearer {}", endpoint.api_key().unwrap_or_default()),
        )];
        let client = HttpClient::new(endpoint, headers)?;
        let format = ChatCompletions::from_config(
            &config,
            "Mistral",
            model_id(&config)?,
            PassArgs::TemperatureAndMaxTokens,
            NullContent::Empty,
            None,
        )?;
        Ok(Mistral(RemoteModel::new(&config, client, format)?))
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        self.0.generate(request, ctx)
    }
}

clemhost_plugin_sdk::export_backend!(Mistral);
