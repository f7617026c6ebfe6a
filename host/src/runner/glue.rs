//! The runner's view of the model registry and the key store.

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// Parses a `-m` argument into a selector (a name or a JSON object).
pub fn parse_model_arg(arg: &str) -> Map<String, Value> {
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(arg) {
        return m;
    }
    let mut m = Map::new();
    m.insert("model_name".into(), Value::String(arg.to_string()));
    m
}

/// Resolves a selector to a full registry entry and its backend.
pub fn resolve(
    _global: &GlobalArgs,
    selector: &Map<String, Value>,
) -> Result<(Map<String, Value>, String)> {
    match selector.get("backend").and_then(Value::as_str) {
        Some(b) => Ok((selector.clone(), b.to_string())),
        None => Err(Error::msg(format!(
            "model {} is not in the registry (registry not wired yet)",
            Value::Object(selector.clone())
        ))),
    }
}

/// The key section a plugin reads; `required` makes a missing one an error.
pub fn credentials(key_name: &str, required: bool) -> Result<Option<Map<String, Value>>> {
    if required {
        return Err(Error::msg(format!(
            "no key '{key_name}' (keys not wired yet)"
        )));
    }
    Ok(None)
}
