//! The `openai` plugin against a fake OpenAI server on 127.0.0.1.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{
    Backend, Ctx, ErrorKind, GenArgs, GenerateRequest, Message, ModelConfig,
};
use clemhost_remote_common::test_support::{
    check_abi, check_faults, check_missing_key, check_wire, test_config, FakeServer, Reply,
    WireCase,
};
use openai_api::OpenAi;

const SECRET: &str = "sk-test-0penai-s3cret-value";

fn config_with(base: &str, model_config: Option<Value>) -> ModelConfig {
    test_config(
        "gpt-4o-mini",
        json!({ "api_key": SECRET, "organisation": "org-clemhost", "base_url": format!("{base}/v1") }),
        model_config,
    )
}

fn config(base: &str) -> ModelConfig {
    config_with(base, None)
}

/// A chat completion shaped like OpenAI's documented answer.
fn completion(content: Value) -> Value {
    json!({
        "id": "chatcmpl-7Qx1demo",
        "object": "chat.completion",
        "created": 1764405917,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null, "annotations": [] },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 21,
            "completion_tokens": 7,
            "total_tokens": 28,
            "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
            "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0,
                                           "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 }
        },
        "service_tier": "default",
        "system_fingerprint": "fp_demo01"
    })
}

fn case() -> WireCase {
    WireCase {
        request: GenerateRequest {
            request_id: "r1".into(),
            messages: vec![
                Message::new("system", ""),
                Message::new("user", "Greet Peter."),
                Message::new("user", "Start with GREET:"),
            ],
            gen_args: None,
            timeout_ms: Some(10_000),
        },
        path: "/chat/completions".into(),
        headers: vec![
            ("authorization", format!("Bearer {SECRET}")),
            ("openai-organization", "org-clemhost".into()),
        ],
        body: json!({
            "model": "gpt-4o-mini",
            "messages": [{ "role": "user", "content": "Greet Peter.\n\nStart with GREET:" }],
            "temperature": 0.0,
            "max_tokens": 300
        }),
        answer: completion(json!("  GREET: Hello Peter, welcome!\n")),
        text: "GREET: Hello Peter, welcome!".into(),
        usage: Some((21, 7)),
    }
}

#[test]
fn sends_chat_completions_and_records_the_exchange() {
    check_wire::<OpenAi>(&config, "/v1", &case(), SECRET);
}

#[test]
fn works_through_the_plugin_abi() {
    check_abi("openai_api", "openai", &config, "/v1", &case(), SECRET);
}

#[test]
fn faults_become_typed_errors_without_the_key() {
    let no_choices = json!({
        "id": "chatcmpl-empty", "object": "chat.completion", "created": 1764405917,
        "model": "gpt-4o-mini", "choices": []
    });
    check_faults::<OpenAi>(&config, no_choices, SECRET);
}

#[test]
fn a_missing_key_fails_at_open() {
    check_missing_key::<OpenAi>(
        test_config("gpt-4o-mini", json!({ "organisation": "org-x" }), None),
        "openai",
    );
    check_missing_key::<OpenAi>(test_config("gpt-4o-mini", Value::Null, None), "openai");
}

#[test]
fn extra_args_and_extra_body_are_merged_into_the_body() {
    let server = FakeServer::always(Reply::json(completion(json!("ok"))));
    let model = OpenAi::create(config_with(
        &server.base_url(),
        Some(json!({ "extra_body": { "top_k": 20, "chat_template_kwargs": { "enable_thinking": false } } })),
    ))
    .expect("opens");
    let mut args = GenArgs {
        temperature: 0.7,
        max_tokens: 50,
        ..GenArgs::default()
    };
    args.extra.insert("top_p".into(), json!(0.9));
    let mut request = case().request;
    request.gen_args = Some(args);
    model.generate(request, &Ctx::detached()).expect("succeeds");
    assert_eq!(
        server.requests()[0].json(),
        json!({
            "model": "gpt-4o-mini",
            "messages": [{ "role": "user", "content": "Greet Peter.\n\nStart with GREET:" }],
            "temperature": 0.7, "max_tokens": 50, "top_p": 0.9,
            "top_k": 20, "chat_template_kwargs": { "enable_thinking": false }
        })
    );
}

#[test]
fn reasoning_models_need_temperature_and_send_no_max_tokens() {
    let server = FakeServer::always(Reply::json(completion(json!("ok"))));
    let model = OpenAi::create(config_with(
        &server.base_url(),
        Some(json!({ "reasoning_model": true })),
    ))
    .expect("opens");
    let err = model
        .generate(case().request, &Ctx::detached())
        .expect_err("t=0 is refused");
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(err.message.contains("temperature"), "{err}");
    assert!(server.requests().is_empty(), "nothing is sent");

    let mut request = case().request;
    request.gen_args = Some(GenArgs {
        temperature: 1.0,
        ..GenArgs::default()
    });
    model
        .generate(request.clone(), &Ctx::detached())
        .expect("t=1 works");
    let body = server.requests()[0].json();
    assert!(body.get("max_tokens").is_none() && body.get("max_completion_tokens").is_none());

    let model = OpenAi::create(config_with(
        &server.base_url(),
        Some(json!({ "reasoning_model": true, "max_completion_tokens": true })),
    ))
    .expect("opens");
    model.generate(request, &Ctx::detached()).expect("works");
    assert_eq!(
        server.requests()[1].json()["max_completion_tokens"],
        json!(300)
    );
}

#[test]
fn images_need_multimodality_and_are_sent_as_parts() {
    let server = FakeServer::always(Reply::json(completion(json!("a cat"))));
    let mut message = Message::new("user", "What is in <image> this picture?");
    message
        .extra
        .insert("image".into(), json!(["https://example.org/cat.png"]));
    let request = GenerateRequest {
        messages: vec![message],
        ..GenerateRequest::default()
    };

    let text_only = OpenAi::create(config(&server.base_url())).expect("opens");
    let err = text_only
        .generate(request.clone(), &Ctx::detached())
        .expect_err("no images allowed");
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(err.message.contains("multimodality"), "{err}");

    let vision = OpenAi::create(config_with(
        &server.base_url(),
        Some(json!({ "multimodality": { "single_image": true } })),
    ))
    .expect("opens");
    let generation = vision.generate(request, &Ctx::detached()).expect("works");
    assert_eq!(generation.text, "a cat");
    assert_eq!(
        server.requests()[0].json()["messages"],
        json!([{ "role": "user", "content": [
            { "type": "text", "text": "What is in this picture?" },
            { "type": "image_url", "image_url": { "url": "https://example.org/cat.png" } }
        ]}])
    );
}
