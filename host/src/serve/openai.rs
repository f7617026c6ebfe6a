//! OpenAI's chat-completions wire format: reading a request into the
//! plugin protocol's terms, and writing answers (whole or as Server-Sent
//! Events) with the `clemhost` extension object.
//!
//! Requests are read from a [`serde_json::Value`] by hand rather than by a
//! derived `Deserialize`, so that every error names the field at fault
//! (`messages[2].content[0].type`) in words a user can act on.

use super::errors::ApiError;
use clemhost_plugin_sdk::{Generation, Message};
use clemhost_pyfacts::json::kind_of as json_kind;
use serde_json::{json, Map, Value};

/// A chat-completions request, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// `model`: a served model's name.
    pub model: String,
    /// `messages`, in the plugin protocol's form (images under `image`).
    pub messages: Vec<Message>,
    /// `temperature`, when given.
    pub temperature: Option<f64>,
    /// `max_completion_tokens`, else `max_tokens`, when given.
    pub max_tokens: Option<u32>,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

fn wrong_type(param: &str, wanted: &str, got: &Value) -> ApiError {
    ApiError::invalid_field(
        param,
        format!("`{param}` must be {wanted}, not {}", json_kind(got)),
    )
}

/// Reads a request body.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid_field(
            "",
            format!(
                "the request body must be a JSON object like {{\"model\": ..., \"messages\": [...]}}, not {}",
                json_kind(&value)
            ),
        ));
    };
    let model = match obj.get("model") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_field(
                "model",
                "`model` is required: name a served model (GET /v1/models lists them)",
            ))
        }
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid_field(
                "model",
                "`model` must not be empty",
            ))
        }
        Some(other) => return Err(wrong_type("model", "a string", other)),
    };
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_field(
                "messages",
                "`messages` is required: a list of {\"role\", \"content\"} objects",
            ))
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(ApiError::invalid_field(
                "messages",
                "`messages` is empty: send at least one message",
            ))
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, m)| parse_message(i, m))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(wrong_type("messages", "an array of messages", other)),
    };
    let temperature = match obj.get("temperature") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let t = n.as_f64().unwrap_or(f64::NAN);
            if !(t.is_finite() && t >= 0.0) {
                return Err(ApiError::invalid_field(
                    "temperature",
                    format!("`temperature` must be a number >= 0, not {n}"),
                ));
            }
            Some(t)
        }
        Some(other) => return Err(wrong_type("temperature", "a number", other)),
    };
    let max_tokens = match token_limit(&obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => token_limit(&obj, "max_tokens")?,
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong_type("stream", "a boolean", other)),
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(wrong_type(
                    "stream_options.include_usage",
                    "a boolean",
                    other,
                ))
            }
        },
        Some(other) => return Err(wrong_type("stream_options", "an object", other)),
    };
    match obj.get("n") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => {
            return Err(ApiError::invalid_field(
                "n",
                format!("`n` must be 1 (one answer per request), not {v}"),
            ))
        }
    }
    Ok(ChatRequest {
        model,
        messages,
        temperature,
        max_tokens,
        stream,
        include_usage,
    })
}

fn token_limit(obj: &Map<String, Value>, field: &str) -> Result<Option<u32>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Ok(Some(n as u32)),
            _ => Err(ApiError::invalid_field(
                field,
                format!("`{field}` must be a whole number >= 1, not {v}"),
            )),
        },
    }
}

fn parse_message(i: usize, m: &Value) -> Result<Message, ApiError> {
    let at = format!("messages[{i}]");
    let Value::Object(obj) = m else {
        return Err(wrong_type(&at, "an object with `role` and `content`", m));
    };
    let role = match obj.get("role") {
        Some(Value::String(r)) => match r.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid_field(
                    format!("{at}.role"),
                    format!(
                        "`{at}.role` is '{other}'; this server takes 'system', 'developer', 'user' and 'assistant' (no tools)"
                    ),
                ))
            }
        },
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_field(
                format!("{at}.role"),
                format!("`{at}.role` is required"),
            ))
        }
        Some(other) => return Err(wrong_type(&format!("{at}.role"), "a string", other)),
    };
    let mut message = Message::new(role, "");
    match obj.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => message.content = s.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            let mut images = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let pat = format!("{at}.content[{j}]");
                match part_kind(&pat, part)? {
                    Part::Text(t) => texts.push(t),
                    Part::Image(u) => images.push(Value::String(u)),
                }
            }
            message.content = texts.join("\n");
            match images.len() {
                0 => {}
                1 => {
                    message.extra.insert("image".into(), images.remove(0));
                }
                _ => {
                    message.extra.insert("image".into(), Value::Array(images));
                }
            }
        }
        Some(other) => {
            return Err(wrong_type(
                &format!("{at}.content"),
                "a string or an array of content parts",
                other,
            ))
        }
    }
    Ok(message)
}

