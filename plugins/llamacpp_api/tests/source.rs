//! Models named by a Hub repo id are taken from the standard HF cache
//! layout (`models--org--name/snapshots/<rev>/<file>` + `refs/main`).

use crate::env;
use clemhost_local_common::hub::HubSettings;
use clemhost_plugin_sdk::serde_json::json;
use clemhost_plugin_sdk::{ErrorKind, GenArgs, GenerateRequest, Message, ModelConfig};
use llamacpp_api::source::resolve_gguf;
use std::path::Path;
use std::sync::atomic::AtomicU8;

const REPO: &str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

/// Builds a hub cache holding `file` of REPO as a link to `gguf`.
fn fill_cache(hub: &Path, gguf: &Path, file: &str) {
    let repo_dir = hub.join("models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF");
    let snapshot = repo_dir.join("snapshots").join(REVISION);
    std::fs::create_dir_all(&snapshot).expect("snapshot dir");
    std::fs::create_dir_all(repo_dir.join("refs")).expect("refs dir");
    std::fs::write(repo_dir.join("refs/main"), REVISION).expect("refs/main");
    std::os::unix::fs::symlink(gguf, snapshot.join(file)).expect("link to the GGUF");
}

#[test]
fn repo_ids_resolve_from_a_prefilled_cache_and_offline_misses_are_explained() {
    let Some(gguf) = env::smollm2() else { return };
    let hub = tempfile::tempdir().expect("temp dir");
    fill_cache(hub.path(), &gguf, "smollm2.gguf");
    let access = HubSettings {
        cache_dir: hub.path().to_path_buf(),
        offline: true,
        ..HubSettings::default()
    };
    let found =
        resolve_gguf("m", REPO, Some("smollm2.gguf"), &access).expect("cached file is found");
    assert!(
        found.ends_with(format!("snapshots/{REVISION}/smollm2.gguf")),
        "{}",
        found.display()
    );
    let err =
        resolve_gguf("m", REPO, Some("other.gguf"), &access).expect_err("not cached, offline");
    assert!(err.message.contains("HF_HUB_OFFLINE"), "{}", err.message);
    assert!(err.message.contains("other.gguf"), "{}", err.message);
    let err = resolve_gguf("m", REPO, None, &access).expect_err("a repo needs a filename");
    assert!(
        err.message.contains("model_config.filename"),
        "{}",
        err.message
    );
}

#[test]
fn a_local_directory_with_one_gguf_needs_no_filename() {
    let Some(gguf) = env::smollm2() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(&gguf, dir.path().join("model.gguf")).expect("link");
    let access = HubSettings {
        cache_dir: dir.path().join("no-hub"),
        offline: true,
        ..HubSettings::default()
    };
    let dir_id = dir.path().to_string_lossy().into_owned();
    let found = resolve_gguf("m", &dir_id, None, &access).expect("the only .gguf");
    assert!(found.ends_with("model.gguf"));
    std::os::unix::fs::symlink(&gguf, dir.path().join("second.gguf")).expect("link");
    let err = resolve_gguf("m", &dir_id, None, &access).expect_err("two candidates");
    assert!(
        err.message.contains("model.gguf") && err.message.contains("second.gguf"),
        "{}",
        err.message
    );
}

/// Through the ABI with the environment variables a user sets. This is the
/// only test that touches HF_HUB_CACHE / HF_HUB_OFFLINE.
#[test]
fn the_plugin_loads_a_hub_model_from_hf_hub_cache() {
    let Some(gguf) = env::smollm2() else { return };
    let hub = tempfile::tempdir().expect("temp dir");
    fill_cache(hub.path(), &gguf, "SmolLM2-135M-Instruct.Q4_1.gguf");
    std::env::set_var("HF_HUB_CACHE", hub.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let spec = json!({
        "model_name": "smollm2-hub",
        "backend": "llamacpp",
        "huggingface_id": REPO,
        "model_config": {"premade_chat_template": true, "eos_to_cull": "<\\|im_end\\|>",
                          "filename": "SmolLM2-135M-Instruct.Q4_1.gguf", "threads": 2}
    });
    let config = ModelConfig {
        spec: spec.as_object().cloned().unwrap_or_default(),
        ..ModelConfig::default()
    };
    let model = env::plugin()
        .create_model(&config)
        .expect("loaded from the cache");
    let g = model
        .generate(
            &GenerateRequest {
                messages: vec![Message::new("user", "Say hi")],
                gen_args: Some(GenArgs {
                    temperature: 0.0,
                    max_tokens: 8,
                    ..GenArgs::default()
                }),
                ..GenerateRequest::default()
            },
            &AtomicU8::new(0),
        )
        .expect("generates");
    assert!(g.usage.expect("usage").completion_tokens > 0);
    let mut missing = config.clone();
    missing.spec["model_config"]["filename"] = json!("absent.gguf");
    let err = env::plugin()
        .create_model(&missing)
        .err()
        .expect("not in the cache");
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(err.message.contains("HF_HUB_OFFLINE"), "{}", err.message);
}
