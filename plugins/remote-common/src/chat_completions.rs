//! The chat-completions format (OpenAI, OpenAI-compatible servers,
//! OpenRouter, Mistral): `POST <base>/chat/completions`, answer in
//! `choices[0].message.content`.

use crate::error::invalid_json_response;
use crate::model::{has_flag, u64_at, Answer, ImageMode, Provider, Turn};
use clemhost_plugin_sdk::serde_json::{json, Map, Value};
use clemhost_plugin_sdk::{BackendError, GenArgs, ModelConfig, Usage};

/// Which generation arguments go into the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassArgs {
    /// Every argument by name (`temperature`, `max_tokens` and any other), as
    /// clemcore's openai backend does.
    All,
    /// Only `temperature` and `max_tokens` (OpenRouter, Mistral).
    TemperatureAndMaxTokens,
}

/// What to do when the answer's `content` is `null`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NullContent {
    /// Answer `""` and log a warning (clemcore's openai and mistral backends).
    Empty,
    /// An `invalid_response` error (clemcore's openrouter backend fails here).
    Error,
}

/// The `model_config` field asking for `max_completion_tokens` instead of `max_tokens`.
pub const MAX_COMPLETION_TOKENS_FIELD: &str = "max_completion_tokens";

/// A chat-completions provider.
#[derive(Clone, Debug)]
pub struct ChatCompletions {
    /// Display name for messages.
    pub provider: &'static str,
    /// The provider's model name (`model` in the body).
    pub model_id: String,
    /// Which generation arguments are sent.
    pub pass_args: PassArgs,
    /// `model_config.reasoning_model` is present: temperature must be > 0 and
    /// no token limit is sent (unless `max_completion_tokens` is set).
    pub reasoning: bool,
    /// `model_config.max_completion_tokens: true`: send the limit under that name.
    pub max_completion_tokens: bool,
    /// Merged into the body last (`model_config.extra_body`).
    pub extra_body: Option<Map<String, Value>>,
    /// Handling of a `null` answer.
    pub null_content: NullContent,
}

impl ChatCompletions {
    /// Reads `reasoning_model`, `max_completion_tokens` and `extra_body` from
    /// the entry's `model_config`; `default_extra_body` applies when the entry has none.
    pub fn from_config(
        config: &ModelConfig,
        provider: &'static str,
        model_id: String,
        pass_args: PassArgs,
        null_content: NullContent,
        default_extra_body: Option<Map<String, Value>>,
    ) -> Result<ChatCompletions, BackendError> {
        let max_completion_tokens = match config.model_config().get(MAX_COMPLETION_TOKENS_FIELD) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(BackendError::invalid_request(format!(
                "`model_config.{MAX_COMPLETION_TOKENS_FIELD}` must be true or false, found {other}"
            )))
            }
        };
        Ok(ChatCompletions {
            provider,
            model_id,
            pass_args,
            reasoning: has_flag(config, "reasoning_model"),
            max_completion_tokens,
            extra_body: extra_body(config)?.or(default_extra_body),
            null_content,
        })
    }
}

/// The entry's `model_config.extra_body`, which must be an object.
pub fn extra_body(config: &ModelConfig) -> Result<Option<Map<String, Value>>, BackendError> {
    match config.model_config().get("extra_body") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(other) => Err(BackendError::invalid_request(format!(
            "`model_config.extra_body` of {:?} must be a JSON object, found {other}",
            config.model_name()
        ))),
    }
}

/// Checks clemcore's rule for reasoning models: temperature above zero.
pub fn check_reasoning_temperature(temperature: f64) -> Result<(), BackendError> {
    if temperature > 0.0 {
        Ok(())
    } else {
        Err(BackendError::invalid_request(format!(
            "reasoning models need a temperature above 0, but it is {temperature:?}; pass e.g. -t 1.0"
        )))
    }
}

/// A message in OpenAI's form: plain text, or text and `image_url` parts.
pub fn encode_turn(turn: &Turn) -> Value {
    if turn.images.is_empty() {
        return json!({ "role": turn.role, "content": turn.content });
    }
    let mut parts = vec![json!({ "type": "text", "text": turn.content.replace(" <image> ", " ") })];
    for image in &turn.images {
        parts.push(json!({ "type": "image_url", "image_url": { "url": image.to_url() } }));
    }
    json!({ "role": turn.role, "content": parts })
}

/// Reads the text of a `content` that is a string or a list of parts
/// (`{"type": "text", "text": ...}`; other parts such as thinking are skipped).
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>(),
        ),
        _ => None,
    }
}

impl Provider for ChatCompletions {
    const IMAGES: ImageMode = ImageMode::Url;

    fn path(&self) -> String {
        "/chat/completions".to_string()
    }

