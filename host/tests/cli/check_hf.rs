//! `clemhost check-hf`: the model-adding check on tiny model folders the
//! tests write, a pre-filled HF cache, and the real SmolLM2 when present.

use crate::util::*;
use std::path::PathBuf;

/// A Gemma-like template that refuses system messages.
const NO_SYSTEM_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ '<start_of_turn>' + message['role'] + '\\n' + message['content'] + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

fn tiny_model(env: &TestEnv, dir: &str, template: Option<&str>) -> PathBuf {
    let mut cfg = serde_json::json!({
        "tokenizer_class": "GemmaTokenizer",
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "added_tokens_decoder": {
            "1": {"content": "<bos>", "special": true},
            "2": {"content": "<eos>", "special": true},
            "106": {"content": "<start_of_turn>", "special": true},
            "107": {"content": "<end_of_turn>", "special": true}
        }
    });
    if let Some(t) = template {
        cfg["chat_template"] = serde_json::json!(t);
    }
    env.write(&format!("{dir}/tokenizer_config.json"), &cfg.to_string());
    env.write(
        &format!("{dir}/config.json"),
        r#"{"model_type": "gemma", "max_position_embeddings": 8192}"#,
    );
    env.write(
        &format!("{dir}/generation_config.json"),
        r#"{"eos_token_id": [2, 107]}"#,
    );
    env.path().join(dir)
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn a_template_that_rejects_system_messages_is_a_warning_and_the_entry_culls_end_of_turn() {
    let env = TestEnv::new();
    let dir = tiny_model(&env, "tiny-gemma", Some(NO_SYSTEM_TEMPLATE));
    let out = env.run(&["check-hf", "-m", dir.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json_of(&out);
    assert_eq!(j["passed"], true);
    let system = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains("system"))
        .unwrap();
    assert_eq!(system["verdict"], "warn");
    assert!(
        system["detail"]
            .as_str()
            .unwrap()
            .contains("System role not supported"),
        "{system}"
    );
    let entry = &j["proposed_entry"];
    assert_eq!(entry["backend"], "huggingface_local");
    assert_eq!(entry["model_name"], "tiny-gemma");
    assert_eq!(entry["context_size"], "8k");
    assert_eq!(entry["model_config"]["premade_chat_template"], true);
    // The turn closes with <end_of_turn>; the tokenizer's EOS follows.
    assert_eq!(entry["model_config"]["eos_to_cull"], "<end_of_turn>|<eos>");
    assert_eq!(j["tokenizer"]["eos_token_ids"], serde_json::json!([2, 107]));

    // The text form says the same and shows the applied prompts.
    let out = env.run(&["check-hf", "-m", dir.to_str().unwrap(), "-t"]);
    let text = stdout(&out);
    assert!(
        text.contains("[WARN]") && text.contains("System role not supported"),
        "{text}"
    );
    assert!(text.contains("<start_of_turn>model\n"), "{text}");
    assert!(
        text.contains("The model passes the chat template checks."),
        "{text}"
    );
    assert!(text.contains("Chat template:\n{{ bos_token }}"), "{text}");
}

#[test]
fn no_template_or_a_broken_one_fails_with_the_fix() {
    let env = TestEnv::new();
    let dir = tiny_model(&env, "bare", None);
    let out = env.run(&["check-hf", "-m", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    let text = stdout(&out);
    assert!(
        text.contains("[FAIL]") && text.contains("custom_chat_template"),
        "{text}"
    );
    assert!(text.contains("does NOT pass"), "{text}");

    let dir = tiny_model(
        &env,
        "raises",
        Some("{{ raise_exception('nothing works') }}"),
    );
    let out = env.run(&["check-hf", "-m", dir.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(5));
    let j = json_of(&out);
    assert_eq!(j["passed"], false);
    assert_eq!(j["checks"][0]["verdict"], "fail");
    assert!(j["checks"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("nothing works"));
}

#[test]
fn a_broken_config_file_names_line_and_column() {
    let env = TestEnv::new();
    env.write(
        "broken/tokenizer_config.json",
        "{\n  \"bos_token\": \"<s>\",\n  oops\n}",
    );
    let out = env.run(&[
        "check-hf",
        "-m",
        env.path().join("broken").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("tokenizer_config.json") && err.contains(":3:"),
        "{err}"
    );
}

#[test]
fn a_hub_id_is_found_in_a_pre_filled_cache_offline() {
    let env = TestEnv::new();
    let snap = "hf/hub/models--acme--tiny-chat/snapshots/0123abcd";
    tiny_model(&env, snap, Some(NO_SYSTEM_TEMPLATE));
    env.write("hf/hub/models--acme--tiny-chat/refs/main", "0123abcd");
    let out = env
        .cmd()
        .args(["check-hf", "-m", "acme/tiny-chat", "--json"])
        .env("HF_HUB_CACHE", env.path().join("hf/hub"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json_of(&out);
    assert_eq!(j["proposed_entry"]["huggingface_id"], "acme/tiny-chat");
    assert_eq!(j["proposed_entry"]["model_name"], "tiny-chat");

    // Offline and not cached: the error says so and what to do.
    let out = env
        .cmd()
        .args(["check-hf", "-m", "acme/absent"])
        .env("HF_HUB_CACHE", env.path().join("hf/hub"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HF_HUB_OFFLINE"), "{}", stderr(&out));
}

#[test]
fn write_registry_appends_and_never_clobbers() {
    let env = TestEnv::new();
    let dir = tiny_model(&env, "tiny-gemma", Some(NO_SYSTEM_TEMPLATE));
    env.write(
        "model_registry.json",
        r#"[{"model_name": "mine", "backend": "openai", "model_id": "x"}]"#,
    );
    let out = env.run(&[
        "check-hf",
        "-m",
        dir.to_str().unwrap(),
        "--write-registry",
        "model_registry.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.path().join("model_registry.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = reg
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["model_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mine", "tiny-gemma"]);
    let before = std::fs::read_to_string(env.path().join("model_registry.json")).unwrap();
    let out = env.run(&[
        "check-hf",
        "-m",
        dir.to_str().unwrap(),
        "--write-registry",
        "model_registry.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already has an entry"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(env.path().join("model_registry.json")).unwrap(),
        before
    );
}

/// The converted SmolLM2 directory, when scripts/setup made it.
pub fn smollm2_hf_dir() -> Option<PathBuf> {
    let p = std::env::var_os("CLEMHOST_SMOLLM2_HF")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::util::clemhost_cache().join("models/smollm2-135m-instruct-hf"));
    if p.join("tokenizer.json").is_file() {
        Some(p)
    } else {
        eprintln!(
            "skipped: no converted SmolLM2 at {} (scripts/setup makes it)",
            p.display()
        );
        None
    }
}

#[test]
fn smollm2_passes_and_gets_an_escaped_eos_regex() {
    let Some(dir) = smollm2_hf_dir() else { return };
    let env = TestEnv::new();
    let out = env.run(&["check-hf", "-m", dir.to_str().unwrap(), "--json", "-i"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json_of(&out);
    assert_eq!(j["passed"], true);
    assert_eq!(j["tokenizer"]["vocab_size"], 49152);
    assert_eq!(
        j["proposed_entry"]["model_config"]["eos_to_cull"],
        r"<\|im_end\|>"
    );
    assert!(j["proposed_entry"]["model_config"]
        .get("output_split_prefix")
        .is_none());
    let round_trip = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains("tokenizer gives"))
        .unwrap();
    assert_eq!(round_trip["verdict"], "pass");
}
