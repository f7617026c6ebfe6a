//! Every supported architecture family on tiny random models that the tests
//! write themselves: loading, generation, the key/value cache, padding,
//! sliding windows, dtypes, and the Hub cache layout.

mod common;

use candle_core::{DType, Device, Tensor};
use clemhost_plugin_sdk::{Backend, Ctx, GenArgs, GenerateRequest, Message, ModelConfig};
use huggingface_local_api::decoder::Decoder;
use huggingface_local_api::families::spec_from_config;
use huggingface_local_api::source::{self, HubSettings};
use huggingface_local_api::HuggingfaceLocal;
use serde_json::json;
use std::path::Path;

fn decoder(dir: &Path) -> Decoder {
    let spec = spec_from_config(&dir.join("config.json")).expect("tiny config parses");
    let files =
        source::resolve(&dir.to_string_lossy(), &HubSettings::default()).expect("local files");
    Decoder::load(spec, &files.weights, dir, &Device::Cpu).expect("tiny model loads")
}

fn ids(text: &str) -> Vec<u32> {
    // The tiny tokenizer maps printable ASCII to 4 + (c - ' ').
    text.bytes().map(|b| 4 + (b - b' ') as u32).collect()
}

fn row(tokens: &[u32]) -> Vec<Option<u32>> {
    tokens.iter().copied().map(Some).collect()
}

fn to_vec(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2().expect("logits are [rows, vocab]")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn request(text: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: vec![Message::new("user", text)],
        gen_args: Some(GenArgs {
            temperature: 0.0,
            max_tokens,
            ..GenArgs::default()
        }),
        ..GenerateRequest::default()
    }
}

fn open(
    dir: &Path,
    extra: serde_json::Value,
) -> Result<HuggingfaceLocal, clemhost_plugin_sdk::BackendError> {
    HuggingfaceLocal::create(ModelConfig {
        spec: common::entry(dir, extra),
        ..ModelConfig::default()
    })
}

#[test]
fn every_family_loads_and_generates_the_same_answer_twice() {
    for family in common::FAMILIES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = common::write_model(tmp.path(), family, DType::F32);
        let model = open(&dir, json!({})).unwrap_or_else(|e| panic!("{family}: {e}"));
        let a = model
            .generate(request("Hello there", 6), &Ctx::detached())
            .unwrap();
        let b = model
            .generate(request("Hello there", 6), &Ctx::detached())
            .unwrap();
        assert_eq!(a.text, b.text, "{family}");
        let usage = a.usage.clone().unwrap();
        assert!(
            usage.completion_tokens >= 1 && usage.completion_tokens <= 6,
            "{family}: {usage:?}"
        );
        // <s>, the 17 characters of "user: Hello there", </s>, "\n", <|assistant|>.
        assert_eq!(usage.prompt_tokens, 21);
        assert_eq!(
            a.prompt["inputs"], "<s>user: Hello there</s>\n<|assistant|>",
            "{family}"
        );
    }
}

#[test]
fn cached_decoding_matches_recomputing_the_whole_sequence() {
    for family in common::FAMILIES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = common::write_model(tmp.path(), family, DType::F32);
        let model = decoder(&dir);
        let seq = ids("The quick brown fox");
        let mut cache = model.new_cache(1, seq.len()).unwrap();
        let mut step = to_vec(&model.forward(&[row(&seq[..8])], &mut cache).unwrap());
        for n in 8..seq.len() {
            let mut fresh = model.new_cache(1, n).unwrap();
            let full = to_vec(&model.forward(&[row(&seq[..n])], &mut fresh).unwrap());
            let d = max_diff(&step[0], &full[0]);
            assert!(
                d < 1e-4,
                "{family}: prefix {n}: cached and recomputed logits differ by {d}"
            );
            step = to_vec(&model.forward(&[vec![Some(seq[n])]], &mut cache).unwrap());
        }
    }
}

#[test]
fn a_left_padded_batch_gives_each_row_its_own_logits() {
    for family in common::FAMILIES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = common::write_model(tmp.path(), family, DType::F32);
        let model = decoder(&dir);
        let long = ids("A longer first row here");
        let short = ids("Short one");
        let mut alone_long = model.new_cache(1, 40).unwrap();
        let mut alone_short = model.new_cache(1, 40).unwrap();
        let mut want = vec![
            to_vec(&model.forward(&[row(&long)], &mut alone_long).unwrap()).remove(0),
            to_vec(&model.forward(&[row(&short)], &mut alone_short).unwrap()).remove(0),
        ];
        let mut padded_short = vec![None; long.len() - short.len()];
        padded_short.extend(row(&short));
        let mut batch = model.new_cache(2, 40).unwrap();
        let mut got = to_vec(
            &model
                .forward(&[row(&long), padded_short], &mut batch)
                .unwrap(),
        );
        for step in 0..4u32 {
            for r in 0..2 {
                let d = max_diff(&got[r], &want[r]);
                assert!(
                    d < 1e-4,
                    "{family}: step {step} row {r}: batched and single logits differ by {d}"
                );
            }
            let next = [10 + step, 20 + step];
            want = vec![
                to_vec(
                    &model
                        .forward(&[vec![Some(next[0])]], &mut alone_long)
                        .unwrap(),
                )
                .remove(0),
                to_vec(
                    &model
                        .forward(&[vec![Some(next[1])]], &mut alone_short)
                        .unwrap(),
                )
                .remove(0),
            ];
            got = to_vec(
                &model
                    .forward(&[vec![Some(next[0])], vec![Some(next[1])]], &mut batch)
                    .unwrap(),
            );
        }
    }
}

