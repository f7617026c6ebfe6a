//! One loaded model and clemcore's generation steps around it:
//! preprocessing, chat template, tokenisation, context check, the token
//! loop over a (possibly batched) key/value cache, decoding and cleaning.

use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::families;
use crate::sampling::Sampler;
use crate::source::{self, HubSettings, ModelFiles};
use crate::tokenizer::TextTokenizer;
use candle_core::Device;
use clemhost_local_common::clean::{CleanSettings, OutputCleaner};
use clemhost_local_common::hf_files::{GenerationConfig, HfConfig, TokenizerConfig};
use clemhost_local_common::template::{ChatTemplate, RenderInput};
use clemhost_local_common::template_choice::{choose_template, TemplateRules};
use clemhost_local_common::{context, messages};
use clemhost_plugin_sdk::{BackendError, GenArgs, Message, ModelConfig};
use serde_json::{Map, Value};
use std::time::Instant;

/// Prompts are run through the model in chunks of at most this many
/// columns, which bounds the attention scores' memory on long prompts.
const PREFILL_CHUNK: usize = 512;

/// The registry settings of one model (`model_config`), checked.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `premade_chat_template`.
    pub premade_chat_template: bool,
    /// `custom_chat_template`.
    pub custom_chat_template: Option<String>,
    /// `chat_template_kwargs` (plus `reasoning_effort` from `cot_effort`).
    pub chat_template_kwargs: Map<String, Value>,
    /// `chat_template_language`: a named template.
    pub chat_template_language: Option<String>,
    /// `cot_bypass`: appended as a final assistant message.
    pub cot_bypass: Option<String>,
    /// `threads`: the compute threads.
    pub threads: usize,
    /// `seed`: the default sampling seed.
    pub seed: u64,
}

fn field_err(field: &str, problem: impl Into<String>) -> Error {
    Error::field("model_config", field, problem)
}

impl Settings {
    /// Reads and checks `model_config`.
    pub fn from_model_config(mc: &Map<String, Value>) -> Result<Self> {
        let premade = match mc.get("premade_chat_template") {
            Some(Value::Bool(b)) => *b,
            None => {
                return Err(field_err(
                    "premade_chat_template",
                    "is required: true uses the model's own chat template, false uses custom_chat_template",
                ))
            }
            Some(_) => return Err(field_err("premade_chat_template", "must be true or false")),
        };
        if !mc.contains_key("eos_to_cull") {
            return Err(field_err(
                "eos_to_cull",
                "is required: a regular expression removed from every answer, e.g. \"<\\\\|im_end\\\\|>\"",
            ));
        }
        if let Some(side) = mc.get("padding_side") {
            match side.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("left") => {}
                Some("right") => log::warn!(
                    "model_config.padding_side is \"right\"; huggingface_local always pads batches on the left, \
                     which gives each conversation the same answer as running it alone"
                ),
                _ => {
                    return Err(field_err(
                        "padding_side",
                        format!("Invalid 'padding_side={side}': must be 'left' or 'right'"),
                    ))
                }
            }
        }
        if mc
            .get("multimodal")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(field_err(
                "multimodal",
                "multimodal models are not supported by huggingface_local",
            ));
        }
        if mc.get("peft_model").is_some_and(|v| !v.is_null()) {
            return Err(field_err(
                "peft_model",
                "adapters are not supported by huggingface_local",
            ));
        }
        for ignored in ["load_in_8bit", "load_in_4bit"] {
            if mc.get(ignored).and_then(Value::as_bool).unwrap_or(false) {
                log::warn!(
                    "model_config.{ignored} is ignored: huggingface_local runs unquantised weights"
                );
            }
        }
        let custom = match mc.get("custom_chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(field_err(
                    "custom_chat_template",
                    "must be a Jinja template string",
                ))
            }
        };
        let mut kwargs = match mc.get("chat_template_kwargs") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(field_err("chat_template_kwargs", "must be an object")),
        };
        if let Some(effort) = mc.get("cot_effort").filter(|v| !v.is_null()) {
            kwargs
                .entry("reasoning_effort")
                .or_insert_with(|| effort.clone());
        }
        let opt_str = |key: &str| -> Result<Option<String>> {
            match mc.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(field_err(key, "must be a string")),
            }
        };
        let threads = match mc.get("threads") {
            None | Some(Value::Null) => num_cpus::get_physical().max(1),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => n as usize,
                _ => return Err(field_err("threads", "must be a positive integer")),
            },
        };
        let seed = match mc.get("seed") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| field_err("seed", "must be a non-negative integer"))?,
        };
        Ok(Settings {
            premade_chat_template: premade,
            custom_chat_template: custom,
            chat_template_kwargs: kwargs,
            chat_template_language: opt_str("chat_template_language")?,
            cot_bypass: opt_str("cot_bypass")?,
            threads,
            seed,
        })
    }
}

