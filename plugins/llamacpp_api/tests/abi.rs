//! What the host sees of the plugin through the C ABI.

use crate::env;
use clemhost_plugin_sdk::serde_json::json;
use clemhost_plugin_sdk::{GenArgs, GenerateRequest, Message};
use std::sync::atomic::AtomicU8;

#[test]
fn manifest_announces_llamacpp_with_batching() {
    let plugin = env::plugin();
    let m = plugin.manifest();
    assert_eq!(m.backends, vec!["llamacpp".to_string()]);
    assert!(m.capabilities.concurrent_generate);
    assert!(m.capabilities.batching);
    assert!(m.capabilities.max_concurrency > 1);
    assert!(!m.capabilities.remote);
}

#[test]
fn recorded_prompt_and_response_have_clemcore_shape() {
    let Some(gguf) = env::smollm2() else { return };
    let model = env::open(&gguf, json!({}));
    let request = GenerateRequest {
        messages: vec![
            Message::new("system", ""),
            Message::new("user", "Start your answer with 'GREET:'."),
            Message::new("user", "Greet Peter."),
        ],
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens: 24,
            ..GenArgs::default()
        }),
        ..GenerateRequest::default()
    };
    let g = model
        .generate(&request, &AtomicU8::new(0))
        .expect("generates");
    let inputs = g.prompt["inputs"]
        .as_str()
        .expect("inputs is the prompt string");
    assert!(
        inputs.contains("Start your answer with 'GREET:'.\n\nGreet Peter.<|im_end|>"),
        "same-role messages are merged with a blank line: {inputs}"
    );
    assert!(
        inputs.ends_with("<|im_start|>assistant\n"),
        "generation prompt: {inputs}"
    );
    assert_eq!(g.prompt["max_new_tokens"], 24);
    assert_eq!(g.prompt["temperature"], 0.0);
    let choice = &g.response["response"]["choices"][0];
    let raw = choice["text"].as_str().expect("raw completion text");
    assert_eq!(g.text, raw.trim(), "the answer is the stripped completion");
    assert!(
        g.response.get("clem_player").is_none(),
        "clemcore's llamacpp adds no clem_player"
    );
    let timings = g.timings.expect("timings");
    assert!(timings.prefill_ms.is_some() && timings.decode_ms.is_some());
}

#[test]
fn an_answer_without_the_split_prefix_fails_as_in_clemcore() {
    let Some(gguf) = env::smollm2() else { return };
    let model = env::open(&gguf, json!({"output_split_prefix": "@@never-generated@@"}));
    let request = GenerateRequest {
        messages: vec![Message::new("user", "Say hi")],
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens: 8,
            ..GenArgs::default()
        }),
        ..GenerateRequest::default()
    };
    let err = model
        .generate(&request, &AtomicU8::new(0))
        .expect_err("the prefix never occurs");
    assert_eq!(
        err.kind,
        clemhost_plugin_sdk::ErrorKind::InvalidResponse,
        "{err}"
    );
    assert!(
        err.message.contains("@@never-generated@@"),
        "{}",
        err.message
    );
}