#[test]
fn half_precision_checkpoints_load_as_their_f32_values() {
    for dtype in [DType::BF16, DType::F16] {
        let tmp = tempfile::tempdir().unwrap();
        let half = common::write_model(&tmp.path().join("half"), "llama", dtype);
        // The same weights, rounded to `dtype` and stored as f32.
        let full = tmp.path().join("full");
        std::fs::create_dir_all(&full).unwrap();
        for f in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            std::fs::copy(half.join(f), full.join(f)).unwrap();
        }
        let rounded: std::collections::HashMap<String, Tensor> = common::weights("llama", 7)
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap()))
            .collect();
        candle_core::safetensors::save(&rounded, full.join("model.safetensors")).unwrap();
        let seq = ids("Same numbers");
        let a = decoder(&half);
        let b = decoder(&full);
        let la = to_vec(
            &a.forward(&[row(&seq)], &mut a.new_cache(1, 20).unwrap())
                .unwrap(),
        );
        let lb = to_vec(
            &b.forward(&[row(&seq)], &mut b.new_cache(1, 20).unwrap())
                .unwrap(),
        );
        assert_eq!(la, lb, "{dtype:?}");
    }
}

#[test]
fn the_sliding_window_limits_what_a_layer_sees() {
    let seq = ids("twelve chars and more");
    let logits = |window: Option<usize>| {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = common::config("mistral");
        cfg["sliding_window"] = json!(window);
        let dir = common::write_model_with(tmp.path(), "mistral", DType::F32, cfg);
        let model = decoder(&dir);
        let mut cache = model.new_cache(1, seq.len() + 1).unwrap();
        let mut out = to_vec(&model.forward(&[row(&seq)], &mut cache).unwrap()).remove(0);
        out.extend(to_vec(&model.forward(&[vec![Some(9)]], &mut cache).unwrap()).remove(0));
        out
    };
    let unlimited = logits(None);
    assert_eq!(
        logits(Some(64)),
        unlimited,
        "a window longer than the text changes nothing"
    );
    assert!(
        max_diff(&logits(Some(4)), &unlimited) > 1e-3,
        "a short window must change the logits"
    );
}

#[test]
fn rope_theta_inside_rope_parameters_equals_the_top_level_field() {
    let seq = ids("rotary check");
    let run = |cfg: serde_json::Value| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = common::write_model_with(tmp.path(), "llama", DType::F32, cfg);
        let model = decoder(&dir);
        to_vec(
            &model
                .forward(&[row(&seq)], &mut model.new_cache(1, 20).unwrap())
                .unwrap(),
        )
    };
    let mut top = common::config("llama");
    top["rope_theta"] = json!(500.0);
    let mut nested = common::config("llama");
    nested.as_object_mut().unwrap().remove("rope_theta");
    nested["rope_parameters"] = json!({"rope_theta": 500.0, "rope_type": "default"});
    let mut other = common::config("llama");
    other["rope_theta"] = json!(10000.0);
    assert_eq!(run(top.clone()), run(nested));
    assert_ne!(run(top), run(other), "theta must matter");
}

#[test]
fn an_unsupported_model_type_lists_the_supported_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = common::config("llama");
    cfg["model_type"] = json!("gpt_neox");
    let dir = common::write_model_with(tmp.path(), "llama", DType::F32, cfg);
    let err = open(&dir, json!({})).unwrap_err();
    assert!(err.message.contains("gpt_neox"), "{}", err.message);
    for family in [
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
    ] {
        assert!(err.message.contains(family), "{}", err.message);
    }
}

#[test]
fn a_model_in_the_hub_cache_layout_loads_offline_and_online() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let repo = hub.join("models--tiny-org--tiny-llama");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    common::write_model(&repo.join("snapshots").join(rev), "llama", DType::F32);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), rev).unwrap();
    for offline in [true, false] {
        let settings = HubSettings {
            cache_dir: hub.clone(),
            offline,
            // An address nothing answers on: the cached files must suffice.
            endpoint: Some("http://127.0.0.1:9".into()),
            ..HubSettings::default()
        };
        let files = source::resolve("tiny-org/tiny-llama", &settings).unwrap();
        assert_eq!(files.dir, repo.join("snapshots").join(rev));
        assert_eq!(files.weights, vec![files.dir.join("model.safetensors")]);
        let model = decoder(&files.dir);
        assert_eq!(model.spec().family, "llama");
    }
}

