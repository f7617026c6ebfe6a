//! `generation_config.json`: how generation stops and samples by default.

use super::{id_list, opt_f64, read_json_object, ConfigError};
use serde_json::{Map, Value};
use std::path::Path;

/// What `generation_config.json` says about stopping and sampling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationConfig {
    /// `eos_token_id`: one id or several; generation stops on any of them.
    pub eos_token_ids: Vec<u32>,
    /// `bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `pad_token_id`.
    pub pad_token_id: Option<u32>,
    /// `top_p` (clemcore samples with it when temperature > 0).
    pub top_p: Option<f64>,
    /// `top_k`.
    pub top_k: Option<u64>,
    /// `temperature` (the model's default; clemcore passes its own).
    pub temperature: Option<f64>,
    /// `do_sample`.
    pub do_sample: Option<bool>,
    /// The whole object.
    pub raw: Map<String, Value>,
}

impl GenerationConfig {
    /// Loads `dir/generation_config.json`; `Ok(None)` when the file is absent.
    pub fn load(dir: &Path) -> Result<Option<GenerationConfig>, ConfigError> {
        let path = dir.join("generation_config.json");
        if !path.is_file() {
            return Ok(None);
        }
        let raw = read_json_object(&path)?;
        Self::from_map(raw, &path).map(Some)
    }

    /// Builds from a parsed object (`path` is only used in errors).
    pub fn from_map(raw: Map<String, Value>, path: &Path) -> Result<GenerationConfig, ConfigError> {
        let single = |field: &str| -> Result<Option<u32>, ConfigError> {
            Ok(id_list(raw.get(field), path, field)?.first().copied())
        };
        Ok(GenerationConfig {
            eos_token_ids: id_list(raw.get("eos_token_id"), path, "eos_token_id")?,
            bos_token_id: single("bos_token_id")?,
            pad_token_id: single("pad_token_id")?,
            top_p: opt_f64(&raw, path, "top_p")?,
            top_k: raw.get("top_k").and_then(Value::as_u64),
            temperature: opt_f64(&raw, path, "temperature")?,
            do_sample: raw.get("do_sample").and_then(Value::as_bool),
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf_files::write_for_test as write;

    #[test]
    fn generation_config_eos_forms() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(GenerationConfig::load(d.path()).unwrap(), None);
        write(
            d.path(),
            "generation_config.json",
            r#"{"eos_token_id": [1, 2], "top_p": 0.9, "temperature": 0.6}"#,
        );
        let g = GenerationConfig::load(d.path()).unwrap().unwrap();
        assert_eq!(g.eos_token_ids, [1, 2]);
        assert_eq!(g.top_p, Some(0.9));
        assert_eq!(g.temperature, Some(0.6));
        write(d.path(), "generation_config.json", r#"{"eos_token_id": 7}"#);
        assert_eq!(
            GenerationConfig::load(d.path())
                .unwrap()
                .unwrap()
                .eos_token_ids,
            [7]
        );
        write(
            d.path(),
            "generation_config.json",
            r#"{"eos_token_id": "x"}"#,
        );
        assert!(GenerationConfig::load(d.path()).is_err());
    }
}
