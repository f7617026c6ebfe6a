//! Requests that wait together run as parallel sequences of one batch, and
//! give the same greedy tokens as when run one by one.

use crate::env;
use crate::reference::{engine, ids, run};
use clemhost_plugin_sdk::serde_json::json;
use clemhost_plugin_sdk::{GenArgs, GenerateRequest, Message};
use llama_cpp_2::token::LlamaToken;
use llamacpp_api::engine::{Engine, INITIAL_STREAM_CELLS};
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
    // The cases share SmolLM2's default system prompt: the later ones copy
    // it from the first instead of computing it.
    assert!(
        engine.shared_prompt_tokens() > 0,
        "shared prompt prefixes were copied"
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

fn wait(ticket: &llamacpp_api::engine::Ticket) -> Vec<i32> {
    loop {
        if let Some(r) = ticket.wait(Duration::from_millis(20)) {
            break r
                .expect("generation succeeds")
                .tokens
                .iter()
                .map(|t| t.0)
                .collect();
        }
    }
}

fn job(prompt: &[i32], max_new: u32, ignore_eos: bool) -> Job {
    Job {
        prompt: prompt.iter().map(|&t| LlamaToken(t)).collect(),
        max_new_tokens: max_new,
        sampling: Sampling::Greedy,
        ignore_eos,
    }
}

#[test]
fn streams_grow_under_running_sequences_without_changing_answers() {
    let Some(gguf) = env::smollm2() else { return };
    let Some(reference) = env::reference() else {
        return;
    };
    let cases = reference["cases"].as_array().expect("cases");
    let first = ids(&cases[0]["prompt_ids"]);
    let second = ids(&cases[1]["prompt_ids"]);
    // The second request may fill more cells than a stream starts with.
    let long = INITIAL_STREAM_CELLS + 64 - second.len() as u32;
    let alone = |e: &Engine, p: &[i32], n: u32, ignore: bool| {
        wait(&e.submit(job(p, n, ignore)).expect("fits"))
    };
    let solo = engine(&gguf, 4);
    assert_eq!(solo.stream_cells(), INITIAL_STREAM_CELLS);
    let expected_first = alone(&solo, &first, 96, true);
    let expected_second = alone(&solo, &second, long, false);
    assert!(solo.stream_cells() > INITIAL_STREAM_CELLS);

    let together = engine(&gguf, 4);
    let running = together.submit(job(&first, 96, true)).expect("fits");
    // Once the first sequence decodes, the second one arrives and makes
    // the streams grow: the first one's cells move to the new context.
    while together.peak_parallel() == 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let grows = together.submit(job(&second, long, false)).expect("fits");
    assert_eq!(wait(&running), expected_first, "the sequence carried over");
    assert_eq!(
        wait(&grows),
        expected_second,
        "the sequence that grew the streams"
    );
    assert!(together.stream_cells() > INITIAL_STREAM_CELLS);
    assert!(
        together.shared_prompt_tokens() > 0,
        "the system prompt was copied"
    );
}
