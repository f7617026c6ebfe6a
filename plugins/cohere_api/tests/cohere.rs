//! The `cohere` plugin against a fake Cohere v2 server on 127.0.0.1.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{GenerateRequest, Message, ModelConfig};
use clemhost_remote_common::test_support::{
    check_abi, check_faults, check_missing_key, check_wire, test_config, WireCase,
};
use cohere_api::Cohere;

const SECRET: &str = "co-secret-api-key-123";

fn config(base: &str) -> ModelConfig {
    test_config(
        "command-a-03-2025",
        json!({ "api_key": SECRET, "base_url": format!("{base}/v2") }),
        None,
    )
}

/// An answer shaped like Cohere's v2 chat response.
fn response(content: Value) -> Value {
    json!({
        "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        "finish_reason": "COMPLETE",
        "message": { "role": "assistant", "content": content },
        "usage": {
            "billed_units": { "input_tokens": 12, "output_tokens": 8 },
            "tokens": { "input_tokens": 210, "output_tokens": 8 }
        }
    })
}

fn case() -> WireCase {
    WireCase {
        request: GenerateRequest {
            messages: vec![Message::new("user", "Greet David.")],
            ..GenerateRequest::default()
        },
        path: "/chat".into(),
        headers: vec![("authorization", format!("Bearer {SECRET}"))],
        body: json!({
            "model": "command-a-03-2025",
            "messages": [{ "role": "user", "content": "Greet David." }],
            "temperature": 0.0,
            "max_tokens": 300
        }),
        // Not stripped, as clemcore leaves it.
        answer: response(json!([{ "type": "text", "text": " GREET: Hello David, welcome!" }])),
        text: " GREET: Hello David, welcome!".into(),
        usage: Some((210, 8)),
    }
}

#[test]
fn sends_v2_chat() {
    check_wire::<Cohere>(&config, "/v2", &case(), SECRET);
}

#[test]
fn works_through_the_plugin_abi() {
    check_abi("cohere_api", "cohere", &config, "/v2", &case(), SECRET);
}

#[test]
fn faults_become_typed_errors_without_the_key() {
    check_faults::<Cohere>(&config, response(json!([])), SECRET);
}

#[test]
fn a_missing_key_fails_at_open() {
    check_missing_key::<Cohere>(test_config("command", json!({}), None), "cohere");
}
