//! The `openai_compatible` plugin against a fake chat-completions server on 127.0.0.1.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{Backend, Ctx, ErrorKind, GenerateRequest, Message, ModelConfig};
use clemhost_remote_common::test_support::{
    check_abi, check_faults, check_wire, test_config, FakeServer, Reply, WireCase,
};
use openai_compatible_api::OpenAiCompatible;

const SECRET: &str = "vllm-t0ken-not-for-logs";

fn config(base: &str) -> ModelConfig {
    test_config(
        "Qwen/Qwen3-8B",
        json!({ "api_key": SECRET, "base_url": format!("{base}/v1/") }),
        None,
    )
}

/// A chat completion shaped like vLLM's answer.
fn completion() -> Value {
    json!({
        "id": "chatcmpl-3f1c",
        "object": "chat.completion",
        "created": 1764405917,
        "model": "Qwen/Qwen3-8B",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": "GREET: Hello Max, welcome!", "tool_calls": [],
                         "reasoning_content": null },
            "logprobs": null,
            "finish_reason": "stop",
            "stop_reason": null
        }],
        "usage": { "prompt_tokens": 40, "total_tokens": 49, "completion_tokens": 9 },
        "prompt_logprobs": null
    })
}

fn case() -> WireCase {
    WireCase {
        request: GenerateRequest {
            request_id: "r1".into(),
            messages: vec![
                Message::new("system", "You are polite."),
                Message::new("user", "Greet Max."),
                Message::new("assistant", "GREET: Hi"),
                Message::new("user", "Again, with welcome."),
            ],
            gen_args: None,
            timeout_ms: None,
        },
        path: "/chat/completions".into(),
        headers: vec![("authorization", format!("Bearer {SECRET}"))],
        body: json!({
            "model": "Qwen/Qwen3-8B",
            "messages": [
                { "role": "system", "content": "You are polite." },
                { "role": "user", "content": "Greet Max." },
                { "role": "assistant", "content": "GREET: Hi" },
                { "role": "user", "content": "Again, with welcome." }
            ],
            "temperature": 0.0,
            "max_tokens": 300
        }),
        answer: completion(),
        text: "GREET: Hello Max, welcome!".into(),
        usage: Some((40, 9)),
    }
}

#[test]
fn sends_chat_completions_to_the_configured_server() {
    check_wire::<OpenAiCompatible>(&config, "/v1", &case(), SECRET);
}

#[test]
fn works_through_the_plugin_abi() {
    check_abi(
        "openai_compatible_api",
        "openai_compatible",
        &config,
        "/v1",
        &case(),
        SECRET,
    );
}

#[test]
fn faults_become_typed_errors_without_the_key() {
    let no_choices = json!({ "id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [] });
    check_faults::<OpenAiCompatible>(&config, no_choices, SECRET);
}

#[test]
fn the_api_key_is_optional_and_base_url_is_required() {
    let server = FakeServer::always(Reply::json(completion()));
    let keyless = test_config(
        "Qwen/Qwen3-8B",
        json!({ "base_url": format!("{}/v1", server.base_url()) }),
        None,
    );
    let model = OpenAiCompatible::create(keyless).expect("opens without a key");
    model
        .generate(case().request, &Ctx::detached())
        .expect("works");
    assert_eq!(server.requests()[0].header("authorization"), None);

    let err = match OpenAiCompatible::create(test_config("m", json!({ "api_key": SECRET }), None)) {
        Ok(_) => panic!("no base_url must not open"),
        Err(e) => e,
    };
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(
        err.message.contains("base_url") && err.message.contains("openai_compatible"),
        "{err}"
    );
    assert!(!err.message.contains(SECRET));
}

#[test]
fn tls_opt_out_must_be_a_boolean() {
    let bad = test_config(
        "m",
        json!({ "base_url": "https://vllm.internal/v1", "insecure_skip_tls_verify": "yes" }),
        None,
    );
    let err = match OpenAiCompatible::create(bad) {
        Ok(_) => panic!("a non-boolean opt-out must not open"),
        Err(e) => e,
    };
    assert!(err.message.contains("insecure_skip_tls_verify"), "{err}");
    let ok = test_config(
        "m",
        json!({ "base_url": "https://vllm.internal/v1" }),
        Some(json!({ "insecure_skip_tls_verify": true })),
    );
    assert!(OpenAiCompatible::create(ok).is_ok());
}