    fn body(&self, turns: &[Turn], gen_args: &GenArgs) -> Result<Value, BackendError> {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model_id));
        body.insert(
            "messages".into(),
            Value::Array(turns.iter().map(encode_turn).collect()),
        );
        body.insert("temperature".into(), json!(gen_args.temperature));
        if self.reasoning {
            check_reasoning_temperature(gen_args.temperature)?;
            if self.max_completion_tokens {
                body.insert("max_completion_tokens".into(), json!(gen_args.max_tokens));
            }
        } else if self.max_completion_tokens {
            body.insert("max_completion_tokens".into(), json!(gen_args.max_tokens));
        } else {
            body.insert("max_tokens".into(), json!(gen_args.max_tokens));
        }
        if self.pass_args == PassArgs::All {
            for (k, v) in &gen_args.extra {
                body.insert(k.clone(), v.clone());
            }
        }
        if let Some(extra) = &self.extra_body {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        Ok(Value::Object(body))
    }

    fn answer(&self, response: &Value) -> Result<Answer, BackendError> {
        let bad = |what: &str| invalid_json_response(self.provider, what, response);
        let choices = response
            .get("choices")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `choices` list"))?;
        let message = choices
            .first()
            .ok_or_else(|| bad("empty `choices` list"))?
            .get("message")
            .ok_or_else(|| bad("`choices[0]` has no `message`"))?;
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "assistant" {
            return Err(bad(&format!(
                "the answer's role is {role:?} but should be \"assistant\""
            )));
        }
        let text = match message.get("content") {
            None | Some(Value::Null) => match self.null_content {
                NullContent::Empty => {
                    log::warn!("{} answered without content; using \"\"", self.provider);
                    String::new()
                }
                NullContent::Error => return Err(bad("the answer's `content` is null")),
            },
            Some(content) => content_text(content)
                .ok_or_else(|| bad("the answer's `content` is neither text nor a list of parts"))?,
        };
        let text = text.trim().to_string();
        if text.is_empty() {
            log::warn!("{} answered with empty content", self.provider);
        }
        let usage = match (
            u64_at(response, &["usage", "prompt_tokens"]),
            u64_at(response, &["usage", "completion_tokens"]),
        ) {
            (Some(p), Some(c)) => Some(Usage {
                prompt_tokens: p,
                completion_tokens: c,
            }),
            _ => None,
        };
        Ok(Answer { text, usage })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::Image;

    fn provider(reasoning: bool, mct: bool, pass: PassArgs) -> ChatCompletions {
        ChatCompletions {
            provider: "T",
            model_id: "m".into(),
            pass_args: pass,
            reasoning,
            max_completion_tokens: mct,
            extra_body: Some(json!({"top_k": 20}).as_object().unwrap().clone()),
            null_content: NullContent::Empty,
        }
    }

    fn turn(role: &str, text: &str) -> Turn {
        Turn {
            role: role.into(),
            content: text.into(),
            images: vec![],
        }
    }

    #[test]
    fn bodies_follow_the_model_config() {
        let mut args = GenArgs::default();
        args.extra.insert("top_p".into(), json!(0.5));
        let plain = provider(false, false, PassArgs::All)
            .body(&[turn("user", "hi")], &args)
            .unwrap();
        assert_eq!(
            plain,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "temperature": 0.0, "max_tokens": 300, "top_p": 0.5, "top_k": 20})
        );
        let few = provider(false, false, PassArgs::TemperatureAndMaxTokens)
            .body(&[turn("user", "hi")], &args)
            .unwrap();
        assert!(few.get("top_p").is_none());
        let err = provider(true, false, PassArgs::All)
            .body(&[turn("user", "hi")], &args)
            .unwrap_err();
        assert!(
            err.message.contains("temperature above 0"),
            "{}",
            err.message
        );
        args.temperature = 1.0;
        let reasoning = provider(true, false, PassArgs::All)
            .body(&[turn("user", "hi")], &args)
            .unwrap();
        assert!(reasoning.get("max_tokens").is_none());
        assert!(reasoning.get("max_completion_tokens").is_none());
        let mct = provider(true, true, PassArgs::All)
            .body(&[turn("user", "hi")], &args)
            .unwrap();
        assert_eq!(mct["max_completion_tokens"], json!(300));
    }

    #[test]
    fn images_become_parts() {
        let t = Turn {
            role: "user".into(),
            content: "see <image> here".into(),
            images: vec![Image::Url("https://x/a.png".into())],
        };
        assert_eq!(
            encode_turn(&t),
            json!({"role": "user", "content": [
                {"type": "text", "text": "see here"},
                {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]})
        );
    }

    #[test]
    fn answers_are_read_and_stripped() {
        let p = provider(false, false, PassArgs::All);
        let ok = json!({"choices": [{"message": {"role": "assistant", "content": "  hi \n"}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
        let a = p.answer(&ok).unwrap();
        assert_eq!(a.text, "hi");
        assert_eq!(a.usage.unwrap().prompt_tokens, 3);
        let parts = json!({"choices": [{"message": {"role": "assistant", "content": [
            {"type": "thinking", "thinking": []}, {"type": "text", "text": "yes"}]}}]});
        assert_eq!(p.answer(&parts).unwrap().text, "yes");
        assert!(p.answer(&json!({"choices": []})).is_err());
        let wrong_role = json!({"choices": [{"message": {"role": "user", "content": "x"}}]});
        assert!(p.answer(&wrong_role).is_err());
        let null = json!({"choices": [{"message": {"role": "assistant", "content": null}}]});
        assert_eq!(p.answer(&null).unwrap().text, "");
        let strict = ChatCompletions {
            null_content: NullContent::Error,
            ..p
        };
        assert!(strict.answer(&null).is_err());
    }
}
