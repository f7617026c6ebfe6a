//! Where the tests find the model, the fixtures and the built plugin.

use clemhost_plugin_sdk::host::{ModelHandle, Plugin};
use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{GenArgs, ModelConfig};
use std::path::PathBuf;

/// The SmolLM2 GGUF: `$CLEMHOST_SMOLLM2_GGUF`, else where
/// `scripts/fetch-smollm2` puts it. `None` (and a message) when absent.
pub fn smollm2() -> Option<PathBuf> {
    let path = match std::env::var_os("CLEMHOST_SMOLLM2_GGUF") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("CLEMHOST_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/clemhost"))
                })?;
            cache.join("models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: SmolLM2 GGUF not found at {}; run scripts/fetch-smollm2 (or set CLEMHOST_SMOLLM2_GGUF)",
            path.display()
        );
        None
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference fixtures made by `scripts/reference-llamacpp`, or `None`
/// (and a message) while they have not been generated.
pub fn reference() -> Option<Value> {
    let path = repo_root().join("scripts/fixtures/llamacpp-greedy.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "skipped: {} does not exist yet; run scripts/reference-llamacpp to make it",
            path.display()
        );
        return None;
    };
    Some(
        clemhost_plugin_sdk::serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
}

/// The plugin library cargo built next to this test binary.
pub fn plugin() -> Plugin {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in <target>/<profile>/deps");
    let lib = dir.join(format!(
        "{}llamacpp_api{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    Plugin::open(&lib).unwrap_or_else(|e| panic!("opening {}: {e}", lib.display()))
}

/// A model configuration for the GGUF with extra `model_config` fields.
pub fn config(gguf: &std::path::Path, model_config: Value) -> ModelConfig {
    let mut mc = json!({
        "premade_chat_template": true,
        "eos_to_cull": "<\\|im_end\\|>",
        "threads": 2,
        "filename": gguf.file_name().expect("a file name").to_string_lossy(),
    });
    if let (Some(base), Some(extra)) = (mc.as_object_mut(), model_config.as_object()) {
        base.extend(extra.clone());
    }
    let spec = json!({
        "model_name": "smollm2-test",
        "backend": "llamacpp",
        "huggingface_id": gguf.parent().expect("a file has a parent"),
        "model_config": mc,
    });
    ModelConfig {
        spec: spec.as_object().cloned().unwrap_or_default(),
        gen_args: GenArgs::default(),
        ..ModelConfig::default()
    }
}

/// Opens the model through the plugin's C ABI.
pub fn open(gguf: &std::path::Path, model_config: Value) -> ModelHandle {
    plugin()
        .create_model(&config(gguf, model_config))
        .unwrap_or_else(|e| panic!("create_model: {e}"))
}
