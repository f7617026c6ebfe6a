//! The `anthropic` plugin against a fake Messages API server on 127.0.0.1.

use anthropic_api::Anthropic;
use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{Backend, Ctx, GenerateRequest, Message, ModelConfig};
use clemhost_remote_common::test_support::{
    check_abi, check_faults, check_image_downloads, check_missing_key, check_wire, test_config,
    FakeServer, Reply, WireCase,
};

const SECRET: &str = "sk-ant-api03-do-not-print";

fn config_with(base: &str, model_config: Option<Value>) -> ModelConfig {
    test_config(
        "claude-sonnet-4-5",
        json!({ "api_key": SECRET, "base_url": format!("{base}/v1") }),
        model_config,
    )
}

fn config(base: &str) -> ModelConfig {
    config_with(base, None)
}

/// A message shaped like Anthropic's answer.
fn message(content: Value) -> Value {
    json!({
        "id": "msg_01DemoXyz",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": { "input_tokens": 25, "output_tokens": 11, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 0, "service_tier": "standard" }
    })
}

fn case() -> WireCase {
    WireCase {
        request: GenerateRequest {
            messages: vec![
                Message::new("system", "First rule."),
                Message::new("system", "Be kind."),
                Message::new("user", "Greet Sheya."),
            ],
            ..GenerateRequest::default()
        },
        path: "/messages".into(),
        headers: vec![
            ("x-api-key", SECRET.to_string()),
            ("anthropic-version", "2023-06-01".to_string()),
        ],
        body: json!({
            "model": "claude-sonnet-4-5",
            // The two leading system messages were merged by the preprocessing.
            "messages": [{ "role": "user", "content": [{ "type": "text", "text": "Greet Sheya." }] }],
            "system": "First rule.\n\nBe kind.",
            "temperature": 0.0,
            "max_tokens": 300
        }),
        // Not stripped, as clemcore leaves it.
        answer: message(json!([{ "type": "text", "text": "GREET: Hello Sheya, welcome! " }])),
        text: "GREET: Hello Sheya, welcome! ".into(),
        usage: Some((25, 11)),
    }
}

#[test]
fn sends_messages_with_the_system_prompt_apart() {
    check_wire::<Anthropic>(&config, "/v1", &case(), SECRET);
}

#[test]
fn works_through_the_plugin_abi() {
    check_abi(
        "anthropic_api",
        "anthropic",
        &config,
        "/v1",
        &case(),
        SECRET,
    );
}

#[test]
fn faults_become_typed_errors_without_the_key() {
    check_faults::<Anthropic>(&config, message(json!([])), SECRET);
}

#[test]
fn a_missing_key_fails_at_open() {
    check_missing_key::<Anthropic>(test_config("claude", json!({}), None), "anthropic");
}

#[test]
fn thinking_mode_sets_a_budget_and_reads_the_text_block() {
    let blocks = json!([
        { "type": "thinking", "thinking": "A greeting is needed.", "signature": "EqQBCgIYAh" },
        { "type": "text", "text": "GREET: Hello Ding, welcome!" }
    ]);
    let server = FakeServer::always(Reply::json(message(blocks)));
    let model = Anthropic::create(config_with(
        &server.base_url(),
        Some(json!({ "thinking_mode": true })),
    ))
    .expect("opens");
    let request = GenerateRequest {
        messages: vec![Message::new("user", "Greet Ding.")],
        ..GenerateRequest::default()
    };
    let generation = model.generate(request, &Ctx::detached()).expect("works");
    assert_eq!(generation.text, "GREET: Hello Ding, welcome!");
    let body = server.requests()[0].json();
    assert_eq!(body["temperature"], json!(1.0));
    assert_eq!(body["max_tokens"], json!(4300));
    assert_eq!(
        body["thinking"],
        json!({ "type": "enabled", "budget_tokens": 4000 })
    );
    assert!(
        body.get("system").is_none(),
        "no system prompt, no `system`"
    );
}

#[test]
fn images_are_sent_inline() {
    let server = FakeServer::always(Reply::json(message(
        json!([{ "type": "text", "text": "a dot" }]),
    )));
    let model = Anthropic::create(config_with(
        &server.base_url(),
        Some(json!({ "multimodality": { "single_image": true } })),
    ))
    .expect("opens");
    let mut m = Message::new("user", "What is this?");
    m.extra
        .insert("image".into(), json!("data:image/png;base64,iVBORw0KGgo="));
    let request = GenerateRequest {
        messages: vec![m],
        ..GenerateRequest::default()
    };
    model.generate(request, &Ctx::detached()).expect("works");
    assert_eq!(
        server.requests()[0].json()["messages"][0]["content"][1],
        json!({ "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } })
    );
}

#[test]
fn image_urls_are_downloaded_without_the_key() {
    check_image_downloads::<Anthropic>(
        &config_with,
        message(json!([{ "type": "text", "text": "a dot" }])),
        "x-api-key",
        SECRET,
    );
}
