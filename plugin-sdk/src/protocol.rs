//! The JSON messages that cross the plugin boundary: pure data, no I/O.
//!
//! All types accept unknown fields and give every optional field a default,
//! so a host and a plugin of different minor versions understand each other.
//! Fields are only ever added within an ABI major version.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// What a plugin says about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// The plugin's name (its crate name, e.g. `openai_api`).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The version of `clemhost-plugin-sdk` it was built with.
    pub sdk_version: String,
    /// The ABI major version it speaks.
    pub abi_version: u32,
    /// The registry `backend` names it serves (usually one).
    pub backends: Vec<String>,
    /// One line for `clemhost plugins list`.
    pub description: String,
    /// `"unwind"` or `"abort"`: with `abort`, a panic ends the host process.
    pub panic_strategy: String,
    /// What the host may do with it.
    pub capabilities: Capabilities,
}

/// What the host may do with a plugin's models.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// `generate` may be called from several threads at once on one model.
    pub concurrent_generate: bool,
    /// How many generations on one model are worth running at once (0 = no
    /// opinion). `clemhost run` takes its default `--parallel` from it.
    pub max_concurrency: u32,
    /// Concurrent requests on one model are run as one batch by the plugin.
    pub batching: bool,
    /// The backend talks to a remote service (keys, retries, rate limits apply).
    pub remote: bool,
    /// The key.json section the backend reads, if any (e.g. `openai`). A
    /// registry entry may name another one with a top-level `"key_name"`.
    pub key_name: Option<String>,
    /// The backend cannot run without that key section.
    pub requires_key: bool,
    /// The environment variables that stand in for the section's `api_key`,
    /// first set one wins (e.g. `["OPENAI_API_KEY"]`). The host reads them
    /// for the section [`Capabilities::key_name`] names, never for a section
    /// a registry entry names itself.
    pub key_env: Vec<String>,
    /// Other fields of the section that come from the environment when the
    /// section itself does (field name, variable), e.g.
    /// `[("organisation", "OPENAI_ORG_ID")]`.
    pub key_env_fields: Vec<(String, String)>,
    /// A `model_config` flag that makes the key section required for one
    /// entry (e.g. `requires_api_key`, which gated HuggingFace models set).
    pub key_required_flag: Option<String>,
    /// The host records the plugin's response object as it is, without
    /// adding clemcore's `clem_player` object to it (clemcore's llamacpp
    /// backend does not add it).
    pub raw_response_as_is: bool,
}

/// Generation arguments, as clemcore passes them (`temperature`, `max_tokens`)
/// plus anything else a caller sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenArgs {
    /// Sampling temperature; 0.0 means greedy.
    #[serde(default)]
    pub temperature: f64,
    /// The most tokens to generate.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Other arguments, kept in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_max_tokens() -> u32 {
    300
}

impl Default for GenArgs {
    fn default() -> Self {
        GenArgs {
            temperature: 0.0,
            max_tokens: 300,
            extra: Map::new(),
        }
    }
}

/// Everything a plugin needs to open one model.
///
/// Its `Debug` shows the credentials' field names only, never their values
/// (a `{config:?}` in a log line or a panic message must not print a key).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// The unified registry entry, with every field as the user wrote it.
    pub spec: Map<String, Value>,
    /// The plugin's section of key.json (or the environment fallback), if any.
    pub credentials: Option<Map<String, Value>>,
    /// Generation arguments of the run.
    pub gen_args: GenArgs,
    /// The most `generate` calls the host will have in flight on this
    /// model at once (`--parallel`, the episodes to play, the rate limits),
    /// when it knows; a local backend sizes its per-request memory (KV
    /// caches, batch slots) by it. Absent (`None`) from older hosts and when
    /// the host cannot tell; older plugins ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let credentials = self.credentials.as_ref().map(|c| {
            c.keys()
                .map(|k| (k.as_str(), "<redacted>"))
                .collect::<std::collections::BTreeMap<_, _>>()
        });
        f.debug_struct("ModelConfig")
            .field("spec", &self.spec)
            .field("credentials", &credentials)
            .field("gen_args", &self.gen_args)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl ModelConfig {
    /// The entry's `model_name`, or `""`.
    pub fn model_name(&self) -> &str {
        self.spec
            .get("model_name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The entry's `model_config` object (empty when absent).
    pub fn model_config(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        match self.spec.get("model_config") {
            Some(Value::Object(m)) => m,
            _ => EMPTY.get_or_init(Map::new),
        }
    }

    /// A string field of the credentials, if present and non-empty.
    pub fn credential(&self, field: &str) -> Option<&str> {
        self.credentials
            .as_ref()?
            .get(field)?
            .as_str()
            .filter(|s| !s.trim().is_empty())
    }
}

/// One chat message, as games produce them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: String,
    /// Extra keys (e.g. `image`), kept in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message with a role and text and no extra keys.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            extra: Map::new(),
        }
    }
}

