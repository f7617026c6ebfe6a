//! `config.json`: the model type, context-size fields and token ids.

use super::TokenizerConfig;
use super::{field_err, id_list, read_json_object, ConfigError};
use crate::context::ContextFacts;
use serde_json::{Map, Value};
use std::path::Path;

/// The facts of `config.json` the local backends use; the whole object is
/// in `raw` for the architecture code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HfConfig {
    /// `model_type` (`llama`, `qwen2`, `gemma3`, ...).
    pub model_type: Option<String>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<u64>,
    /// `n_positions`.
    pub n_positions: Option<u64>,
    /// `text_config.max_position_embeddings`.
    pub text_config_max_position_embeddings: Option<u64>,
    /// `eos_token_id` (one or several).
    pub eos_token_ids: Vec<u32>,
    /// `bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `pad_token_id`.
    pub pad_token_id: Option<u32>,
    /// The whole object.
    pub raw: Map<String, Value>,
}

impl HfConfig {
    /// Loads `dir/config.json` (required).
    pub fn load(dir: &Path) -> Result<HfConfig, ConfigError> {
        let path = dir.join("config.json");
        let raw = read_json_object(&path)?;
        Self::from_map(raw, &path)
    }

    /// Builds from a parsed object (`path` is only used in errors).
    pub fn from_map(raw: Map<String, Value>, path: &Path) -> Result<HfConfig, ConfigError> {
        let uint = |m: &Map<String, Value>, field: &str| -> Result<Option<u64>, ConfigError> {
            match m.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| field_err(path, field, "expected a non-negative integer")),
            }
        };
        let text_config_max_position_embeddings = match raw.get("text_config") {
            Some(Value::Object(tc)) => uint(tc, "max_position_embeddings")?,
            _ => None,
        };
        let single = |field: &str| -> Result<Option<u32>, ConfigError> {
            Ok(id_list(raw.get(field), path, field)?.first().copied())
        };
        Ok(HfConfig {
            model_type: raw
                .get("model_type")
                .and_then(Value::as_str)
                .map(str::to_owned),
            max_position_embeddings: uint(&raw, "max_position_embeddings")?,
            n_positions: uint(&raw, "n_positions")?,
            text_config_max_position_embeddings,
            eos_token_ids: id_list(raw.get("eos_token_id"), path, "eos_token_id")?,
            bos_token_id: single("bos_token_id")?,
            pad_token_id: single("pad_token_id")?,
            raw,
        })
    }

    /// The context facts this config and a tokenizer config give, with the
    /// registry entry's `context_size` (see [`crate::context`]).
    pub fn context_facts(
        &self,
        tokenizer: Option<&TokenizerConfig>,
        entry_context_size: Option<&Value>,
    ) -> ContextFacts {
        ContextFacts {
            max_position_embeddings: self.max_position_embeddings,
            n_positions: self.n_positions,
            text_config_max_position_embeddings: self.text_config_max_position_embeddings,
            entry_context_size: entry_context_size.cloned(),
            tokenizer_model_max_length: tokenizer.and_then(|t| t.model_max_length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf_files::write_for_test as write;

    #[test]
    fn hf_config_context_facts() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "config.json",
            r#"{"model_type": "gemma3", "text_config": {"max_position_embeddings": 131072}, "eos_token_id": [1, 106]}"#,
        );
        let c = HfConfig::load(d.path()).unwrap();
        assert_eq!(c.model_type.as_deref(), Some("gemma3"));
        let facts = c.context_facts(None, None);
        assert_eq!(
            crate::context::resolve_context_size(&facts),
            (131072, crate::context::ContextSource::TextConfig)
        );
        assert_eq!(c.eos_token_ids, [1, 106]);
        let missing = tempfile::tempdir().unwrap();
        let err = HfConfig::load(missing.path()).unwrap_err().to_string();
        assert!(err.contains("config.json: cannot read"), "{err}");
    }
}
