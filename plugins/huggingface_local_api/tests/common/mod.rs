//! Tiny random models that the tests write themselves: a config.json per
//! family, random weights in safetensors (f32, bf16 or f16), a character
//! tokenizer and a chat template.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const HIDDEN: usize = 32;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 8;
pub const INTER: usize = 48;
pub const LAYERS: usize = 2;

/// The tokenizer's special tokens; ids 0..=3.
pub const SPECIALS: [&str; 4] = ["<unk>", "<s>", "</s>", "<|assistant|>"];
pub const EOS_ID: u32 = 2;

/// Every family the plugin supports, by `model_type`.
pub const FAMILIES: [&str; 8] = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
];

/// Characters of the tiny vocabulary (after the special tokens).
fn chars() -> Vec<char> {
    let mut v: Vec<char> = (' '..='~').collect();
    v.push('\n');
    v
}

pub fn vocab_size() -> usize {
    SPECIALS.len() + chars().len()
}

/// Deterministic pseudo-random numbers in [-scale, scale).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.next() * scale).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).expect("test tensor shape matches its data")
    }
    fn norm(&mut self, n: usize, offset: bool) -> Tensor {
        // gemma stores norms as w - 1.
        let base = if offset { 0.0 } else { 1.0 };
        let data: Vec<f32> = (0..n).map(|_| base + self.next() * 0.1).collect();
        Tensor::from_vec(data, n, &Device::Cpu).expect("norm shape")
    }
}

/// The config.json of a tiny model of `family`.
pub fn config(family: &str) -> Value {
    let mut c = json!({
        "model_type": family,
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "vocab_size": vocab_size(),
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 256,
        "eos_token_id": EOS_ID,
        "bos_token_id": 1,
        "tie_word_embeddings": false,
    });
    let m = c.as_object_mut().expect("config is an object");
    match family {
        "mistral" => {
            m.insert("sliding_window".into(), json!(6));
        }
        "gemma" => {
            m.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            m.insert("tie_word_embeddings".into(), json!(true));
        }
        "gemma2" => {
            m.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            m.insert("tie_word_embeddings".into(), json!(true));
            m.insert("attn_logit_softcapping".into(), json!(50.0));
            m.insert("final_logit_softcapping".into(), json!(30.0));
            m.insert("query_pre_attn_scalar".into(), json!(8));
            m.insert("sliding_window".into(), json!(6));
        }
        "gemma3_text" => {
            m.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            m.insert("tie_word_embeddings".into(), json!(true));
            m.insert("query_pre_attn_scalar".into(), json!(8));
            m.insert("sliding_window".into(), json!(6));
            m.insert("sliding_window_pattern".into(), json!(2));
            m.insert("rope_local_base_freq".into(), json!(10000.0));
            m.insert("rope_theta".into(), json!(1000000.0));
        }
        "phi3" => {
            m.insert("sliding_window".into(), json!(64));
        }
        _ => {}
    }
    c
}

