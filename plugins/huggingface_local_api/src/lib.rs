//! # huggingface_local_api
//!
//! The `huggingface_local` backend of clemhost: chat models in the
//! HuggingFace layout (`config.json`, safetensors weights, `tokenizer.json`,
//! `tokenizer_config.json`), run locally on candle, generating as
//! clemcore's `huggingface_local` backend does with transformers.
//!
//! The principal types:
//! - [`HuggingfaceLocal`]: the [`Backend`] exported to clemhost.
//! - [`engine::Engine`]: one loaded model with its tokenizer and chat
//!   template; runs clemcore's steps (preprocessing, template, context
//!   check, the token loop, cleaning).
//! - [`decoder::Decoder`]: a generic decoder-only transformer with a
//!   key/value cache and left-padded batches, configured by a
//!   [`families::DecoderSpec`] that one adapter per model family reads
//!   from `config.json` (llama, mistral, qwen2, qwen3, gemma, gemma2,
//!   gemma3, phi3).
//! - [`linear::Linear`] and [`attention::attend`]: the f32 CPU kernels
//!   the decoder spends its time in.
//! - [`batcher::Batcher`]: runs concurrent requests on one model as one
//!   batch.
//! - [`source`]: local directories and Hub downloads (`hf-hub`).
//!
//! On the CPU every model computes in f32 (bf16 and f16 checkpoints are
//! converted when loaded); decoding uses this crate's own matrix-vector
//! kernel ([`linear`]), prompts candle's matrix multiply.
#![deny(missing_docs)]

pub mod attention;
pub mod batcher;
pub mod decoder;
pub mod elementwise;
pub mod engine;
pub mod error;
pub mod families;
pub mod linear;
pub mod sampling;
pub mod source;
mod timefmt;
pub mod tokenizer;

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Capabilities, Ctx, GenArgs, GenerateRequest, Generation,
    ModelConfig, Timings, Usage,
};
use std::time::{Duration, Instant};

/// Requests run together at most (`model_config.max_batch_size` changes it).
const DEFAULT_MAX_BATCH: usize = 16;
/// How long the first of several concurrent requests waits for the others
/// before a batch starts (`model_config.batch_wait_ms` changes it).
const DEFAULT_BATCH_WAIT_MS: u64 = 5;

/// The `huggingface_local` backend: one loaded model.
#[derive(Debug)]
pub struct HuggingfaceLocal {
    engine: engine::Engine,
    batcher: batcher::Batcher,
    gen_args: GenArgs,
}

impl HuggingfaceLocal {
    /// The loaded model.
    pub fn engine(&self) -> &engine::Engine {
        &self.engine
    }
}

fn model_config_u64(config: &ModelConfig, key: &str, default: u64) -> Result<u64, BackendError> {
    match config.model_config().get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().ok_or_else(|| {
            BackendError::invalid_request(format!(
                "model_config.{key} must be a non-negative integer"
            ))
        }),
    }
}

impl Backend for HuggingfaceLocal {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec!["huggingface_local".into()],
            description: "local safetensors chat models (HuggingFace layout) on candle, as clemcore's huggingface_local"
                .into(),
            capabilities: Capabilities {
                concurrent_generate: true,
                max_concurrency: DEFAULT_MAX_BATCH as u32,
                batching: true,
                remote: false,
                key_name: Some("huggingface".into()),
                requires_key: false,
                key_env: vec!["HF_TOKEN".into()],
                key_required_flag: Some("requires_api_key".into()),
                ..Capabilities::default()
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let max_batch =
            model_config_u64(&config, "max_batch_size", DEFAULT_MAX_BATCH as u64)? as usize;
        let wait = model_config_u64(&config, "batch_wait_ms", DEFAULT_BATCH_WAIT_MS)?;
        let engine = engine::Engine::open(&config)?;
        Ok(HuggingfaceLocal {
            engine,
            batcher: batcher::Batcher::new(max_batch, Duration::from_millis(wait)),
            gen_args: config.gen_args,
        })
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        let call_start = chrono::Local::now();
        let started = Instant::now();
        let gen = request.gen_args.unwrap_or_else(|| self.gen_args.clone());
        let prepared = self.engine.prepare(&request.messages, &gen)?;
        let (row, queue_ms) = self.batcher.submit(&self.engine, prepared.clone(), ctx)?;
        let done = self.engine.finish(&prepared, &row)?;
        let duration = started.elapsed();
        let prompt = json!({
            "inputs": done.prompt_text,
            "max_new_tokens": gen.max_tokens,
            "temperature": gen.temperature,
        });
        let mut response = json!({ "response": done.output_text });
        if let Some(cot) = &done.cot_content {
            response["cot_content"] = Value::String(cot.clone());
        }
        response["clem_player"] = json!({
            "call_start": timefmt::py_datetime(call_start),
            "call_duration": timefmt::py_timedelta(duration),
            "response": done.text,
            "model_name": self.engine.name(),
        });
        Ok(Generation {
            prompt,
            response,
            text: done.text,
            usage: Some(Usage {
                prompt_tokens: done.prompt_tokens as u64,
                completion_tokens: done.completion_tokens as u64,
            }),
            timings: Some(Timings {
                queue_ms: Some(queue_ms),
                prefill_ms: Some(row.prefill_ms),
                decode_ms: Some(row.decode_ms),
                total_ms: Some(duration.as_secs_f64() * 1e3),
            }),
        })
    }
}

clemhost_plugin_sdk::export_backend!(HuggingfaceLocal);
