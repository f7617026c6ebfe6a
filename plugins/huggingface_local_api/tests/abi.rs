//! The built plugin through clemhost's real loader and C ABI.

mod common;

use candle_core::DType;
use clemhost_plugin_sdk::host::Plugin;
use clemhost_plugin_sdk::{GenArgs, GenerateRequest, Message, ModelConfig};
use std::path::PathBuf;
use std::sync::atomic::AtomicU8;

/// `target/<profile>/libhuggingface_local_api.so`, next to `deps/` where this
/// test binary lives (cargo builds the cdylib for integration tests).
fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps");
    dir.join(format!(
        "{}huggingface_local_api{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

#[test]
fn the_plugin_loads_and_generates_through_the_c_abi() {
    let path = plugin_path();
    assert!(path.is_file(), "{} not built", path.display());
    let plugin = Plugin::open(&path).expect("plugin opens");
    let manifest = plugin.manifest();
    assert_eq!(manifest.backends, ["huggingface_local"]);
    assert!(manifest.capabilities.concurrent_generate && manifest.capabilities.batching);

    let tmp = tempfile::tempdir().unwrap();
    let dir = common::write_model(tmp.path(), "qwen3", DType::BF16);
    let config = ModelConfig {
        spec: common::entry(&dir, serde_json::json!({})),
        ..ModelConfig::default()
    };
    let model = plugin.create_model(&config).expect("tiny model opens");
    let request = GenerateRequest {
        messages: vec![Message::new("user", "Hi"), Message::new("user", "there")],
        gen_args: Some(GenArgs {
            max_tokens: 5,
            ..GenArgs::default()
        }),
        ..GenerateRequest::default()
    };
    let g = model
        .generate(&request, &AtomicU8::new(0))
        .expect("generation");
    // clemcore's preprocessing merged the two user turns.
    assert_eq!(
        g.prompt["inputs"],
        "<s>user: Hi\n\nthere</s>\n<|assistant|>"
    );
    assert_eq!(g.response["clem_player"]["response"], g.text.as_str());
    assert!(g.usage.unwrap().completion_tokens <= 5);

    let mut bad = config.clone();
    bad.spec["huggingface_id"] = serde_json::json!(tmp.path().join("nowhere").to_string_lossy());
    let err = plugin
        .create_model(&bad)
        .err()
        .expect("a missing directory fails");
    assert!(err.message.contains("nowhere"), "{}", err.message);
}