/// One call of `generate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateRequest {
    /// An id for logs (the host makes one up per call).
    pub request_id: String,
    /// The conversation so far, ending with the new user turn.
    pub messages: Vec<Message>,
    /// Overrides the model's generation arguments for this call.
    pub gen_args: Option<GenArgs>,
    /// How long the host waits for this call, in milliseconds from its start.
    pub timeout_ms: Option<u64>,
}

/// Token counts of one call, when the backend knows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// Where the time of one call went, when the backend measures it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timings {
    /// Waiting in the plugin's queue (e.g. for a batch to form).
    pub queue_ms: Option<f64>,
    /// Processing the prompt.
    pub prefill_ms: Option<f64>,
    /// Generating new tokens.
    pub decode_ms: Option<f64>,
    /// The whole call inside the plugin.
    pub total_ms: Option<f64>,
}

/// The result of one call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Generation {
    /// The prompt object as sent (recorded as `manipulated_prompt_obj`).
    pub prompt: Value,
    /// The raw response object (recorded as `raw_response_obj`).
    pub response: Value,
    /// The cleaned answer the game sees.
    pub text: String,
    /// Token counts.
    pub usage: Option<Usage>,
    /// Timings.
    pub timings: Option<Timings>,
}

/// What went wrong, in terms the host can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Missing or rejected credentials. Not retried.
    Auth,
    /// The provider asks to slow down; see `retry_after_ms`. Retried.
    RateLimited,
    /// The call ran past its deadline. Retried.
    Timeout,
    /// The host cancelled the call.
    Cancelled,
    /// The request or the model configuration is wrong. Not retried.
    InvalidRequest,
    /// The provider answered with something unusable (bad JSON, no choices).
    InvalidResponse,
    /// Prompt plus `max_tokens` do not fit the model's context.
    ContextExceeded,
    /// The service is down or the connection broke. Retried.
    Unavailable,
    /// A bug or an unexpected state inside the plugin.
    Internal,
    /// The plugin panicked; the model handle is poisoned.
    Panic,
    /// A kind this SDK version does not know (from a newer plugin).
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The snake_case name, as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::ContextExceeded => "context_exceeded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::Panic => "panic",
            ErrorKind::Unknown => "unknown",
        }
    }

    /// Whether trying the same call again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::Timeout | ErrorKind::Unavailable
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed error from a backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// A readable message (never containing secrets).
    #[serde(default)]
    pub message: String,
    /// For `rate_limited`: how long the provider asked to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Extra structured facts (status code, body excerpt, token counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl BackendError {
    /// An error of a kind with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
            retry_after_ms: None,
            details: None,
        }
    }

    /// Shorthand for [`ErrorKind::InvalidRequest`].
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds a retry-after hint.
    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for BackendError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/fuzz_targets/protocol.rs`: serde_json's default float
    /// reader is off by one unit in the last place for some texts
    /// (`1.51e+41` read as `1.5099999999999999e+41`), so a number changed
    /// on its way from the host to a plugin and did not read as Python
    /// reads it. The workspace turns on its exact reader (`float_roundtrip`).
    #[test]
    fn numbers_cross_the_boundary_unchanged() {
        let sent: GenArgs =
            serde_json::from_str(r#"{"temperature": 0.7, "x": 1.51e+41}"#).expect("valid JSON");
        assert_eq!(sent.extra["x"].as_f64(), Some(1.51e41));
        let text = serde_json::to_string(&sent).expect("serialises");
        let received: GenArgs = serde_json::from_str(&text).expect("reads back");
        assert_eq!(received, sent, "{text}");
    }

    #[test]
    fn debug_shows_credential_names_not_values() {
        let mut credentials = Map::new();
        credentials.insert(
            "api_key".into(),
            Value::String("sk-debug-secret-0123".into()),
        );
        credentials.insert(
            "extra_headers".into(),
            serde_json::json!({"X-Auth": "nested-secret-4567"}),
        );
        let config = ModelConfig {
            credentials: Some(credentials),
            ..ModelConfig::default()
        };
        let text = format!("{config:?} {config:#?}");
        assert!(!text.contains("sk-debug-secret-0123"), "{text}");
        assert!(!text.contains("nested-secret-4567"), "{text}");
        assert!(
            text.contains("api_key") && text.contains("extra_headers"),
            "{text}"
        );
    }
}
