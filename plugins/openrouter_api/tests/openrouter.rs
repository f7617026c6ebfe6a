//! The `openrouter` plugin against a fake OpenRouter server on 127.0.0.1.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{
    Backend, Ctx, ErrorKind, GenArgs, GenerateRequest, Message, ModelConfig,
};
use clemhost_remote_common::test_support::{
    check_abi, check_faults, check_missing_key, check_wire, test_config, FakeServer, Reply,
    WireCase,
};
use openrouter_api::OpenRouter;

const SECRET: &str = "sk-or-v1-secretive-key";

fn config_with(base: &str, model_config: Option<Value>) -> ModelConfig {
    test_config(
        "meta-llama/llama-3.3-70b-instruct",
        json!({ "api_key": SECRET, "base_url": format!("{base}/api/v1") }),
        model_config,
    )
}

fn config(base: &str) -> ModelConfig {
    config_with(base, None)
}

/// A completion shaped like OpenRouter's answer.
fn completion(content: Value) -> Value {
    json!({
        "id": "gen-1764405917-abc",
        "provider": "DeepInfra",
        "model": "meta-llama/llama-3.3-70b-instruct",
        "object": "chat.completion",
        "created": 1764405917,
        "choices": [{
            "logprobs": null,
            "finish_reason": "stop",
            "native_finish_reason": "stop",
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null, "reasoning": null }
        }],
        "usage": { "prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38 }
    })
}

fn case() -> WireCase {
    WireCase {
        request: GenerateRequest {
            messages: vec![Message::new("user", "Greet Alex.")],
            gen_args: Some({
                let mut a = GenArgs {
                    temperature: 0.5,
                    max_tokens: 100,
                    ..GenArgs::default()
                };
                // Not passed: OpenRouter gets only temperature and max_tokens.
                a.extra.insert("top_p".into(), json!(0.9));
                a
            }),
            ..GenerateRequest::default()
        },
        path: "/chat/completions".into(),
        headers: vec![("authorization", format!("Bearer {SECRET}"))],
        body: json!({
            "model": "meta-llama/llama-3.3-70b-instruct",
            "messages": [{ "role": "user", "content": "Greet Alex." }],
            "temperature": 0.5,
            "max_tokens": 100,
            "provider": { "quantizations": ["fp8"] }
        }),
        answer: completion(json!("GREET: Hello Alex, welcome! ")),
        text: "GREET: Hello Alex, welcome!".into(),
        usage: Some((30, 8)),
    }
}

#[test]
fn sends_the_default_provider_preferences() {
    check_wire::<OpenRouter>(&config, "/api/v1", &case(), SECRET);
}

#[test]
fn works_through_the_plugin_abi() {
    check_abi(
        "openrouter_api",
        "openrouter",
        &config,
        "/api/v1",
        &case(),
        SECRET,
    );
}

#[test]
fn faults_become_typed_errors_without_the_key() {
    let no_choices = json!({ "id": "gen-x", "object": "chat.completion", "created": 1, "model": "m", "choices": [] });
    check_faults::<OpenRouter>(&config, no_choices, SECRET);
}

#[test]
fn a_missing_key_fails_at_open() {
    check_missing_key::<OpenRouter>(test_config("m", json!({}), None), "openrouter");
}

#[test]
fn an_entry_extra_body_replaces_the_default_and_null_content_fails() {
    let server = FakeServer::always(Reply::json(completion(Value::Null)));
    let model = OpenRouter::create(config_with(
        &server.base_url(),
        Some(json!({ "extra_body": { "provider": { "order": ["Groq"] } } })),
    ))
    .expect("opens");
    let err = model
        .generate(case().request, &Ctx::detached())
        .expect_err("null content fails");
    assert_eq!(err.kind, ErrorKind::InvalidResponse);
    assert_eq!(
        server.requests()[0].json()["provider"],
        json!({ "order": ["Groq"] })
    );
}
