//! Built plugin libraries, model configs and requests for tests.

use clemhost_plugin_sdk::serde_json::{self, Value};
use clemhost_plugin_sdk::{GenerateRequest, Message, ModelConfig};
use std::path::PathBuf;
use std::time::Duration;

/// The path of a built plugin library (`lib<name>.so`) next to the running
/// test or example binary (cargo puts cdylibs in the profile directory and
/// its `deps/`).
pub fn plugin_library(name: &str) -> Option<PathBuf> {
    let file = format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(3)
        .flat_map(|dir| [dir.join(&file), dir.join("deps").join(&file)])
        .find(|p| p.is_file())
}

/// A model config for tests: an entry with `model_id`, credentials as given.
pub fn test_config(model_id: &str, credentials: Value, model_config: Option<Value>) -> ModelConfig {
    let mut spec = serde_json::Map::new();
    spec.insert(
        "model_name".into(),
        Value::String(format!("test-{model_id}")),
    );
    spec.insert("model_id".into(), Value::String(model_id.to_string()));
    if let Some(mc) = model_config {
        spec.insert("model_config".into(), mc);
    }
    ModelConfig {
        spec,
        credentials: credentials.as_object().cloned(),
        ..ModelConfig::default()
    }
}

/// A request with one user message and a timeout.
pub fn user_request(text: &str, timeout: Option<Duration>) -> GenerateRequest {
    GenerateRequest {
        request_id: "test-1".into(),
        messages: vec![Message::new("user", text)],
        gen_args: None,
        timeout_ms: timeout.map(|t| t.as_millis() as u64),
    }
}
