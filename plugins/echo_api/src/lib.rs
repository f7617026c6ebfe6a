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
use std::time::{Duration, Instant, SystemTime};

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

/// Formats a time like Python's `str(datetime)`: `2026-11-29 08:25:17.810570`.
fn python_datetime(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let micros = d.subsec_micros();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), UTC.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Formats a duration like Python's `str(timedelta)`: `0:00:00.000009`.
fn python_timedelta(d: Duration) -> String {
    let s = d.as_secs();
    let micros = d.subsec_micros();
    if micros == 0 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!(
            "{}:{:02}:{:02}.{micros:06}",
            s / 3600,
            (s % 3600) / 60,
            s % 60
        )
    }
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
        let call_start = SystemTime::now();
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
            "clem_player": {
                "call_start": python_datetime(call_start),
                "call_duration": python_timedelta(elapsed),
                "response": text,
                "model_name": self.name
            }
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
    fn python_formats() {
        assert_eq!(python_timedelta(Duration::from_micros(9)), "0:00:00.000009");
        assert_eq!(python_timedelta(Duration::from_secs(3725)), "1:02:05");
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_854_317_810_570);
        assert_eq!(python_datetime(t), "2026-11-28 08:25:17.810570");
    }

    #[test]
    fn finds_the_guest_name() {
        assert_eq!(
            guest_name("greet the guest named Peter."),
            Some("Peter".into())
        );
        assert_eq!(guest_name("nothing here"), None);
    }
}