/// A request ready to run: its prompt ids and generation limits.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The rendered prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// `max_tokens` of the request.
    pub max_tokens: usize,
    /// Tokens the loop may generate (`max_tokens`, or the rest of the context with `cot_output`).
    pub budget: usize,
    /// Sampling temperature (0 = greedy).
    pub temperature: f64,
    /// Sampling seed.
    pub seed: u64,
}

/// What the token loop produced for one row.
#[derive(Clone, Debug, Default)]
pub struct RowTokens {
    /// Padding before the prompt in the batch.
    pub left_pad: usize,
    /// Generated ids, the final EOS included.
    pub generated: Vec<u32>,
    /// Padding after `generated` up to the batch's longest output.
    pub right_pad: usize,
    /// Milliseconds of the prompt pass (shared by the batch).
    pub prefill_ms: f64,
    /// Milliseconds of the generation steps (shared by the batch).
    pub decode_ms: f64,
}

/// A loaded model with its tokenizer, template and cleaning rules.
pub struct Engine {
    name: String,
    decoder: Decoder,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    render_base: RenderInput,
    cot_bypass: Option<String>,
    cleaner: OutputCleaner,
    cot_output: bool,
    context_size: usize,
    eos_ids: Vec<u32>,
    pad_id: u32,
    top_k: usize,
    top_p: f64,
    seed: u64,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("name", &self.name).finish()
    }
}

fn config_err(e: impl std::fmt::Display) -> Error {
    Error::Config(e.to_string())
}

