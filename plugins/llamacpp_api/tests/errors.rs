//! Errors a user can run into: the context is too small, the host cancels,
//! the deadline passes. The model keeps working afterwards.

use crate::env;
use clemhost_plugin_sdk::abi::CANCEL_REQUESTED;
use clemhost_plugin_sdk::serde_json::json;
use clemhost_plugin_sdk::{ErrorKind, GenArgs, GenerateRequest, Message};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

fn long_request(max_tokens: u32, timeout_ms: Option<u64>) -> GenerateRequest {
    let mut extra = clemhost_plugin_sdk::serde_json::Map::new();
    // Never stop early, so only the cancel flag or the deadline ends the call.
    extra.insert("ignore_eos".into(), json!(true));
    GenerateRequest {
        messages: vec![Message::new(
            "user",
            "Count from one to one thousand in words.",
        )],
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens,
            extra,
        }),
        timeout_ms,
        ..GenerateRequest::default()
    }
}

#[test]
fn prompt_plus_max_tokens_over_the_context_is_context_exceeded() {
    let Some(gguf) = env::smollm2() else { return };
    let model = env::open(&gguf, json!({"n_ctx": 64}));
    let request = GenerateRequest {
        messages: vec![Message::new("user", "word ".repeat(40))],
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens: 30,
            ..GenArgs::default()
        }),
        ..GenerateRequest::default()
    };
    let err = model
        .generate(&request, &AtomicU8::new(0))
        .expect_err("40 words + 30 new tokens do not fit 64");
    assert_eq!(err.kind, ErrorKind::ContextExceeded, "{err}");
    assert!(err.message.contains("smollm2-test"), "{}", err.message);
    let details = err.details.expect("token counts are attached");
    assert_eq!(details["context_size"], 64);
    let used = details["tokens_used"].as_i64().expect("tokens_used");
    assert!(used > 64, "tokens_used {used} is over the context");
    assert_eq!(details["tokens_left"].as_i64(), Some(64 - used));
    // A request that fits still works on the same model.
    let small = GenerateRequest {
        messages: vec![Message::new("user", "Hi")],
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens: 8,
            ..GenArgs::default()
        }),
        ..GenerateRequest::default()
    };
    model
        .generate(&small, &AtomicU8::new(0))
        .expect("a small request fits");
}

#[test]
fn cancel_flag_stops_a_long_generation() {
    let Some(gguf) = env::smollm2() else { return };
    let model = env::open(&gguf, json!({}));
    let cancel = AtomicU8::new(0);
    let started = Instant::now();
    let err = std::thread::scope(|s| {
        let call = s.spawn(|| model.generate(&long_request(4000, None), &cancel));
        std::thread::sleep(Duration::from_millis(300));
        cancel.store(CANCEL_REQUESTED, Ordering::Relaxed);
        call.join().expect("no panic")
    })
    .expect_err("the call was cancelled before 4000 tokens");
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    eprintln!("cancelled after {:?}", started.elapsed());
    let again = model
        .generate(&long_request(4, None), &AtomicU8::new(0))
        .expect("the model still answers after a cancel");
    assert_eq!(again.usage.expect("usage").completion_tokens, 4);
}

#[test]
fn deadline_stops_a_long_generation() {
    let Some(gguf) = env::smollm2() else { return };
    let model = env::open(&gguf, json!({}));
    let err = model
        .generate(&long_request(4000, Some(300)), &AtomicU8::new(0))
        .expect_err("4000 tokens take longer than 300 ms");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    let again = model
        .generate(&long_request(4, None), &AtomicU8::new(0))
        .expect("the model still answers after a timeout");
    assert_eq!(again.usage.expect("usage").completion_tokens, 4);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gguf = dir.path().join("absent.gguf");
    let err = env::plugin()
        .create_model(&env::config(&gguf, json!({})))
        .err()
        .expect("no such file");
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");
    assert!(err.message.contains("absent.gguf"), "{}", err.message);
}
