//! # openai_compatible_api
//!
//! The clemhost backend `openai_compatible`: any server that speaks OpenAI's
//! chat-completions API (vLLM, TGI, llama.cpp's server, Ollama, LiteLLM, a
//! load balancer in front of a cluster), as clemcore's `openai_compatible`
//! backend uses it.
//!
//! - key.json section `openai_compatible`: `base_url` (required, e.g.
//!   `http://127.0.0.1:8000/v1`), `api_key` (optional; sent as a bearer
//!   token when present), `ca_cert` (a PEM file to trust in addition to the
//!   usual roots) and `insecure_skip_tls_verify: true` (turns certificate
//!   checks off; clemcore always turns them off, clemhost only when asked).
//!   The last two may also sit in the registry entry's `model_config`.
//! - Requests and answers exactly as the `openai` backend.

use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Ctx, GenerateRequest, Generation, ModelConfig,
};
use clemhost_remote_common::{
    model_id, remote_capabilities, ChatCompletions, Endpoint, Header, HttpClient, NullContent,
    PassArgs, RemoteModel,
};

/// The key.json section this backend reads.
pub const KEY_NAME: &str = "openai_compatible";

/// A model on an OpenAI-compatible server.
pub struct OpenAiCompatible(RemoteModel<ChatCompletions>);

impl Backend for OpenAiCompatible {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec![KEY_NAME.to_string()],
            description: "any OpenAI-compatible chat completions server: vLLM, TGI, llama.cpp, Ollama (remote)"
                .to_string(),
            // The key section is required (for base_url); its api_key is optional.
            capabilities: remote_capabilities(KEY_NAME, true, 64),
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let endpoint = Endpoint::from_config(
            &config,
            "the OpenAI-compatible server",
            KEY_NAME,
            None,
            false,
        )?;
        let headers = match endpoint.api_key() {
            Some(key) => vec![Header::secret("authorization", format!("Bearer {key}"))],
            None => Vec::new(),
        };
        let client = HttpClient::new(endpoint, headers)?;
        let format = ChatCompletions::from_config(
            &config,
            "the OpenAI-compatible server",
            model_id(&config)?,
            PassArgs::All,
            NullContent::Empty,
            None,
        )?;
        Ok(OpenAiCompatible(RemoteModel::new(&config, client, format)?))
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        self.0.generate(request, ctx)
    }
}

clemhost_plugin_sdk::export_backend!(OpenAiCompatible);