impl Engine {
    /// Opens the model of a registry entry.
    pub fn open(config: &ModelConfig) -> Result<Self> {
        let mc = config.model_config();
        let settings = Settings::from_model_config(mc)?;
        let id = config
            .spec
            .get("huggingface_id")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                Error::field(
                    "model registry entry",
                    "huggingface_id",
                    "is required: a Hub repo id (org/name) or a local model directory",
                )
            })?;
        let requires_key = mc
            .get("requires_api_key")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let token = if requires_key {
            Some(
                config
                    .credential("api_key")
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Error::field(
                            "key.json",
                            "huggingface.api_key",
                            "is required because model_config.requires_api_key is true",
                        )
                    })?,
            )
        } else {
            None
        };
        let hub = HubSettings::from_env(|k| std::env::var(k).ok(), token);
        let files = source::resolve(id, &hub)?;
        Self::from_files(
            config.model_name(),
            &files,
            &settings,
            mc,
            config.spec.get("context_size"),
        )
    }

    /// Opens a model from resolved files (used by `open`, tests and the bench).
    pub fn from_files(
        name: &str,
        files: &ModelFiles,
        settings: &Settings,
        model_config: &Map<String, Value>,
        entry_context_size: Option<&Value>,
    ) -> Result<Self> {
        let dir = &files.dir;
        let spec = families::spec_from_config(&dir.join("config.json"))?;
        let hf = HfConfig::load(dir).map_err(config_err)?;
        let tok_cfg = TokenizerConfig::load(dir).map_err(config_err)?;
        let gen_cfg = GenerationConfig::load(dir)
            .map_err(config_err)?
            .unwrap_or_default();
        let tokenizer = TextTokenizer::load(dir, &tok_cfg)?;

        if !settings.premade_chat_template && settings.custom_chat_template.is_none() {
            log::info!("{name}: premade_chat_template is false and no custom_chat_template given; using the tokenizer's template");
        }
        let chosen = choose_template(
            TemplateRules::Transformers,
            settings.premade_chat_template,
            settings.custom_chat_template.as_deref(),
            || {
                tok_cfg
                    .select_chat_template(settings.chat_template_language.as_deref())
                    .map(Some)
            },
        )
        .map_err(|e| Error::Template(e.to_string()))?;
        let template = ChatTemplate::new(&chosen.source).map_err(config_err)?;
        let mut render_base = RenderInput::new(Vec::new());
        render_base.add_generation_prompt = true;
        render_base.bos_token = tok_cfg.bos_token().map(str::to_string);
        render_base.eos_token = tok_cfg.eos_token().map(str::to_string);
        render_base.special_tokens = tok_cfg.template_variables();
        render_base.extra = settings.chat_template_kwargs.clone();

        // pad := eos when the tokenizer has none (clemcore).
        let pad_token = tok_cfg
            .pad_token()
            .or(tok_cfg.eos_token())
            .map(str::to_string);
        let pad_id = pad_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t))
            .or(gen_cfg.pad_token_id)
            .or(hf.pad_token_id)
            .unwrap_or(0);
        let mut eos_ids = if !gen_cfg.eos_token_ids.is_empty() {
            gen_cfg.eos_token_ids.clone()
        } else {
            spec.eos_token_ids.clone()
        };
        if eos_ids.is_empty() {
            eos_ids.extend(tok_cfg.eos_token().and_then(|t| tokenizer.token_to_id(t)));
        }
        if eos_ids.is_empty() {
            log::warn!("{name}: no EOS token id in generation_config.json, config.json or the tokenizer; answers always run to max_tokens");
        }
        let clean =
            CleanSettings::from_model_config(model_config, pad_token).map_err(config_err)?;
        let specials = tok_cfg.all_special_tokens();
        let special_refs: Vec<&str> = specials.iter().map(String::as_str).collect();
        let cleaner = OutputCleaner::new(&clean, &special_refs).map_err(config_err)?;

        let facts = hf.context_facts(Some(&tok_cfg), entry_context_size);
        let (context_size, _) = context::resolve_context_size(&facts);

        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.threads)
            .thread_name(|i| format!("hf-local-{i}"))
            .build()
            .map_err(|e| {
                Error::Request(format!(
                    "cannot start {} compute threads: {e}",
                    settings.threads
                ))
            })?;
        let device = Device::Cpu;
        let decoder = pool.install(|| Decoder::load(spec, &files.weights, dir, &device))?;
        if tokenizer.vocab_size() > decoder.spec().vocab_size {
            log::warn!(
                "{name}: the tokenizer has {} tokens but the model's embedding {} rows",
                tokenizer.vocab_size(),
                decoder.spec().vocab_size
            );
        }
        Ok(Engine {
            name: name.to_string(),
            decoder,
            tokenizer,
            template,
            render_base,
            cot_bypass: settings.cot_bypass.clone(),
            cleaner,
            cot_output: clean.cot_output,
            context_size: context_size as usize,
            eos_ids,
            pad_id,
            top_k: gen_cfg.top_k.map(|k| k as usize).unwrap_or(50),
            top_p: gen_cfg.top_p.unwrap_or(1.0),
            seed: settings.seed,
            pool,
        })
    }

    /// The model's name (from the registry entry).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The context size, resolved as clemcore does.
    pub fn context_size(&self) -> usize {
        self.context_size
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Renders the chat template for a conversation (after clemcore's
    /// preprocessing), with the generation prompt.
    pub fn render(&self, conversation: &[Message]) -> Result<String, BackendError> {
        let mut msgs = messages::ensure_alternating_roles(conversation)?;
        let mut input = self.render_base.clone();
        if let Some(bypass) = &self.cot_bypass {
            msgs.push(Message::new("assistant", bypass.clone()));
            input.add_generation_prompt = false;
            input.continue_final_message = true;
        }
        input.messages = clemhost_local_common::template::messages_to_values(&msgs);
        self.template.render(&input).map_err(|e| {
            BackendError::invalid_request(format!("chat template of {}: {e}", self.name))
        })
    }

    /// Steps 1–3: template, tokens, context check.
    pub fn prepare(
        &self,
        conversation: &[Message],
        gen: &GenArgs,
    ) -> Result<Prepared, BackendError> {
        let prompt = self.render(conversation)?;
        let prompt_ids = self.tokenizer.encode(&prompt)?;
        if prompt_ids.is_empty() {
            return Err(BackendError::invalid_request(
                "the rendered prompt has no tokens",
            ));
        }
        let max_tokens = gen.max_tokens as usize;
        context::check_context(
            &self.name,
            Some(0),
            prompt_ids.len(),
            max_tokens as u64,
            self.context_size as u64,
        )?;
        let budget = if self.cot_output {
            self.context_size.saturating_sub(prompt_ids.len()).max(1)
        } else {
            max_tokens
        };
        let seed = gen
            .extra
            .get("seed")
            .and_then(Value::as_u64)
            .unwrap_or(self.seed);
        Ok(Prepared {
            prompt_ids,
            max_tokens,
            budget,
            temperature: gen.temperature,
            seed,
        })
    }

    /// Runs the token loop for several prepared requests as one left-padded
    /// batch. `stop(i)` is polled between steps: a row for which it returns
    /// true is dropped (its result is then meaningless).
    pub fn run_batch(
        &self,
        rows: &[&Prepared],
        stop: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<Vec<RowTokens>> {
        self.pool.install(|| self.run_batch_inner(rows, stop))
    }

    fn run_batch_inner(
        &self,
        rows: &[&Prepared],
        stop: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<Vec<RowTokens>> {
        let n = rows.len();
        let longest = rows.iter().map(|r| r.prompt_ids.len()).max().unwrap_or(0);
        let max_budget = rows.iter().map(|r| r.budget).max().unwrap_or(0);
        let mut out: Vec<RowTokens> = rows
            .iter()
            .map(|r| RowTokens {
                left_pad: longest - r.prompt_ids.len(),
                ..RowTokens::default()
            })
            .collect();
        if n == 0 || max_budget == 0 {
            return Ok(out);
        }
        let mut samplers: Vec<Sampler> = rows
            .iter()
            .map(|r| Sampler::new(r.temperature, self.top_k, self.top_p, r.seed))
            .collect();
        let capacity = (longest + max_budget).min(longest + self.context_size);
        let mut cache = self.decoder.new_cache(n, capacity)?;

        let prefill_start = Instant::now();
        let padded: Vec<Vec<Option<u32>>> = rows
            .iter()
            .map(|r| {
                let mut row = vec![None; longest - r.prompt_ids.len()];
                row.extend(r.prompt_ids.iter().copied().map(Some));
                row
            })
            .collect();
        let mut logits = None;
        let mut start = 0;
        while start < longest {
            let end = (start + PREFILL_CHUNK).min(longest);
            let chunk: Vec<Vec<Option<u32>>> =
                padded.iter().map(|r| r[start..end].to_vec()).collect();
            logits = Some(self.decoder.forward(&chunk, &mut cache)?);
            start = end;
        }
        let mut logits = logits.ok_or_else(|| Error::Request("empty prompt".into()))?;
        let prefill_ms = prefill_start.elapsed().as_secs_f64() * 1e3;

        let decode_start = Instant::now();
        // `active[j]` is the original row of the cache's j-th row.
        let mut active: Vec<usize> = (0..n).collect();
        loop {
            let rows_logits: Vec<Vec<f32>> = logits.to_vec2()?;
            let mut next = Vec::with_capacity(active.len());
            let mut keep = Vec::with_capacity(active.len());
            for (j, &row) in active.iter().enumerate() {
                if stop(row) {
                    continue;
                }
                let tok = samplers[row].pick(&rows_logits[j]);
                out[row].generated.push(tok);
                let done = self.eos_ids.contains(&tok)
                    || out[row].generated.len() >= rows[row].budget
                    || cache.len() >= capacity;
                if !done {
                    keep.push(j);
                    next.push(Some(tok));
                }
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() != active.len() {
                cache.retain_rows(&keep)?;
                active = keep.iter().map(|&j| active[j]).collect();
            }
            let step: Vec<Vec<Option<u32>>> = next.into_iter().map(|t| vec![t]).collect();
            logits = self.decoder.forward(&step, &mut cache)?;
        }
        let decode_ms = decode_start.elapsed().as_secs_f64() * 1e3;
        let longest_out = out.iter().map(|r| r.generated.len()).max().unwrap_or(0);
        for r in &mut out {
            r.right_pad = longest_out - r.generated.len();
            r.prefill_ms = prefill_ms;
            r.decode_ms = decode_ms;
        }
        Ok(out)
    }

    /// Runs `n` greedy steps after `prompt_ids` without stopping at EOS
    /// (reference comparisons and benchmarks). Returns the ids and the
    /// milliseconds of the prompt pass and of the `n - 1` single steps.
    pub fn greedy_fixed(&self, prompt_ids: &[u32], n: usize) -> Result<(Vec<u32>, f64, f64)> {
        self.pool.install(|| {
            let mut cache = self.decoder.new_cache(1, prompt_ids.len() + n)?;
            let t0 = Instant::now();
            let mut logits = None;
            for chunk in prompt_ids.chunks(PREFILL_CHUNK) {
                let row: Vec<Option<u32>> = chunk.iter().copied().map(Some).collect();
                logits = Some(self.decoder.forward(&[row], &mut cache)?);
            }
            let mut logits = logits.ok_or_else(|| Error::Request("empty prompt".into()))?;
            let mut ids = Vec::with_capacity(n);
            let mut next = crate::sampling::argmax(&logits.squeeze(0)?.to_vec1::<f32>()?);
            let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
            let t1 = Instant::now();
            while ids.len() < n {
                ids.push(next);
                if ids.len() == n {
                    break;
                }
                logits = self.decoder.forward(&[vec![Some(next)]], &mut cache)?;
                next = crate::sampling::argmax(&logits.squeeze(0)?.to_vec1::<f32>()?);
            }
            Ok((ids, prefill_ms, t1.elapsed().as_secs_f64() * 1e3))
        })
    }

    /// The model itself.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Runs `f` on this model's compute threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Steps 5–7: decode with special tokens and padding, clean, and build
    /// the records clemcore keeps.
    pub fn finish(&self, prepared: &Prepared, row: &RowTokens) -> Result<Finished> {
        let mut prompt_ids = vec![self.pad_id; row.left_pad];
        prompt_ids.extend_from_slice(&prepared.prompt_ids);
        let mut full = prompt_ids.clone();
        full.extend_from_slice(&row.generated);
        full.extend(std::iter::repeat_n(self.pad_id, row.right_pad));
        let prompt_text = self.tokenizer.decode(&prompt_ids)?;
        let output_text = self.tokenizer.decode(&full)?;
        let cleaned = self.cleaner.clean_hf(&output_text, &prompt_text);
        let text = match &cleaned.cot_answer_raw {
            Some(answer) => {
                // clemcore cuts the answer to max_tokens tokens before stripping.
                let ids = self.tokenizer.encode(answer)?;
                let cut = &ids[..ids.len().min(prepared.max_tokens)];
                clemhost_local_common::pystr::strip(&self.tokenizer.decode(cut)?).to_string()
            }
            None => cleaned.text.clone(),
        };
        Ok(Finished {
            prompt_text,
            output_text,
            text,
            cot_content: cleaned.cot_content,
            prompt_tokens: prepared.prompt_ids.len(),
            completion_tokens: row.generated.len(),
        })
    }
}

/// The decoded, cleaned result of one request.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The decoded prompt (special tokens and padding included): `inputs`.
    pub prompt_text: String,
    /// The decoded full sequence: `response`.
    pub output_text: String,
    /// The cleaned answer.
    pub text: String,
    /// With `cot_output`: the reasoning.
    pub cot_content: Option<String>,
    /// Prompt tokens (without padding).
    pub prompt_tokens: usize,
    /// Generated tokens (the EOS included).
    pub completion_tokens: usize,
}
