//! The registry entry of a `llamacpp` model, read once into typed settings.
//!
//! Every field an entry may carry is listed in [`Settings`], except the
//! cleaning fields (`eos_to_cull`, `output_split_prefix`), which the shared
//! `clemhost_local_common::clean` reads. A field of the
//! wrong type is an `invalid_request` error that names the entry, the field
//! and what to write instead.

use clemhost_plugin_sdk::serde_json::{Map, Value};
use clemhost_plugin_sdk::{BackendError, ModelConfig};

/// What the plugin reads from a registry entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `model_name`, for messages.
    pub model_name: String,
    /// `huggingface_id`: a Hub repo id, a local directory or a local `.gguf` file.
    pub huggingface_id: String,
    /// `model_config.filename`: the `.gguf` inside the repo or directory (or a path).
    pub filename: Option<String>,
    /// `model_config.premade_chat_template`: use the GGUF's `tokenizer.chat_template`.
    pub premade_chat_template: bool,
    /// `model_config.custom_chat_template`: used when `premade_chat_template` is false.
    pub custom_chat_template: Option<String>,
    /// `model_config.bos_string` / `eos_string`: used when the GGUF names no BOS/EOS token.
    pub bos_string: Option<String>,
    /// See `bos_string`.
    pub eos_string: Option<String>,
    /// `model_config.requires_api_key`: take the Hub token from the `huggingface` credentials.
    pub requires_api_key: bool,
    /// `model_config.threads`: CPU threads (default: the physical cores).
    pub threads: Option<u32>,
    /// `model_config.n_ctx` (or `context_length`): context size per sequence
    /// (default: the model's training context).
    pub n_ctx: Option<u32>,
    /// `model_config.kv_cache_mib`: KV-cache memory for all sequences at
    /// full context, which sizes `parallel` when neither it nor the host's
    /// `concurrency` is given.
    pub kv_cache_mib: u32,
    /// `model_config.parallel`: the most sequences decoded together (default:
    /// the host's `concurrency`, else as many as fit `kv_cache_mib`; at most
    /// [`crate::engine::MAX_PARALLEL`]).
    pub parallel: Option<u32>,
    /// `model_config.n_batch`: the most prompt tokens per decode call.
    pub n_batch: u32,
    /// `model_config.gpu_layers_offloaded`: layers on the GPU (`cuda` builds; default all).
    pub gpu_layers: Option<u32>,
    /// `model_config.flash_attention`: llama.cpp's flash attention (default off, as llama-cpp-python).
    pub flash_attention: bool,
    /// `model_config.seed`: the sampling seed when temperature > 0 (default 42).
    pub seed: u32,
}

fn bad_field(model: &str, field: &str, want: &str, got: &Value) -> BackendError {
    BackendError::invalid_request(format!(
        "model '{model}': model_config.{field} must be {want}, found {got}; fix the registry entry"
    ))
}

fn opt_str(
    mc: &Map<String, Value>,
    model: &str,
    field: &str,
) -> Result<Option<String>, BackendError> {
    match mc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad_field(model, field, "a string", other)),
    }
}

fn opt_bool(
    mc: &Map<String, Value>,
    model: &str,
    field: &str,
) -> Result<Option<bool>, BackendError> {
    match mc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad_field(model, field, "true or false", other)),
    }
}

fn opt_u32(mc: &Map<String, Value>, model: &str, field: &str) -> Result<Option<u32>, BackendError> {
    match mc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad_field(model, field, "a whole number ≥ 0", v)),
    }
}

