//! Greedy outputs equal llama-cpp-python's on the same GGUF and prompts
//! (fixtures from `scripts/reference-llamacpp`).

use crate::env;
use clemhost_plugin_sdk::serde_json::{self, Value};
use clemhost_plugin_sdk::{GenArgs, GenerateRequest, Message};
use llama_cpp_2::token::LlamaToken;
use llamacpp_api::engine::{Engine, EngineConfig, Job, Sampling};
use std::sync::atomic::AtomicU8;
use std::time::Duration;

pub fn ids(v: &Value) -> Vec<i32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|x| x.as_i64().expect("an integer id") as i32)
        .collect()
}

pub fn engine(gguf: &std::path::Path, parallel: u32) -> Engine {
    Engine::load(
        gguf,
        &EngineConfig {
            threads: 2,
            n_ctx: Some(2048),
            parallel: Some(parallel),
            kv_cache_mib: 0,
            n_batch: 512,
            gpu_layers: None,
            flash_attention: false,
            concurrency: None,
        },
    )
    .expect("the GGUF loads")
}

pub fn run(engine: &Engine, prompt: &[i32], max_new: u32) -> Vec<i32> {
    let ticket = engine
        .submit(Job {
            prompt: prompt.iter().map(|&t| LlamaToken(t)).collect(),
            max_new_tokens: max_new,
            sampling: Sampling::Greedy,
            ignore_eos: false,
        })
        .expect("submitted");
    loop {
        if let Some(r) = ticket.wait(Duration::from_millis(50)) {
            return r
                .expect("generation succeeds")
                .tokens
                .iter()
                .map(|t| t.0)
                .collect();
        }
    }
}

#[test]
fn prompt_and_greedy_ids_equal_llama_cpp_python() {
    let Some(gguf) = env::smollm2() else { return };
    let Some(reference) = env::reference() else {
        return;
    };
    let engine = engine(&gguf, 1);
    let max_new = reference["max_new_tokens"]
        .as_u64()
        .expect("max_new_tokens") as u32;
    for case in reference["cases"].as_array().expect("cases") {
        let id = case["id"].as_str().expect("case id");
        let prompt = case["prompt"].as_str().expect("prompt");
        let ours: Vec<i32> = engine
            .model()
            .vocab()
            .tokenize(prompt.as_bytes(), false, true)
            .iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(
            ours,
            ids(&case["prompt_ids"]),
            "{id}: prompt token ids differ"
        );
        let out = run(&engine, &ours, max_new);
        assert_eq!(
            out,
            ids(&case["output_ids"]),
            "{id}: greedy output ids differ"
        );
    }
}

#[test]
fn generation_through_the_abi_matches_the_reference_completion() {
    let Some(gguf) = env::smollm2() else { return };
    let Some(reference) = env::reference() else {
        return;
    };
    let model = env::open(&gguf, serde_json::json!({"parallel": 1}));
    let max_new = reference["max_new_tokens"]
        .as_u64()
        .expect("max_new_tokens") as u32;
    for case in reference["cases"].as_array().expect("cases") {
        let id = case["id"].as_str().expect("case id");
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone())
            .expect("fixture messages are messages");
        let request = GenerateRequest {
            messages,
            gen_args: Some(GenArgs {
                temperature: 0.0,
                max_tokens: max_new,
                ..GenArgs::default()
            }),
            ..GenerateRequest::default()
        };
        let g = model
            .generate(&request, &AtomicU8::new(0))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            g.prompt["inputs"], case["prompt"],
            "{id}: rendered prompt differs from jinja2's"
        );
        assert_eq!(g.prompt["max_new_tokens"], max_new, "{id}");
        assert_eq!(g.prompt["temperature"], 0.0, "{id}");
        let completion = &g.response["response"]["choices"][0];
        assert_eq!(
            completion["text"], case["completion_text"],
            "{id}: completion text differs"
        );
        assert_eq!(
            completion["finish_reason"], case["completion_finish_reason"],
            "{id}"
        );
        let usage = g.usage.expect("usage is reported");
        assert_eq!(
            usage.prompt_tokens as usize,
            ids(&case["prompt_ids"]).len(),
            "{id}"
        );
        assert_eq!(
            usage.completion_tokens as usize,
            ids(&case["output_ids"]).len(),
            "{id}"
        );
        let expected_text = case["completion_text"]
            .as_str()
            .expect("completion text")
            .trim()
            .replace("<|im_end|>", "");
        assert_eq!(g.text, expected_text, "{id}: cleaned answer");
    }
}
