//! # llamacpp_api
//!
//! clemhost's `llamacpp` backend: GGUF models run by llama.cpp itself
//! (through the `llama-cpp-2` crate, built from its vendored sources), with
//! the behaviour of clemcore's `llamacpp` backend around the model call.
//!
//! The principal pieces:
//! - [`LlamaCpp`]: the [`Backend`] the plugin exports. `create` reads the
//!   registry entry ([`settings::Settings`]), finds the file
//!   ([`source::resolve_gguf`]: local path or the HF cache / Hub), loads it
//!   into an [`engine::Engine`] and prepares the chat template
//!   ([`chat::PromptBuilder`]) and the answer cleaning (`OutputCleaner` of
//!   `clemhost-local-common`).
//! - [`engine::Engine`]: one model, one llama.cpp context, one worker
//!   thread. Requests that wait together run as parallel sequences of one
//!   batch, so many episodes share one model efficiently.
//!
//! One `generate` call: preprocess the messages (merge same-role runs) →
//! render the template with a generation prompt → tokenise with llama.cpp's
//! tokenizer (no added BOS/EOS, special tokens in the text parsed) → check
//! prompt + `max_tokens` against the context (`context_exceeded`) → generate
//! (greedy at temperature 0, seeded sampling otherwise, stop at any
//! end-of-generation token) → strip, `output_split_prefix`, `eos_to_cull`.
//! The recorded prompt is `{inputs, max_new_tokens, temperature,
//! return_full_text}` and the response `{response: <completion>}`, as
//! clemcore records them (no `clem_player`, as in clemcore's llamacpp).

#![deny(missing_docs)]

pub mod chat;
pub mod engine;
mod llama_log;
pub mod settings;
pub mod source;

use clemhost_local_common::clean::{CleanSettings, OutputCleaner};
use clemhost_local_common::template_choice::{choose_template, TemplateOrigin, TemplateRules};
use clemhost_local_common::{context, messages};
use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{
    log, Backend, BackendError, BackendInfo, Capabilities, Ctx, ErrorKind, GenArgs,
    GenerateRequest, Generation, ModelConfig, Timings, Usage,
};
use engine::{Engine, EngineConfig, EngineError, Job, Sampling};
use llama_cpp_2::token::LlamaToken;
use settings::Settings;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A GGUF model served by llama.cpp.
pub struct LlamaCpp {
    settings: Settings,
    gen_args: GenArgs,
    path: PathBuf,
    engine: Engine,
    prompt: chat::PromptBuilder,
    cleaner: OutputCleaner,
}

fn engine_error(model: &str, e: EngineError) -> BackendError {
    match e {
        EngineError::Cancelled => BackendError::new(ErrorKind::Cancelled, "cancelled by the host"),
        EngineError::TooLarge { needed, cells } => BackendError::new(
            ErrorKind::ContextExceeded,
            format!("model '{model}': {needed} tokens (prompt + max_tokens) do not fit the context of {cells} tokens"),
        ),
        EngineError::Load { .. } => BackendError::invalid_request(format!("model '{model}': {e}")),
        other => BackendError::internal(format!("model '{model}': {other}")),
    }
}

/// The text of a special token named by a GGUF metadata key (`…_token_id`).
fn special_token_text(model: &llama_cpp_2::model::LlamaModel, key: &str) -> Option<String> {
    let id: i32 = model.meta_val_str(key).ok()?.trim().parse().ok()?;
    if id < 0 || id >= model.n_vocab() {
        return None;
    }
    let vocab = model.vocab();
    let text = vocab.text(LlamaToken(id))?;
    Some(text.to_string_lossy().into_owned())
}

/// Bytes to text the way llama-cpp-python does (`errors="ignore"`).
fn utf8_ignoring_errors(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
    }
    out
}

