//! The `echo` backend: deterministic and offline, for tests, benchmarks and
//! trying clemhost without a model.
//!
//! Registry entry fields it reads from `model_config`:
//! - `reply` (string): answer with this text. `{name}` in it is replaced by
//!   the word after "named " (or "called ") in the last user message, when there is one,
//!   so a hellogame greeter answer can name the guest.
//! - `latency_ms` (number): wait this long before answering (cancellable).
//!
//! Without `reply` it answers with the last message's content. It records a
//! prompt object `{"model", "messages", "temperature", "max_tokens"}` and a
//! response object shaped like a chat completion, plus `clem_player`.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Capabilities, Ctx, GenerateRequest, Generation,
    ModelConfig, Timings, Usage,
};
use clemhost_pyfacts::{record, time};
use std::time::{Duration, Instant};

/// One echo model.
pub struct Echo {
    name: String,
    reply: Option<String>,
    latency: Duration,
    gen_temperature: f64,
    gen_max_tokens: u32,
}

fn guest_name(text: &str) -> Option<String> {
    for marker in ["named ", "called "] {
        if let Some(pos) = text.find(marker) {
            let rest = &text[pos + marker.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    None
}

impl Backend for Echo {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec!["echo".to_string()],
            description: "deterministic offline backend: echoes or answers from model_config.reply"
                .to_string(),
            capabilities: Capabilities {
                concurrent_generate: true,
                max_concurrency: 64,
                ..Capabilities::default()
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let mc = config.model_config();
        let reply = match mc.get("reply") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(BackendError::invalid_request(format!(
                    "model_config.reply of '{}' must be a string, not {other}",
                    config.model_name()
                )))
            }
        };
        let latency_ms = match mc.get("latency_ms") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                BackendError::invalid_request(format!(
                    "model_config.latency_ms of '{}' must be a whole number of milliseconds, not {v}",
                    config.model_name()
                ))
            })?,
        };
        Ok(Echo {
            name: config.model_name().to_string(),
            reply,
            latency: Duration::from_millis(latency_ms),
            gen_temperature: config.gen_args.temperature,
            gen_max_tokens: config.gen_args.max_tokens,
        })
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        let started = Instant::now();
        let call_start = time::now();
        let last = request
            .messages
            .last()
            .ok_or_else(|| BackendError::invalid_request("the request has no messages"))?;
        let (temperature, max_tokens) = match &request.gen_args {
            Some(g) => (g.temperature, g.max_tokens),
            None => (self.gen_temperature, self.gen_max_tokens),
        };
        if !self.latency.is_zero() {
            ctx.sleep(self.latency)?;
        }
        let text = match &self.reply {
            Some(r) => match guest_name(&last.content) {
                Some(n) => r.replace("{name}", &n),
                None => r.clone(),
            },
            None => last.content.clone(),
        };
        let prompt_tokens: usize = request
            .messages
            .iter()
            .map(|m| m.content.split_whitespace().count())
            .sum();
        let completion_tokens = text.split_whitespace().count();
        let elapsed = started.elapsed();
        let response = json!({
            "id": format!("echo-{}", request.request_id),
            "object": "chat.completion",
            "model": self.name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens
            },
            "clem_player": record::clem_player(&call_start, elapsed, &text, &self.name)
        });
        Ok(Generation {
            prompt: json!({
                "model": self.name,
                "messages": request.messages,
                "temperature": temperature,
                "max_tokens": max_tokens
            }),
            response,
            text,
            usage: Some(Usage {
                prompt_tokens: prompt_tokens as u64,
                completion_tokens: completion_tokens as u64,
            }),
            timings: Some(Timings {
                total_ms: Some(elapsed.as_secs_f64() * 1000.0),
                ..Timings::default()
            }),
        })
    }
}

clemhost_plugin_sdk::export_backend!(Echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_guest_name() {
        assert_eq!(
            guest_name("greet the guest named Peter."),
            Some("Peter".into())
        );
        assert_eq!(guest_name("nothing here"), None);
    }
}
