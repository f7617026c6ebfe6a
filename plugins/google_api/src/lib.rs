//! # google_api
//!
//! The clemhost backend `google`: the Gemini API's `generateContent`
//! (`POST /v1beta/models/<model_id>:generateContent`), as clemcore's `google`
//! backend uses it.
//!
//! - key.json section `google`: `api_key` (required, sent as
//!   `x-goog-api-key`), `base_url` (default
//!   `https://generativelanguage.googleapis.com/v1beta`).
//! - System messages leave the conversation; the **first** non-empty one
//!   becomes `systemInstruction`. `assistant` turns get role `model`, `user`
//!   turns role `user`; images go inline (`inlineData`, web images are
//!   downloaded first; allowed only with `model_config.multimodality`).
//! - `generationConfig` carries `temperature` and `maxOutputTokens`; four
//!   safety settings block medium and above, as in clemcore.
//!   `model_config.thinking_mode` adds a thinking budget of 4096 tokens to
//!   the output limit.
//! - The answer is the text of the first candidate (thought parts skipped),
//!   stripped. Unlike clemcore, the recorded prompt is plain JSON.

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
pub const KEY_NAME: &str = "google";
/// Where requests go unless the key section sets `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// Tokens of thinking allowed in thinking mode (clemcore's value).
pub const THINKING_BUDGET: u32 = 4096;
/// The harm categories clemcore sets a threshold for.
pub const SAFETY_CATEGORIES: [&str; 4] = [
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
];

/// The Gemini `generateContent` format.
#[derive(Clone, Debug)]
pub struct GenerateContent {
    /// The model in the path.
    pub model_id: String,
    /// `model_config.thinking_mode` is present.
    pub thinking: bool,
    /// `model_config.extra_body`, merged last.
    pub extra_body: Option<Map<String, Value>>,
}

fn parts_of(turn: &Turn) -> Vec<Value> {
    let mut parts = vec![json!({ "text": turn.content })];
    for image in &turn.images {
        parts.push(match image {
            Image::Inline { media_type, data } => {
                json!({ "inlineData": { "mimeType": media_type, "data": data } })
            }
            Image::Url(url) => json!({ "fileData": { "fileUri": url } }),
        });
    }
    parts
}

impl Provider for GenerateContent {
    const IMAGES: ImageMode = ImageMode::Inline;

    fn path(&self) -> String {
        format!("/models/{}:generateContent", self.model_id)
    }

    fn body(&self, turns: &[Turn], gen_args: &GenArgs) -> Result<Value, BackendError> {
        let mut contents = Vec::new();
        let mut system: Option<&str> = None;
        for turn in turns {
            let role = match turn.role.as_str() {
                "system" => {
                    if system.is_none() {
                        system = Some(&turn.content);
                    }
                    continue;
                }
                "assistant" | "model" => "model",
                "user" => "user",
                other => {
                    return Err(BackendError::invalid_request(format!(
                        "Google models take roles system, user and assistant, not {other:?}"
                    )))
                }
            };
            contents.push(json!({ "role": role, "parts": parts_of(turn) }));
        }
        let mut body = Map::new();
        body.insert("contents".into(), Value::Array(contents));
        if let Some(text) = system.filter(|s| !s.is_empty()) {
            body.insert(
                "systemInstruction".into(),
                json!({ "parts": [{ "text": text }] }),
            );
        }
        let mut config = Map::new();
        config.insert("temperature".into(), json!(gen_args.temperature));
        if self.thinking {
            config.insert(
                "maxOutputTokens".into(),
                json!(THINKING_BUDGET + gen_args.max_tokens),
            );
            config.insert(
                "thinkingConfig".into(),
                json!({ "thinkingBudget": THINKING_BUDGET }),
            );
        } else {
            config.insert("maxOutputTokens".into(), json!(gen_args.max_tokens));
        }
        body.insert("generationConfig".into(), Value::Object(config));
        body.insert(
            "safetySettings".into(),
            Value::Array(
                SAFETY_CATEGORIES
                    .iter()
                    .map(|c| json!({ "category": c, "threshold": "BLOCK_MEDIUM_AND_ABOVE" }))
                    .collect(),
            ),
        );
        if let Some(extra) = &self.extra_body {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        Ok(Value::Object(body))
    }

    fn answer(&self, response: &Value) -> Result<Answer, BackendError> {
        let bad = |what: &str| invalid_json_response("Google", what, response);
        let candidate = response
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .ok_or_else(|| bad("no candidates (was the prompt blocked?)"))?;
        let content = candidate
            .get("content")
            .ok_or_else(|| bad("the first candidate has no `content`"))?;
        let role = content.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "model" {
            return Err(bad(&format!(
                "the answer's role is {role:?} but should be \"model\""
            )));
        }
        let text: String = content
            .get("parts")
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if text.is_empty() {
            clemhost_plugin_sdk::log::warn!("Google answered without text");
        }
        let usage = u64_at(response, &["usageMetadata", "promptTokenCount"]).map(|p| Usage {
            prompt_tokens: p,
            completion_tokens: u64_at(response, &["usageMetadata", "candidatesTokenCount"])
                .unwrap_or(0)
                + u64_at(response, &["usageMetadata", "thoughtsTokenCount"]).unwrap_or(0),
        });
        Ok(Answer {
            text: text.trim().to_string(),
            usage,
        })
    }
}

/// A model served by Google's Gemini API.
pub struct Google(RemoteModel<GenerateContent>);

impl Backend for Google {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec![KEY_NAME.to_string()],
            description: "Google Gemini generateContent API (remote)".to_string(),
            capabilities: Capabilities {
                // Stand in for the section's api_key when key.json lacks one.
                key_env: ["GEMINI_API_KEY", "GOOGLE_API_KEY"]
                    .map(String::from)
                    .to_vec(),
                ..remote_capabilities(KEY_NAME, true, 32)
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let endpoint =
            Endpoint::from_config(&config, "Google", KEY_NAME, Some(DEFAULT_BASE_URL), true)?;
        let headers = vec![Header::secret(
            "x-goog-api-key",
            endpoint.api_key().unwrap_or_default(),
        )];
        let client = HttpClient::new(endpoint, headers)?;
        let format = GenerateContent {
            model_id: model_id(&config)?,
            thinking: has_flag(&config, "thinking_mode"),
            extra_body: extra_body(&config)?,
        };
        Ok(Google(RemoteModel::new(&config, client, format)?))
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        self.0.generate(request, ctx)
    }
}

clemhost_plugin_sdk::export_backend!(Google);
