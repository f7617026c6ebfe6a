//! Requests that wait together run as parallel sequences of one batch, and
//! give the same greedy tokens as when run one by one.

use crate::env;
use crate::reference::{engine, ids, run};
use clemhost_plugin_sdk::serde_json::json;
use clemhost_plugin_sdk::{GenArgs, GenerateRequest, Message};
use llama_cpp_2::token::LlamaToken;
use llamacpp_api::engine::{Job, Sampling};
use std::sync::atomic::AtomicU8;
use std::time::Duration;

#[test]
fn batched_outputs_equal_sequential_outputs() {
    let Some(gguf) = env::smollm2() else { return };
    let Some(reference) = env::reference() else {
        return;
    };
    let prompts: Vec<Vec<i32>> = reference["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| ids(&c["prompt_ids"]))
        .collect();
    let max_new = 64;
    let engine = engine(&gguf, 8);
    let sequential: Vec<Vec<i32>> = prompts.iter().map(|p| run(&engine, p, max_new)).collect();
    assert_eq!(
        engine.peak_parallel(),
        1,
        "one-by-one runs never share a batch"
    );
    let tickets: Vec<_> = prompts
        .iter()
        .map(|p| {
            engine
                .submit(Job {
                    prompt: p.iter().map(|&t| LlamaToken(t)).collect(),
                    max_new_tokens: max_new,
                    sampling: Sampling::Greedy,
                    ignore_eos: false,
                })
                .expect("submitted")
        })
        .collect();
    let batched: Vec<Vec<i32>> = tickets
        .iter()
        .map(|t| loop {
            if let Some(r) = t.wait(Duration::from_millis(50)) {
                break r
                    .expect("generation succeeds")
                    .tokens
                    .iter()
                    .map(|t| t.0)
                    .collect();
            }
        })
        .collect();
    assert!(
        engine.peak_parallel() > 1,
        "requests submitted together were decoded in one batch"
    );
    for (i, (s, b)) in sequential.iter().zip(&batched).enumerate() {
        assert_eq!(
            s, b,
            "case {i}: batched output differs from the sequential one"
        );
    }
}

#[test]
fn concurrent_abi_calls_share_the_model_and_agree_with_single_calls() {
    let Some(gguf) = env::smollm2() else { return };
    // Answers must not depend on which calls arrive together.
    let model = env::open(&gguf, json!({}));
    let names = [
        "Peter", "Max", "Marienne", "Alex", "Susanne", "David", "Sheya", "Lara", "Magnus", "Ding",
    ];
    let request = |name: &str| GenerateRequest {
        messages: vec![Message::new(
            "user",
            format!(
                "Say hello to a guest called {name}. Begin with 'GREET:' and use the words \
                 'hello' and 'welcome' and the guest's name. Answer once."
            ),
        )],
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens: 48,
            ..GenArgs::default()
        }),
        ..GenerateRequest::default()
    };
    let alone: Vec<String> = names
        .iter()
        .map(|n| {
            model
                .generate(&request(n), &AtomicU8::new(0))
                .expect("single call")
                .text
        })
        .collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let model = model.clone();
                let req = request(n);
                s.spawn(move || {
                    model
                        .generate(&req, &AtomicU8::new(0))
                        .expect("concurrent call")
                        .text
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    assert_eq!(alone, together);
    assert!(
        alone.iter().any(|t| !t.is_empty()),
        "the model answered something"
    );
}