/// Random weights for `family` with the names transformers uses.
pub fn weights(family: &str, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Lcg(seed);
    let mut w = HashMap::new();
    let gemma = family.starts_with("gemma");
    let q_out = HEADS * HEAD_DIM;
    let kv_out = KV_HEADS * HEAD_DIM;
    w.insert(
        "model.embed_tokens.weight".into(),
        rng.tensor(&[vocab_size(), HIDDEN], 0.5),
    );
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        if family == "phi3" {
            w.insert(
                format!("{p}.self_attn.qkv_proj.weight"),
                rng.tensor(&[q_out + 2 * kv_out, HIDDEN], 0.3),
            );
            w.insert(
                format!("{p}.mlp.gate_up_proj.weight"),
                rng.tensor(&[2 * INTER, HIDDEN], 0.3),
            );
        } else {
            w.insert(
                format!("{p}.self_attn.q_proj.weight"),
                rng.tensor(&[q_out, HIDDEN], 0.3),
            );
            w.insert(
                format!("{p}.self_attn.k_proj.weight"),
                rng.tensor(&[kv_out, HIDDEN], 0.3),
            );
            w.insert(
                format!("{p}.self_attn.v_proj.weight"),
                rng.tensor(&[kv_out, HIDDEN], 0.3),
            );
            w.insert(
                format!("{p}.mlp.gate_proj.weight"),
                rng.tensor(&[INTER, HIDDEN], 0.3),
            );
            w.insert(
                format!("{p}.mlp.up_proj.weight"),
                rng.tensor(&[INTER, HIDDEN], 0.3),
            );
        }
        if family == "qwen2" {
            w.insert(
                format!("{p}.self_attn.q_proj.bias"),
                rng.tensor(&[q_out], 0.1),
            );
            w.insert(
                format!("{p}.self_attn.k_proj.bias"),
                rng.tensor(&[kv_out], 0.1),
            );
            w.insert(
                format!("{p}.self_attn.v_proj.bias"),
                rng.tensor(&[kv_out], 0.1),
            );
        }
        if family == "qwen3" || family == "gemma3_text" {
            w.insert(
                format!("{p}.self_attn.q_norm.weight"),
                rng.norm(HEAD_DIM, gemma),
            );
            w.insert(
                format!("{p}.self_attn.k_norm.weight"),
                rng.norm(HEAD_DIM, gemma),
            );
        }
        w.insert(
            format!("{p}.self_attn.o_proj.weight"),
            rng.tensor(&[HIDDEN, q_out], 0.3),
        );
        w.insert(
            format!("{p}.mlp.down_proj.weight"),
            rng.tensor(&[HIDDEN, INTER], 0.3),
        );
        w.insert(
            format!("{p}.input_layernorm.weight"),
            rng.norm(HIDDEN, gemma),
        );
        w.insert(
            format!("{p}.post_attention_layernorm.weight"),
            rng.norm(HIDDEN, gemma),
        );
        if family == "gemma2" || family == "gemma3_text" {
            w.insert(
                format!("{p}.pre_feedforward_layernorm.weight"),
                rng.norm(HIDDEN, gemma),
            );
            w.insert(
                format!("{p}.post_feedforward_layernorm.weight"),
                rng.norm(HIDDEN, gemma),
            );
        }
    }
    w.insert("model.norm.weight".into(), rng.norm(HIDDEN, gemma));
    if !gemma {
        w.insert(
            "lm_head.weight".into(),
            rng.tensor(&[vocab_size(), HIDDEN], 0.5),
        );
    }
    w
}

/// A character-level tokenizer.json: every printable ASCII character and
/// `\n` is a token; the special tokens are added tokens.
pub fn tokenizer_json() -> Value {
    let mut vocab = serde_json::Map::new();
    for (i, s) in SPECIALS.iter().enumerate() {
        vocab.insert((*s).into(), json!(i));
    }
    for (i, c) in chars().into_iter().enumerate() {
        vocab.insert(c.to_string(), json!(SPECIALS.len() + i));
    }
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[\\s\\S]"}, "behavior": "Isolated", "invert": false},
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}

pub const TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

/// Writes a complete tiny model of `family` into `dir` with weights in `dtype`.
pub fn write_model(dir: &Path, family: &str, dtype: DType) -> PathBuf {
    write_model_with(dir, family, dtype, config(family))
}

/// Like [`write_model`] with a given config.json.
pub fn write_model_with(dir: &Path, family: &str, dtype: DType, config: Value) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create model dir");
    let write = |name: &str, v: &Value| {
        std::fs::write(
            dir.join(name),
            serde_json::to_string_pretty(v).expect("json"),
        )
        .expect("write json")
    };
    write("config.json", &config);
    write("tokenizer.json", &tokenizer_json());
    write(
        "tokenizer_config.json",
        &json!({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": TEMPLATE,
                "model_max_length": 256}),
    );
    write(
        "generation_config.json",
        &json!({"eos_token_id": EOS_ID, "bos_token_id": 1, "top_p": 0.9}),
    );
    let tensors: HashMap<String, Tensor> = weights(family, 7)
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(dtype).expect("dtype conversion")))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))
        .expect("write safetensors");
    dir.to_path_buf()
}

/// A registry entry for a model directory.
pub fn entry(dir: &Path, extra_model_config: Value) -> serde_json::Map<String, Value> {
    let mut mc = json!({"premade_chat_template": true, "eos_to_cull": "</s>", "threads": 1, "batch_wait_ms": 50});
    if let (Some(m), Value::Object(extra)) = (mc.as_object_mut(), extra_model_config) {
        m.extend(extra);
    }
    let v = json!({
        "model_name": "tiny",
        "backend": "huggingface_local",
        "huggingface_id": dir.to_string_lossy(),
        "model_config": mc,
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("entry is an object"),
    }
}

/// The converted SmolLM2 directory, or `None` (with a message) when absent.
pub fn smollm2_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CLEMHOST_SMOLLM2_HF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            let cache = std::env::var_os("CLEMHOST_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".cache").join("clemhost"));
            cache.join("models").join("smollm2-135m-instruct-hf")
        });
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no converted SmolLM2 at {} (run scripts/gguf-to-hf, or set CLEMHOST_SMOLLM2_HF)",
            dir.display()
        );
        None
    }
}
