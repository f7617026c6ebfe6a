//! # cohere_api
//!
//! The clemhost backend `cohere`: Cohere's v2 chat API (`POST /v2/chat`), as
//! clemcore's `cohere` backend uses it.
//!
//! - key.json section `cohere`: `api_key` (required), `base_url` (default
//!   `https://api.cohere.com/v2`).
//! - Sends `model`, `messages` (roles and texts as preprocessed),
//!   `temperature`, `max_tokens` (plus `model_config.extra_body`).
//! - The answer is the first text item of `message.content`, not stripped
//!   (as in clemcore).

use clemhost_plugin_sdk::serde_json::{json, Map, Value};
use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Capabilities, Ctx, GenArgs, GenerateRequest, Generation,
    ModelConfig, Usage,
};
use clemhost_remote_common::chat_completions::extra_body;
use clemhost_remote_common::error::invalid_json_response;
use clemhost_remote_common::model::u64_at;
use clemhost_remote_common::{
    model_id, remote_capabilities, Answer, Endpoint, Header, HttpClient, ImageMode, Provider,
    RemoteModel, Turn,
};

/// The key.json section this backend reads.
pub const KEY_NAME: &str = "cohere";
/// Where requests go unless the key section sets `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.cohere.com/v2";

/// Cohere's v2 chat format.
#[derive(Clone, Debug)]
pub struct Chat {
    /// `model` in the body.
    pub model_id: String,
    /// `model_config.extra_body`, merged last.
    pub extra_body: Option<Map<String, Value>>,
}

impl Provider for Chat {
    const IMAGES: ImageMode = ImageMode::Url;

    fn path(&self) -> String {
        "/chat".to_string()
    }

    fn body(&self, turns: &[Turn], gen_args: &GenArgs) -> Result<Value, BackendError> {
        let messages: Vec<Value> = turns
            .iter()
            .map(|t| {
                if t.images.is_empty() {
                    json!({ "role": t.role, "content": t.content })
                } else {
                    let mut parts = vec![json!({ "type": "text", "text": t.content })];
                    for image in &t.images {
                        parts.push(
                            json!({ "type": "image_url", "image_url": { "url": image.to_url() } }),
                        );
                    }
                    json!({ "role": t.role, "content": parts })
                }
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model_id));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("temperature".into(), json!(gen_args.temperature));
        body.insert("max_tokens".into(), json!(gen_args.max_tokens));
        if let Some(extra) = &self.extra_body {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        Ok(Value::Object(body))
    }

    fn answer(&self, response: &Value) -> Result<Answer, BackendError> {
        let bad = |what: &str| invalid_json_response("Cohere", what, response);
        let message = response.get("message").ok_or_else(|| bad("no `message`"))?;
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "assistant" {
            return Err(bad(&format!(
                "the answer's role is {role:?} but should be \"assistant\""
            )));
        }
        let text = message
            .get("content")
            .and_then(Value::as_array)
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i.get("type").and_then(Value::as_str) == Some("text"))
            })
            .and_then(|i| i.get("text"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no text item in `message.content`"))?;
        let usage = match (
            u64_at(response, &["usage", "tokens", "input_tokens"])
                .or_else(|| u64_at(response, &["usage", "billed_units", "input_tokens"])),
            u64_at(response, &["usage", "tokens", "output_tokens"])
                .or_else(|| u64_at(response, &["usage", "billed_units", "output_tokens"])),
        ) {
            (Some(p), Some(c)) => Some(Usage {
                prompt_tokens: p,
                completion_tokens: c,
            }),
            _ => None,
        };
        Ok(Answer {
            text: text.to_string(),
            usage,
        })
    }
}

/// A model served by Cohere.
pub struct Cohere(RemoteModel<Chat>);

impl Backend for Cohere {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec![KEY_NAME.to_string()],
            description: "Cohere v2 chat API (remote)".to_string(),
            capabilities: Capabilities {
                // Stand in for the section's api_key when key.json lacks one.
                key_env: ["CO_API_KEY"].map(String::from).to_vec(),
                ..remote_capabilities(KEY_NAME, true, 32)
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let endpoint =
            Endpoint::from_config(&config, "Cohere", KEY_NAME, Some(DEFAULT_BASE_URL), true)?;
        let headers = vec![Header::secret(
            "authorization",
            format!("Bearer {}", endpoint.api_key().unwrap_or_default()),
        )];
        let client = HttpClient::new(endpoint, headers)?;
        let format = Chat {
            model_id: model_id(&config)?,
            extra_body: extra_body(&config)?,
        };
        Ok(Cohere(RemoteModel::new(&config, client, format)?))
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        self.0.generate(request, ctx)
    }
}

clemhost_plugin_sdk::export_backend!(Cohere);
