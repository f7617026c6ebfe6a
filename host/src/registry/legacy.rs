//! Entries in the format of clembench before clemcore 1.0, with backend
//! settings at the top level instead of in `model_config`.

use serde_json::{Map, Value};

/// Settings that clembench before clemcore 1.0 wrote at the top level of an
/// entry and that now live in `model_config`.
pub const LEGACY_MODEL_CONFIG_KEYS: &[&str] = &[
    "premade_chat_template",
    "custom_chat_template",
    "eos_to_cull",
    "output_split_prefix",
    "padding_side",
    "requires_api_key",
    "slow_tokenizer",
    "multimodal",
    "multimodality",
    "thinking_mode",
    "reasoning_model",
    "extra_body",
    "trust_remote_code",
    "do_sample",
    "load_in_8bit",
    "load_in_4bit",
    "attn_implementation",
    "peft_model",
    "chat_template_kwargs",
    "chat_template_language",
    "cot_output",
    "cot_start_tag",
    "cot_end_tag",
    "cot_bypass",
    "cot_effort",
    "filename",
    "additional_files",
    "bos_string",
    "eos_string",
    "execute_on",
    "gpu_layers_offloaded",
    "model_class",
    "processor_class",
    "processor_config",
    "mm_model_config",
    "number_gpus",
    "automodel_type",
    "use_bf16",
    "low_cpu_mem_usage",
];

/// Moves pre-1.0 top-level settings into `model_config` (a setting that
/// `model_config` already has stays where it is). Returns the moved keys.
pub(super) fn move_legacy_settings(spec: &mut Map<String, Value>) -> Vec<String> {
    let legacy: Vec<String> = spec
        .keys()
        .filter(|k| LEGACY_MODEL_CONFIG_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if legacy.is_empty() {
        return legacy;
    }
    if !matches!(spec.get("model_config"), None | Some(Value::Object(_))) {
        return Vec::new();
    }
    let mut config = match spec.remove("model_config") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut moved = Vec::new();
    for key in legacy {
        if config.contains_key(&key) {
            continue;
        }
        if let Some(v) = spec.remove(&key) {
            config.insert(key.clone(), v);
            moved.push(key);
        }
    }
    spec.insert("model_config".into(), Value::Object(config));
    moved
}