impl Settings {
    /// Reads the settings from a model configuration.
    pub fn from_config(config: &ModelConfig) -> Result<Settings, BackendError> {
        let model = config.model_name().to_string();
        let huggingface_id = match config.spec.get("huggingface_id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(other) if !other.is_null() => {
                return Err(BackendError::invalid_request(format!(
                    "model '{model}': huggingface_id must be a string (a Hub repo id or a local path), found {other}"
                )))
            }
            _ => {
                return Err(BackendError::invalid_request(format!(
                    "model '{model}': the registry entry has no huggingface_id; set it to a Hub repo id \
                     (org/name) or to a local directory or .gguf file"
                )))
            }
        };
        let mc = config.model_config();
        let premade = match mc.get("premade_chat_template") {
            Some(Value::Bool(b)) => *b,
            None | Some(Value::Null) => true,
            Some(other) => {
                return Err(bad_field(
                    &model,
                    "premade_chat_template",
                    "true or false",
                    other,
                ))
            }
        };
        let parallel = opt_u32(mc, &model, "parallel")?;
        if parallel == Some(0) {
            return Err(bad_field(&model, "parallel", "at least 1", &Value::from(0)));
        }
        let n_batch = opt_u32(mc, &model, "n_batch")?.unwrap_or(512).max(1);
        let threads = opt_u32(mc, &model, "threads")?;
        if threads == Some(0) {
            return Err(bad_field(&model, "threads", "at least 1", &Value::from(0)));
        }
        let n_ctx = match opt_u32(mc, &model, "n_ctx")? {
            Some(n) => Some(n),
            None => opt_u32(mc, &model, "context_length")?,
        }
        .filter(|n| *n > 0);
        let seed = match config.gen_args.extra.get("seed") {
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    BackendError::invalid_request(format!(
                        "model '{model}': generation argument seed must be a whole number below 2^32, found {v}"
                    ))
                })?,
            None => opt_u32(mc, &model, "seed")?.unwrap_or(42),
        };
        Ok(Settings {
            huggingface_id,
            filename: opt_str(mc, &model, "filename")?,
            premade_chat_template: premade,
            custom_chat_template: opt_str(mc, &model, "custom_chat_template")?,
            bos_string: opt_str(mc, &model, "bos_string")?,
            eos_string: opt_str(mc, &model, "eos_string")?,
            requires_api_key: opt_bool(mc, &model, "requires_api_key")?.unwrap_or(false),
            threads,
            n_ctx,
            kv_cache_mib: opt_u32(mc, &model, "kv_cache_mib")?
                .filter(|n| *n > 0)
                .unwrap_or(crate::engine::DEFAULT_KV_CACHE_MIB),
            parallel,
            n_batch,
            gpu_layers: opt_u32(mc, &model, "gpu_layers_offloaded")?,
            flash_attention: opt_bool(mc, &model, "flash_attention")?.unwrap_or(false),
            seed,
            model_name: model,
        })
    }
}

/// The number of physical CPU cores (hyper-threads counted once), or the
/// number of logical CPUs when that cannot be read.
pub fn physical_cores() -> u32 {
    let logical = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::BTreeSet::new();
    let (mut physical, mut core) = (None, None);
    for line in cpuinfo.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let (Some(p), Some(c)) = (physical.take(), core.take()) {
                cores.insert((p, c));
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "physical id" => physical = Some(value.trim().to_string()),
                "core id" => core = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    match u32::try_from(cores.len()) {
        // Containers may see fewer CPUs than the host has cores.
        Ok(n) if n > 0 => n.min(logical),
        _ => logical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clemhost_plugin_sdk::serde_json::json;

    fn config(entry: Value) -> ModelConfig {
        ModelConfig {
            spec: entry.as_object().cloned().unwrap_or_default(),
            ..ModelConfig::default()
        }
    }

    #[test]
    fn reads_a_typical_entry() {
        let s = Settings::from_config(&config(json!({
            "model_name": "m", "backend": "llamacpp", "huggingface_id": "org/repo",
            "model_config": {"premade_chat_template": true, "eos_to_cull": "<\\|im_end\\|>",
                              "filename": "m.Q4_1.gguf", "threads": 2, "parallel": 4}
        })))
        .expect("valid entry");
        assert_eq!(s.huggingface_id, "org/repo");
        assert_eq!(s.filename.as_deref(), Some("m.Q4_1.gguf"));
        assert_eq!(s.threads, Some(2));
        assert_eq!(s.parallel, Some(4));
        assert_eq!(s.kv_cache_mib, crate::engine::DEFAULT_KV_CACHE_MIB);
        assert!(!s.flash_attention);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = Settings::from_config(&config(json!({
            "model_name": "m", "huggingface_id": "x", "model_config": {"threads": "two"}
        })))
        .expect_err("threads is a string");
        assert!(
            err.message.contains("model_config.threads"),
            "{}",
            err.message
        );
        let err = Settings::from_config(&config(json!({"model_name": "m"}))).expect_err("no id");
        assert!(err.message.contains("huggingface_id"), "{}", err.message);
    }

    #[test]
    fn physical_cores_is_at_least_one() {
        assert!(physical_cores() >= 1);
    }
}
