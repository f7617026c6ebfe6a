//! # openrouter_api
//!
//! The clemhost backend `openrouter`: OpenRouter's chat-completions API, as
//! clemcore's `openrouter` backend uses it.
//!
//! - key.json section `openrouter`: `api_key` (required), `base_url`
//!   (default `https://openrouter.ai/api/v1`).
//! - Only `temperature` and `max_tokens` are sent; `model_config.extra_body`
//!   is merged into the request and defaults to
//!   `{"provider": {"quantizations": ["fp8"]}}` as in clemcore;
//!   `reasoning_model` and `max_completion_tokens` as for `openai`.
//! - An answer without content is an `invalid_response` error (clemcore
//!   fails there too).

use clemhost_plugin_sdk::serde_json::{json, Map, Value};
use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Capabilities, Ctx, GenerateRequest, Generation, ModelConfig,
};
use clemhost_remote_common::{
    model_id, remote_capabilities, ChatCompletions, Endpoint, Header, HttpClient, NullContent,
    PassArgs, RemoteModel,
};

/// The key.json section this backend reads.
pub const KEY_NAME: &str = "openrouter";
/// Where requests go unless the key section sets `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";

/// clemcore's `extra_body` for entries that set none: fp8 providers only.
pub fn default_extra_body() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("provider".into(), json!({ "quantizations": ["fp8"] }));
    m
}

/// A model served through OpenRouter.
pub struct OpenRouter(RemoteModel<ChatCompletions>);

impl Backend for OpenRouter {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec![KEY_NAME.to_string()],
            description: "OpenRouter chat completions API (remote)".to_string(),
            capabilities: Capabilities {
                // Stand in for the section's api_key when key.json lacks one.
                key_env: ["OPENROUTER_API_KEY"].map(String::from).to_vec(),
                ..remote_capabilities(KEY_NAME, true, 32)
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let endpoint = Endpoint::from_config(
            &config,
            "OpenRouter",
            KEY_NAME,
            Some(DEFAULT_BASE_URL),
            true,
        )?;
        let headers = vec![Header::secret(
            "authorization",
            format!("Bearer {}", endpoint.api_key().unwrap_or_default()),
        )];
        let client = HttpClient::new(endpoint, headers)?;
        let format = ChatCompletions::from_config(
            &config,
            "OpenRouter",
            model_id(&config)?,
            PassArgs::TemperatureAndMaxTokens,
            NullContent::Error,
            Some(default_extra_body()),
        )?;
        Ok(OpenRouter(RemoteModel::new(&config, client, format)?))
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        self.0.generate(request, ctx)
    }
}

clemhost_plugin_sdk::export_backend!(OpenRouter);
