//! # openai_api
//!
//! The clemhost backend `openai`: OpenAI's chat-completions API, as
//! clemcore's `openai` backend uses it.
//!
//! - key.json section `openai`: `api_key` (required), `organisation` (or
//!   `organization`; sent as `OpenAI-Organization`), `base_url` (default
//!   `https://api.openai.com/v1`).
//! - Registry `model_config`: `reasoning_model` (temperature must be > 0, no
//!   token limit is sent), `max_completion_tokens: true` (send the limit under
//!   that name), `extra_body` (merged into the request), `multimodality`
//!   (allows images).
//! - Every generation argument is sent by name; the answer is
//!   `choices[0].message.content`, stripped.

use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Capabilities, Ctx, GenerateRequest, Generation, ModelConfig,
};
use clemhost_remote_common::{
    model_id, remote_capabilities, ChatCompletions, Endpoint, Header, HttpClient, NullContent,
    PassArgs, RemoteModel,
};

/// The key.json section this backend reads.
pub const KEY_NAME: &str = "openai";
/// Where requests go unless the key section sets `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A model served by OpenAI.
pub struct OpenAi(RemoteModel<ChatCompletions>);

impl Backend for OpenAi {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec![KEY_NAME.to_string()],
            description: "OpenAI chat completions API (remote)".to_string(),
            capabilities: Capabilities {
                // Stand in for the section's api_key when key.json lacks one.
                key_env: ["OPENAI_API_KEY"].map(String::from).to_vec(),
                key_env_fields: [("organisation", "OPENAI_ORG_ID")]
                    .map(|(f, v)| (f.to_string(), v.to_string()))
                    .to_vec(),
                ..remote_capabilities(KEY_NAME, true, 32)
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let endpoint =
            Endpoint::from_config(&config, "OpenAI", KEY_NAME, Some(DEFAULT_BASE_URL), true)?;
        let mut headers = vec![Header::secret(
            "authorization",
            format!("Bearer {}", endpoint.api_key().unwrap_or_default()),
        )];
        if let Some(org) = config
            .credential("organisation")
            .or_else(|| config.credential("organization"))
        {
            headers.push(Header::secret("openai-organization", org));
        }
        let client = HttpClient::new(endpoint, headers)?;
        let format = ChatCompletions::from_config(
            &config,
            "OpenAI",
            model_id(&config)?,
            PassArgs::All,
            NullContent::Empty,
            None,
        )?;
        Ok(OpenAi(RemoteModel::new(&config, client, format)?))
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        self.0.generate(request, ctx)
    }
}

clemhost_plugin_sdk::export_backend!(OpenAi);
