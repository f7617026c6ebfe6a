//! The `mistral` plugin against a fake Mistral server on 127.0.0.1.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{Backend, Ctx, GenerateRequest, Message, ModelConfig};
use clemhost_remote_common::test_support::{
    check_abi, check_faults, check_missing_key, check_wire, test_config, FakeServer, Reply,
    WireCase,
};
use mistral_api::Mistral;

const SECRET: &str = "mistral-k3y-hidden";

fn config(base: &str) -> ModelConfig {
    test_config(
        "mistral-large-latest",
        json!({ "api_key": SECRET, "base_url": format!("{base}/v1") }),
        None,
    )
}

/// A completion shaped like Mistral's answer.
fn completion(content: Value) -> Value {
    json!({
        "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "chat.completion",
        "model": "mistral-large-latest",
        "created": 1764405917,
        "usage": { "prompt_tokens": 16, "completion_tokens": 10, "total_tokens": 26 },
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "tool_calls": null, "prefix": false },
            "finish_reason": "stop"
        }]
    })
}

fn case() -> WireCase {
    WireCase {
        request: GenerateRequest {
            messages: vec![Message::new("user", "Greet Lara.")],
            ..GenerateRequest::default()
        },
        path: "/chat/completions".into(),
        headers: vec![("authorization", format!("Bearer {SECRET}"))],
        body: json!({
            "model": "mistral-large-latest",
            "messages": [{ "role": "user", "content": "Greet Lara." }],
            "temperature": 0.0,
            "max_tokens": 300
        }),
        answer: completion(json!("\nGREET: Hello Lara, welcome!")),
        text: "GREET: Hello Lara, welcome!".into(),
        usage: Some((16, 10)),
    }
}

#[test]
fn sends_chat_completions() {
    check_wire::<Mistral>(&config, "/v1", &case(), SECRET);
}

#[test]
fn works_through_the_plugin_abi() {
    check_abi("mistral_api", "mistral", &config, "/v1", &case(), SECRET);
}

#[test]
fn faults_become_typed_errors_without_the_key() {
    let no_choices = json!({ "id": "cmpl-x", "object": "chat.completion", "model": "m", "created": 1, "choices": [] });
    check_faults::<Mistral>(&config, no_choices, SECRET);
}

#[test]
fn a_missing_key_fails_at_open() {
    check_missing_key::<Mistral>(
        test_config("m", json!({ "api_key": "  " }), None),
        "mistral",
    );
}

#[test]
fn reasoning_chunks_are_read_from_their_text_parts() {
    let chunks = json!([
        { "type": "thinking", "thinking": [{ "type": "text", "text": "The user wants a greeting." }] },
        { "type": "text", "text": "GREET: Hello Lara, welcome!" }
    ]);
    let server = FakeServer::always(Reply::json(completion(chunks)));
    let model = Mistral::create(config(&server.base_url())).expect("opens");
    let generation = model
        .generate(case().request, &Ctx::detached())
        .expect("works");
    assert_eq!(generation.text, "GREET: Hello Lara, welcome!");
}
