//! # anthropic_api
//!
//! The clemhost backend `anthropic`: Anthropic's Messages API
//! (`POST /v1/messages`), as clemcore's `anthropic` backend uses it.
//!
//! - key.json section `anthropic`: `api_key` (required, sent as `x-api-key`),
//!   `base_url` (default `https://api.anthropic.com/v1`).
//! - System messages leave the list; the **last** one becomes `system`
//!   (omitted when empty). Every other message becomes a list of content
//!   blocks: its text, then its images as base64 blocks (web images are
//!   downloaded first; allowed only with `model_config.multimodality`).
//! - `model_config.thinking_mode`: temperature 1.0, a thinking budget of
//!   4000 tokens added to `max_tokens`, as clemcore does.
//! - The answer is the first `text` block, not stripped (as in clemcore).

use clemhost_plugin_sdk::serde_json::{json, Map, Value};
use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Capabilities, Ctx, GenArgs, GenerateRequest, Generation,
    ModelConfig, Usage,
};
use clemhost_remote_common::chat_completions::extra_body;
use clemhost_remote_common::error::invalid_json_response;
use clemhost_remote_common::images::Image;
use clemhost_remote_common::model::u64_at;
use clemhost_remote_common::{
    has_flag, model_id, remote_capabilities, Answer, Endpoint, Header, HttpClient, ImageMode,
    Provider, RemoteModel, Turn,
};

/// The key.json section this backend reads.
pub const KEY_NAME: &str = "anthropic";
/// Where requests go unless the key section sets `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
/// The API version header value.
pub const API_VERSION: &str = "2023-06-01";
/// Tokens of thinking allowed in thinking mode (clemcore's value).
pub const THINKING_BUDGET: u32 = 4000;

/// Anthropic's Messages format.
#[derive(Clone, Debug)]
pub struct Messages {
    /// `model` in the body.
    pub model_id: String,
    /// `model_config.thinking_mode` is present.
    pub thinking: bool,
    /// `model_config.extra_body`, merged last.
    pub extra_body: Option<Map<String, Value>>,
}

fn encode_turn(turn: &Turn) -> Value {
    let mut blocks = vec![json!({ "type": "text", "text": turn.content })];
    for image in &turn.images {
        blocks.push(match image {
            Image::Inline { media_type, data } => json!({
                "type": "image",
                "source": { "type": "base64", "media_type": media_type, "data": data },
            }),
            Image::Url(url) => json!({ "type": "image", "source": { "type": "url", "url": url } }),
        });
    }
    json!({ "role": turn.role, "content": blocks })
}

impl Provider for Messages {
    const IMAGES: ImageMode = ImageMode::Inline;

    fn path(&self) -> String {
        "/messages".to_string()
    }

    fn body(&self, turns: &[Turn], gen_args: &GenArgs) -> Result<Value, BackendError> {
        let system = turns
            .iter()
            .rev()
            .find(|t| t.role == "system")
            .map(|t| t.content.clone())
            .unwrap_or_default();
        let messages: Vec<Value> = turns
            .iter()
            .filter(|t| t.role != "system")
            .map(encode_turn)
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model_id));
        body.insert("messages".into(), Value::Array(messages));
        if !system.is_empty() {
            body.insert("system".into(), json!(system));
        }
        if self.thinking {
            body.insert("temperature".into(), json!(1.0));
            body.insert(
                "max_tokens".into(),
                json!(THINKING_BUDGET + gen_args.max_tokens),
            );
            body.insert(
                "thinking".into(),
                json!({ "type": "enabled", "budget_tokens": THINKING_BUDGET }),
            );
        } else {
            body.insert("temperature".into(), json!(gen_args.temperature));
            body.insert("max_tokens".into(), json!(gen_args.max_tokens));
        }
        if let Some(extra) = &self.extra_body {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        Ok(Value::Object(body))
    }

    fn answer(&self, response: &Value) -> Result<Answer, BackendError> {
        let bad = |what: &str| invalid_json_response("Anthropic", what, response);
        let role = response.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "assistant" {
            return Err(bad(&format!(
                "the answer's role is {role:?} but should be \"assistant\""
            )));
        }
        let blocks = response
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `content` list"))?;
        let text = blocks
            .iter()
            .find(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .and_then(|b| b.get("text"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no text block in `content`"))?;
        let usage = match (
            u64_at(response, &["usage", "input_tokens"]),
            u64_at(response, &["usage", "output_tokens"]),
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

/// A model served by Anthropic.
pub struct Anthropic(RemoteModel<Messages>);

impl Backend for Anthropic {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec![KEY_NAME.to_string()],
            description: "Anthropic Messages API (remote)".to_string(),
            capabilities: Capabilities {
                // Stand in for the section's api_key when key.json lacks one.
                key_env: ["ANTHROPIC_API_KEY"].map(String::from).to_vec(),
                ..remote_capabilities(KEY_NAME, true, 32)
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let endpoint =
            Endpoint::from_config(&config, "Anthropic", KEY_NAME, Some(DEFAULT_BASE_URL), true)?;
        let headers = vec![
            Header::secret("x-api-key", endpoint.api_key().unwrap_or_default()),
            Header::plain("anthropic-version", API_VERSION),
        ];
        let client = HttpClient::new(endpoint, headers)?;
        let format = Messages {
            model_id: model_id(&config)?,
            thinking: has_flag(&config, "thinking_mode"),
            extra_body: extra_body(&config)?,
        };
        Ok(Anthropic(RemoteModel::new(&config, client, format)?))
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        self.0.generate(request, ctx)
    }
}

clemhost_plugin_sdk::export_backend!(Anthropic);
