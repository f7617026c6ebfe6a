//! Truth values as clemcore's Python and `huggingface_hub` read them.

use clemhost_plugin_sdk::serde_json::Value;

/// Python's `bool()` of a JSON value: `null`, `false`, `0`, `0.0`, `""`,
/// `[]` and `{}` are false, everything else is true. This is how clemcore
/// reads flags such as `requires_api_key` or `premade_chat_template`.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// [`truthy`] of a value that may be missing (missing is false).
pub fn truthy_opt(v: Option<&Value>) -> bool {
    v.is_some_and(truthy)
}

/// A boolean environment variable as `huggingface_hub` reads one
/// (`HF_HUB_OFFLINE`, ...): `1`, `true`, `yes` or `on`, in any case and
/// with surrounding blanks; anything else is false.
pub fn env_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}