#[test]
fn generation_stops_at_any_eos_id_and_the_eos_is_culled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::write_model(tmp.path(), "llama", DType::F32);
    let model = open(&dir, json!({})).unwrap();
    let prepared = model
        .engine()
        .prepare(
            &[Message::new("user", "Stop early")],
            &GenArgs {
                max_tokens: 8,
                ..GenArgs::default()
            },
        )
        .unwrap();
    let (first, _, _) = model
        .engine()
        .greedy_fixed(&prepared.prompt_ids, 1)
        .unwrap();
    let first_text = model.engine().tokenizer().decode(&first).unwrap();
    // Make the model's first greedy token an EOS id (next to the real one).
    std::fs::write(
        dir.join("generation_config.json"),
        json!({"eos_token_id": [common::EOS_ID, first[0]]}).to_string(),
    )
    .unwrap();
    let cut = open(&dir, json!({"eos_to_cull": regex_escape(&first_text)})).unwrap();
    let g = cut
        .generate(request("Stop early", 8), &Ctx::detached())
        .unwrap();
    assert_eq!(g.usage.unwrap().completion_tokens, 1);
    assert_eq!(g.text, "");
    let full = g.response["response"].as_str().unwrap();
    assert_eq!(
        full,
        format!("{}{first_text}", g.prompt["inputs"].as_str().unwrap())
    );
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ' ' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn too_long_prompts_are_a_context_error_with_clemcores_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::write_model(tmp.path(), "llama", DType::F32);
    let model = open(&dir, json!({})).unwrap();
    // max_position_embeddings is 256 in the tiny config.
    let err = model
        .generate(request(&"x".repeat(200), 100), &Ctx::detached())
        .unwrap_err();
    assert_eq!(err.kind, clemhost_plugin_sdk::ErrorKind::ContextExceeded);
    // 200 characters + "user: " + <s>, </s>, "\n", <|assistant|> + max_tokens.
    let used = 200 + 6 + 4 + 100;
    assert_eq!(
        err.message,
        format!("Context token limit for tiny exceeded at batch index 0 {used}/256")
    );
}

#[test]
fn records_have_clemcores_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::write_model(tmp.path(), "qwen2", DType::F32);
    let model = open(&dir, json!({})).unwrap();
    let g = model
        .generate(request("Records", 4), &Ctx::detached())
        .unwrap();
    let keys: Vec<&String> = g.prompt.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["inputs", "max_new_tokens", "temperature"]);
    assert_eq!(g.prompt["max_new_tokens"], 4);
    assert_eq!(g.prompt["temperature"], 0.0);
    let player = &g.response["clem_player"];
    assert_eq!(player["response"], g.text.as_str());
    assert_eq!(player["model_name"], "tiny");
    let start = player["call_start"].as_str().unwrap();
    assert_eq!(start.len(), "2026-11-29 08:25:17.810570".len(), "{start}");
    assert_eq!(&start[4..5], "-");
    assert_eq!(&start[10..11], " ");
    let duration = player["call_duration"].as_str().unwrap();
    assert!(duration.starts_with("0:00:"), "{duration}");
}

#[test]
fn sampling_is_seeded_and_differs_from_greedy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::write_model(tmp.path(), "llama", DType::F32);
    let model = open(&dir, json!({})).unwrap();
    let sample = |seed: u64| {
        let mut r = request("Sample", 12);
        let gen = r.gen_args.as_mut().unwrap();
        gen.temperature = 1.5;
        gen.extra.insert("seed".into(), json!(seed));
        model.generate(r, &Ctx::detached()).unwrap().response["response"].clone()
    };
    assert_eq!(sample(1), sample(1));
    let draws: std::collections::HashSet<String> = (0..6).map(|s| sample(s).to_string()).collect();
    assert!(
        draws.len() > 1,
        "different seeds should give different samples"
    );
}

#[test]
fn missing_required_settings_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::write_model(tmp.path(), "llama", DType::F32);
    let mut spec = common::entry(&dir, json!({}));
    spec["model_config"]
        .as_object_mut()
        .unwrap()
        .remove("premade_chat_template");
    let err = HuggingfaceLocal::create(ModelConfig {
        spec,
        ..ModelConfig::default()
    })
    .unwrap_err();
    assert!(
        err.message.contains("premade_chat_template"),
        "{}",
        err.message
    );
    let err = open(&dir, json!({"padding_side": "middle"})).unwrap_err();
    assert!(err.message.contains("padding_side"), "{}", err.message);
}
