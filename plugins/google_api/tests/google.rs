//! The `google` plugin against a fake Gemini API server on 127.0.0.1.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{Backend, Ctx, GenerateRequest, Message, ModelConfig};
use clemhost_remote_common::test_support::{
    check_abi, check_faults, check_image_downloads, check_missing_key, check_wire, test_config,
    FakeServer, Reply, WireCase,
};
use google_api::Google;

const SECRET: &str = "AIzaSyD-fake-google-key";

fn config_with(base: &str, model_config: Option<Value>) -> ModelConfig {
    test_config(
        "gemini-2.5-flash",
        json!({ "api_key": SECRET, "base_url": format!("{base}/v1beta") }),
        model_config,
    )
}

fn config(base: &str) -> ModelConfig {
    config_with(base, None)
}

/// An answer shaped like Gemini's `GenerateContentResponse`.
fn response(parts: Value) -> Value {
    json!({
        "candidates": [{
            "content": { "parts": parts, "role": "model" },
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": { "promptTokenCount": 33, "candidatesTokenCount": 9, "totalTokenCount": 42,
                           "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": 33 }] },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "demo-response-id"
    })
}

fn safety() -> Value {
    json!([
        { "category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_MEDIUM_AND_ABOVE" },
        { "category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_MEDIUM_AND_ABOVE" },
        { "category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "threshold": "BLOCK_MEDIUM_AND_ABOVE" },
        { "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_MEDIUM_AND_ABOVE" }
    ])
}

fn case() -> WireCase {
    WireCase {
        request: GenerateRequest {
            messages: vec![
                Message::new("system", "Be brief."),
                Message::new("user", "Greet Magnus."),
                Message::new("assistant", "GREET: Hi"),
                Message::new("user", "Add welcome."),
            ],
            ..GenerateRequest::default()
        },
        path: "/models/gemini-2.5-flash:generateContent".into(),
        headers: vec![("x-goog-api-key", SECRET.to_string())],
        body: json!({
            "contents": [
                { "role": "user", "parts": [{ "text": "Greet Magnus." }] },
                { "role": "model", "parts": [{ "text": "GREET: Hi" }] },
                { "role": "user", "parts": [{ "text": "Add welcome." }] }
            ],
            "systemInstruction": { "parts": [{ "text": "Be brief." }] },
            "generationConfig": { "temperature": 0.0, "maxOutputTokens": 300 },
            "safetySettings": safety()
        }),
        answer: response(json!([{ "text": "GREET: Hello Magnus, welcome!\n" }])),
        text: "GREET: Hello Magnus, welcome!".into(),
        usage: Some((33, 9)),
    }
}

#[test]
fn sends_generate_content_with_system_instruction_and_safety() {
    check_wire::<Google>(&config, "/v1beta", &case(), SECRET);
}

#[test]
fn works_through_the_plugin_abi() {
    check_abi("google_api", "google", &config, "/v1beta", &case(), SECRET);
}

#[test]
fn faults_become_typed_errors_without_the_key() {
    let blocked = json!({ "promptFeedback": { "blockReason": "SAFETY" }, "candidates": [] });
    check_faults::<Google>(&config, blocked, SECRET);
}

#[test]
fn a_missing_key_fails_at_open() {
    check_missing_key::<Google>(
        test_config("gemini", json!({ "base_url": "http://127.0.0.1:1" }), None),
        "google",
    );
}

#[test]
fn thinking_mode_adds_a_budget_and_skips_thoughts() {
    let parts = json!([
        { "text": "Thinking about greetings.", "thought": true },
        { "text": "GREET: Hello Susanne, welcome!" }
    ]);
    let server = FakeServer::always(Reply::json(response(parts)));
    let model = Google::create(config_with(
        &server.base_url(),
        Some(json!({ "thinking_mode": true })),
    ))
    .expect("opens");
    let request = GenerateRequest {
        messages: vec![Message::new("user", "Greet Susanne.")],
        ..GenerateRequest::default()
    };
    let generation = model.generate(request, &Ctx::detached()).expect("works");
    assert_eq!(generation.text, "GREET: Hello Susanne, welcome!");
    assert_eq!(
        server.requests()[0].json()["generationConfig"],
        json!({ "temperature": 0.0, "maxOutputTokens": 4396, "thinkingConfig": { "thinkingBudget": 4096 } })
    );
}

#[test]
fn image_urls_are_downloaded_without_the_key() {
    check_image_downloads::<Google>(
        &config_with,
        response(json!([{ "text": "a dot" }])),
        "x-goog-api-key",
        SECRET,
    );
}