enum Part {
    Text(String),
    Image(String),
}

fn part_kind(at: &str, part: &Value) -> Result<Part, ApiError> {
    let Value::Object(p) = part else {
        return Err(wrong_type(at, "a content part object", part));
    };
    match p.get("type").and_then(Value::as_str) {
        Some("text") => match p.get("text") {
            Some(Value::String(t)) => Ok(Part::Text(t.clone())),
            Some(other) => Err(wrong_type(&format!("{at}.text"), "a string", other)),
            None => Err(ApiError::invalid_field(
                format!("{at}.text"),
                format!("`{at}.text` is required for a text part"),
            )),
        },
        Some("image_url") => {
            let url = match p.get("image_url") {
                Some(Value::String(u)) => u.clone(),
                Some(Value::Object(o)) => match o.get("url") {
                    Some(Value::String(u)) => u.clone(),
                    _ => {
                        return Err(ApiError::invalid_field(
                            format!("{at}.image_url.url"),
                            format!("`{at}.image_url.url` must be a string"),
                        ))
                    }
                },
                _ => {
                    return Err(ApiError::invalid_field(
                        format!("{at}.image_url"),
                        format!("`{at}.image_url` must be an object with a `url`"),
                    ))
                }
            };
            // A client on the network must not make the server read its files:
            // only URLs the plugin fetches, or the image itself.
            let lower = url.to_ascii_lowercase();
            if lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("data:image/")
            {
                Ok(Part::Image(url))
            } else {
                Err(ApiError::invalid_field(
                    format!("{at}.image_url.url"),
                    format!(
                        "`{at}.image_url.url` must be an http(s) URL or a data:image/... URL (local paths are not read)"
                    ),
                ))
            }
        }
        Some(other) => Err(ApiError::invalid_field(
            format!("{at}.type"),
            format!("`{at}.type` is '{other}'; this server takes 'text' and 'image_url' parts"),
        )),
        None => Err(ApiError::invalid_field(
            format!("{at}.type"),
            format!("`{at}.type` is required ('text' or 'image_url')"),
        )),
    }
}

/// Why generation ended, in OpenAI's words: read from the plugin's raw
/// response where it says (`choices[0].finish_reason`, also under
/// `response` as llamacpp records it; Anthropic's `stop_reason`), else
/// `length` when the completion used every allowed token, else `stop`.
pub fn finish_reason(g: &Generation, max_tokens: u32) -> &'static str {
    let r = &g.response;
    let said = r
        .pointer("/choices/0/finish_reason")
        .or_else(|| r.pointer("/response/choices/0/finish_reason"))
        .or_else(|| r.get("stop_reason"))
        .or_else(|| r.pointer("/candidates/0/finishReason"))
        .or_else(|| r.get("finish_reason"))
        .and_then(Value::as_str);
    match said.map(str::to_ascii_lowercase).as_deref() {
        Some("length" | "max_tokens") => "length",
        Some("content_filter" | "safety") => "content_filter",
        Some(_) => "stop",
        None => match &g.usage {
            Some(u) if u.completion_tokens >= u64::from(max_tokens) => "length",
            _ => "stop",
        },
    }
}

/// The `usage` object, when the plugin counted tokens.
pub fn usage(g: &Generation) -> Option<Value> {
    g.usage.as_ref().map(|u| {
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
        })
    })
}

/// What every answer says about itself.
pub struct Answer<'a> {
    /// `chatcmpl-...`.
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// The served model's name.
    pub model: &'a str,
    /// The plugin's answer.
    pub generation: &'a Generation,
    /// `finish_reason`.
    pub finish_reason: &'static str,
    /// The `clemhost` extension object.
    pub extension: Value,
}

