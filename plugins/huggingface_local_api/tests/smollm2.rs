//! The real model: SmolLM2-135M-Instruct converted to f32 by
//! scripts/gguf-to-hf. Skipped (with a message) when the directory is absent.

mod common;

use clemhost_plugin_sdk::{Backend, Ctx, GenArgs, GenerateRequest, Message, ModelConfig};
use huggingface_local_api::HuggingfaceLocal;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fixtures")
}

fn open(dir: &Path, threads: u64) -> HuggingfaceLocal {
    let spec = json!({
        "model_name": "smollm2-135m-instruct",
        "backend": "huggingface_local",
        "huggingface_id": dir.to_string_lossy(),
        "model_config": {"premade_chat_template": true, "eos_to_cull": "<\\|im_end\\|>",
                          "padding_side": "left", "threads": threads, "batch_wait_ms": 200}
    });
    let Value::Object(spec) = spec else {
        unreachable!("entry is an object")
    };
    HuggingfaceLocal::create(ModelConfig {
        spec,
        ..ModelConfig::default()
    })
    .expect("SmolLM2 loads")
}

fn case_messages(case: &Value) -> Vec<Message> {
    if let Some(file) = case.get("messages_from").and_then(Value::as_str) {
        let text = std::fs::read_to_string(fixtures().join(file)).expect("case text file");
        return vec![Message::new("user", text)];
    }
    serde_json::from_value(case["messages"].clone()).expect("case messages")
}

#[test]
fn first_32_greedy_tokens_equal_transformers() {
    let Some(dir) = common::smollm2_dir() else {
        return;
    };
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("candle-greedy.json"))
            .expect("scripts/fixtures/candle-greedy.json (made by scripts/reference-candle)"),
    )
    .expect("reference fixture is JSON");
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("candle-cases.json")).unwrap(),
    )
    .expect("cases are JSON");
    let model = open(&dir, 2);
    let engine = model.engine();
    for (case, want) in cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["cases"].as_array().unwrap())
    {
        let id = want["id"].as_str().unwrap();
        assert_eq!(case["id"], want["id"]);
        let prompt = engine.render(&case_messages(case)).unwrap();
        assert_eq!(
            prompt,
            want["prompt"].as_str().unwrap(),
            "{id}: rendered prompt"
        );
        let prompt_ids = engine.tokenizer().encode(&prompt).unwrap();
        let want_prompt: Vec<u32> = serde_json::from_value(want["prompt_ids"].clone()).unwrap();
        assert_eq!(prompt_ids, want_prompt, "{id}: prompt ids");
        let want_ids: Vec<u32> = serde_json::from_value(want["ids"].clone()).unwrap();
        let (got, _, _) = engine.greedy_fixed(&prompt_ids, want_ids.len()).unwrap();
        assert_eq!(
            got, want_ids,
            "{id}: greedy ids (transformers: {:?})",
            want["text"]
        );
    }
}

fn conversations() -> Vec<Vec<Message>> {
    let names = ["Peter", "Ding", "Ana", "Kofi"];
    names
        .iter()
        .map(|n| {
            vec![Message::new(
                "user",
                format!(
                    "Your task is to greet and happily welcome the other person with the name:\n\n{n}\n\n\
                     Rules:\n\n1. You must start your message with 'GREET:'\n2. Your message must include \
                     'Hello', 'welcome' and the other person's name\n\nImportant: You only have one try.\n\nLet's start."
                ),
            )]
        })
        .collect()
}

fn request(messages: Vec<Message>) -> GenerateRequest {
    GenerateRequest {
        messages,
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens: 48,
            ..GenArgs::default()
        }),
        ..GenerateRequest::default()
    }
}

#[test]
fn concurrent_requests_run_as_one_batch_and_answer_as_alone() {
    let Some(dir) = common::smollm2_dir() else {
        return;
    };
    let model = Arc::new(open(&dir, 2));
    let alone: Vec<String> = conversations()
        .into_iter()
        .map(|c| model.generate(request(c), &Ctx::detached()).unwrap().text)
        .collect();
    let handles: Vec<_> = conversations()
        .into_iter()
        .map(|c| {
            let model = Arc::clone(&model);
            std::thread::spawn(move || model.generate(request(c), &Ctx::detached()).unwrap())
        })
        .collect();
    let batched: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("generate thread"))
        .collect();
    // All four waited in one queue and ran together: their prefill timings are the batch's.
    let prefill: Vec<f64> = batched
        .iter()
        .map(|g| g.timings.as_ref().unwrap().prefill_ms.unwrap())
        .collect();
    assert!(
        prefill.iter().all(|p| *p == prefill[0]),
        "one batch expected, prefill times {prefill:?}"
    );
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        assert_eq!(
            a, &b.text,
            "conversation {i}: batched answer differs from the one alone"
        );
    }
}