fn completion_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("cmpl-{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl LlamaCpp {
    /// The GGUF file this model was loaded from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The context size one request may fill (prompt + `max_tokens`).
    pub fn context_size(&self) -> u32 {
        self.engine.n_ctx()
    }

    /// Tokenises text as `generate` does (no BOS/EOS added, special tokens parsed).
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.engine
            .model()
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    fn detokenize(&self, tokens: &[LlamaToken]) -> String {
        let vocab = self.engine.model().vocab();
        let mut bytes = Vec::new();
        for &t in tokens {
            bytes.extend_from_slice(&vocab.token_to_piece(t, false, None));
        }
        utf8_ignoring_errors(&bytes)
    }
}

impl Backend for LlamaCpp {
    fn info() -> BackendInfo {
        BackendInfo {
            backends: vec!["llamacpp".into()],
            description: "GGUF models on llama.cpp (local files or the HuggingFace Hub)".into(),
            capabilities: Capabilities {
                concurrent_generate: true,
                max_concurrency: engine::MAX_PARALLEL,
                batching: true,
                remote: false,
                key_name: Some("huggingface".into()),
                requires_key: false,
                key_env: vec!["HF_TOKEN".into()],
                key_required_flag: Some("requires_api_key".into()),
                // clemcore's llamacpp backend records its response without
                // `clem_player`.
                raw_response_as_is: true,
                ..Capabilities::default()
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let settings = Settings::from_config(&config)?;
        let model = settings.model_name.clone();
        let token = if settings.requires_api_key {
            match config.credential("api_key") {
                Some(t) => Some(t.to_string()),
                None => {
                    return Err(BackendError::new(
                        ErrorKind::Auth,
                        format!(
                            "model '{model}': model_config.requires_api_key is true but key.json has no \
                             huggingface.api_key; add it or set requires_api_key to false"
                        ),
                    ))
                }
            }
        } else {
            std::env::var("HF_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
        };
        let path = source::resolve_gguf(
            &model,
            &settings.huggingface_id,
            settings.filename.as_deref(),
            &clemhost_local_common::hub::HubSettings::from_process_env(token),
        )?;
        let threads = settings.threads.unwrap_or_else(settings::physical_cores);
        let started = Instant::now();
        let engine = Engine::load(
            &path,
            &EngineConfig {
                threads,
                n_ctx: settings.n_ctx,
                parallel: settings.parallel,
                kv_cache_mib: settings.kv_cache_mib,
                n_batch: settings.n_batch,
                gpu_layers: settings.gpu_layers,
                flash_attention: settings.flash_attention,
                concurrency: config.concurrency,
            },
        )
        .map_err(|e| engine_error(&model, e))?;
        log::info!(
            "{model}: loaded {} in {:.2} s ({threads} threads, context {} tokens, {} parallel sequences \
             of {} KV cells to start with)",
            path.display(),
            started.elapsed().as_secs_f64(),
            engine.n_ctx(),
            engine.parallel(),
            engine.stream_cells(),
        );
        let llama = engine.model();
        let chosen = choose_template(
            TemplateRules::Llamacpp,
            settings.premade_chat_template,
            settings.custom_chat_template.as_deref(),
            || {
                Ok::<_, std::convert::Infallible>(
                    llama.meta_val_str("tokenizer.chat_template").ok(),
                )
            },
        )
        .map_err(|e| {
            BackendError::invalid_request(format!("model '{model}' ({}): {e}", path.display()))
        })?;
        let source_name = match chosen.origin {
            TemplateOrigin::Model => "the GGUF metadata (tokenizer.chat_template)",
            TemplateOrigin::Custom => "model_config.custom_chat_template",
        };
        let template_source = chosen.source;
        let bos = special_token_text(llama, "tokenizer.ggml.bos_token_id")
            .or_else(|| settings.bos_string.clone());
        let eos = special_token_text(llama, "tokenizer.ggml.eos_token_id")
            .or_else(|| settings.eos_string.clone());
        let prompt = chat::PromptBuilder::new(&model, &template_source, source_name, bos, eos)?;
        let special: Vec<String> = {
            let vocab = llama.vocab();
            (0..llama.n_vocab())
                .map(LlamaToken)
                .filter(|&t| vocab.is_control(t))
                .filter_map(|t| vocab.text(t).map(|c| c.to_string_lossy().into_owned()))
                .collect()
        };
        let special: Vec<&str> = special.iter().map(String::as_str).collect();
        let clean_settings = CleanSettings::from_model_config(config.model_config(), None)
            .map_err(|e| BackendError::invalid_request(format!("model '{model}': {e}")))?;
        let cleaner = OutputCleaner::new(&clean_settings, &special)
            .map_err(|e| BackendError::invalid_request(format!("model '{model}': {e}")))?;
        Ok(LlamaCpp {
            settings,
            gen_args: config.gen_args,
            path,
            engine,
            prompt,
            cleaner,
        })
    }

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {
        let started = Instant::now();
        let model = &self.settings.model_name;
        let gen = request.gen_args.as_ref().unwrap_or(&self.gen_args);
        let max_tokens = gen.max_tokens;
        let temperature = gen.temperature;
        let messages = messages::ensure_alternating_roles(&request.messages)?;
        let prompt = self.prompt.render(model, &messages)?;
        let tokens = self
            .engine
            .model()
            .vocab()
            .tokenize(prompt.as_bytes(), false, true);
        context::check_context(
            model,
            None,
            tokens.len(),
            u64::from(max_tokens),
            u64::from(self.engine.n_ctx()),
        )?;
        ctx.check()?;
        let sampling = if temperature > 0.0 {
            let top_p = gen
                .extra
                .get("top_p")
                .and_then(Value::as_f64)
                .unwrap_or(0.95);
            Sampling::Random {
                temperature: temperature as f32,
                top_p: top_p as f32,
                seed: self.settings.seed,
            }
        } else {
            Sampling::Greedy
        };
        let ignore_eos = gen
            .extra
            .get("ignore_eos")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let n_prompt = tokens.len();
        let ticket = self
            .engine
            .submit(Job {
                prompt: tokens,
                max_new_tokens: max_tokens,
                sampling,
                ignore_eos,
            })
            .map_err(|e| engine_error(model, e))?;
        let done = loop {
            if let Err(e) = ctx.check() {
                ticket.cancel();
                return Err(e);
            }
            let wait = ctx.remaining().map_or(Duration::from_millis(20), |r| {
                r.min(Duration::from_millis(20))
            });
            if let Some(result) = ticket.wait(wait) {
                break result.map_err(|e| engine_error(model, e))?;
            }
        };
        let raw = self.detokenize(&done.tokens);
        let text = self
            .cleaner
            .clean_llamacpp(&raw)
            .map_err(|e| BackendError::new(e.kind, format!("model '{model}': {}", e.message)))?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let completion_tokens = done.tokens.len() as u64;
        Ok(Generation {
            prompt: json!({
                "inputs": prompt,
                "max_new_tokens": max_tokens,
                "temperature": temperature,
                "return_full_text": false,
            }),
            response: json!({
                "response": {
                    "id": completion_id(),
                    "object": "text_completion",
                    "created": created,
                    "model": self.path.display().to_string(),
                    "choices": [{
                        "text": raw,
                        "index": 0,
                        "logprobs": null,
                        "finish_reason": done.finish.as_str(),
                    }],
                    "usage": {
                        "prompt_tokens": n_prompt,
                        "completion_tokens": completion_tokens,
                        "total_tokens": n_prompt as u64 + completion_tokens,
                    },
                }
            }),
            text,
            usage: Some(Usage {
                prompt_tokens: n_prompt as u64,
                completion_tokens,
            }),
            timings: Some(Timings {
                queue_ms: Some(ms(done.queued)),
                prefill_ms: Some(ms(done.prefill)),
                decode_ms: Some(ms(done.decode)),
                total_ms: Some(ms(started.elapsed())),
            }),
        })
    }
}

clemhost_plugin_sdk::export_backend!(LlamaCpp);