/// A whole `chat.completion` object.
pub fn completion(a: &Answer<'_>) -> Value {
    let mut out = json!({
        "id": a.id,
        "object": "chat.completion",
        "created": a.created,
        "model": a.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": a.generation.text},
            "logprobs": null,
            "finish_reason": a.finish_reason,
        }],
    });
    if let Some(u) = usage(a.generation) {
        out["usage"] = u;
    }
    out["clemhost"] = a.extension.clone();
    out
}

/// The Server-Sent Events body of a streamed answer: a chunk with the
/// role, one with the whole text (plugins answer in one piece), one with
/// the finish reason and the `clemhost` object, the usage chunk when
/// asked for, then `data: [DONE]`.
pub fn sse_body(a: &Answer<'_>, include_usage: bool) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": a.generation.text}), Value::Null),
    ];
    let mut last = chunk(json!({}), json!(a.finish_reason));
    last["clemhost"] = a.extension.clone();
    events.push(last);
    if include_usage {
        events.push(json!({
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "choices": [],
            "usage": usage(a.generation),
        }));
    }
    let mut body = String::new();
    for e in events {
        body.push_str("data: ");
        body.push_str(&e.to_string());
        body.push_str("\n\n");
    }
    body.push_str("data: [DONE]\n\n");
    body
}

/// The `GET /v1/models` list.
pub fn model_list(models: &[(String, String)]) -> Value {
    let data: Vec<Value> = models
        .iter()
        .map(|(name, backend)| {
            json!({"id": name, "object": "model", "created": 0, "owned_by": format!("clemhost:{backend}")})
        })
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        parse_chat_request(body.as_bytes()).expect_err("refused")
    }

    #[test]
    fn a_plain_request_is_read() {
        let r = parse_chat_request(
            br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}],
                 "temperature": 0.5, "max_tokens": 7, "stream": true}"#,
        )
        .expect("valid");
        assert_eq!(r.model, "m");
        assert_eq!(r.messages, vec![Message::new("user", "hi")]);
        assert_eq!(
            (r.temperature, r.max_tokens, r.stream),
            (Some(0.5), Some(7), true)
        );
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let r = parse_chat_request(
            br#"{"model": "m", "messages": [{"role": "user", "content": "x"}],
                 "max_tokens": 7, "max_completion_tokens": 9}"#,
        )
        .expect("valid");
        assert_eq!(r.max_tokens, Some(9));
    }

    #[test]
    fn content_parts_become_text_and_images() {
        let r = parse_chat_request(
            br#"{"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is"}, {"type": "text", "text": "this?"},
                {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]}"#,
        )
        .expect("valid");
        assert_eq!(r.messages[0].content, "what is\nthis?");
        assert_eq!(r.messages[0].extra["image"], "https://x/a.png");
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(r#"{"model": "m", "messages": [{"role": "user", "content": 3}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e = err(r#"{"model": "m"}"#);
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = err(r#"{"model": 5, "messages": []}"#);
        assert!(
            e.message.contains("`model` must be a string, not a number"),
            "{}",
            e.message
        );
        let e = err(r#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}"#);
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = err(r#"{"model": "m", "messages": [{"role": "tool", "content": "x"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = err(
            r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]}"#,
        );
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
    }

    #[test]
    fn truncated_json_says_line_and_column() {
        let e = err("{\"model\": \"m\",\n \"messages\": [");
        assert_eq!(e.code, "invalid_json");
        assert!(e.message.contains("line 2, column"), "{}", e.message);
    }

    #[test]
    fn finish_reason_is_read_from_the_raw_response() {
        let mut g = Generation {
            response: json!({"response": {"choices": [{"finish_reason": "length"}]}}),
            ..Generation::default()
        };
        assert_eq!(finish_reason(&g, 10), "length");
        g.response = json!({"stop_reason": "end_turn"});
        assert_eq!(finish_reason(&g, 10), "stop");
        g.response = json!({});
        g.usage = Some(clemhost_plugin_sdk::Usage {
            prompt_tokens: 1,
            completion_tokens: 10,
        });
        assert_eq!(finish_reason(&g, 10), "length");
    }

    #[test]
    fn a_stream_ends_with_done() {
        let g = Generation {
            text: "hello".into(),
            ..Generation::default()
        };
        let a = Answer {
            id: "chatcmpl-1",
            created: 0,
            model: "m",
            generation: &g,
            finish_reason: "stop",
            extension: json!({}),
        };
        let body = sse_body(&a, true);
        assert!(body.ends_with("data: [DONE]\n\n"));
        assert_eq!(body.matches("data: ").count(), 5);
    }
}
