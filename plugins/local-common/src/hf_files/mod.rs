//! Reading a HuggingFace model directory's JSON files, one reader per file:
//!
//! - [`TokenizerConfig::load`] ([`tokenizer_config`]): `tokenizer_config.json`,
//!   overlaid with `special_tokens_map.json` and with the template files
//!   transformers reads (`chat_template.jinja` wins over the config's
//!   `chat_template`; `additional_chat_templates/<name>.jinja` add named
//!   templates; `chat_template.json`, the processor's file, is used when
//!   nothing else gives a template).
//! - [`GenerationConfig::load`] ([`generation_config`]): `eos_token_id` (an
//!   int or a list), `top_p`, `temperature`, ... (the file is optional).
//! - [`HfConfig::load`] ([`model_config`]): `model_type`, context-size fields
//!   and token ids of `config.json`.
//!
//! Every error names the file, and for JSON syntax errors the line and
//! column.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub mod generation_config;
pub mod model_config;
pub mod tokenizer_config;

pub use generation_config::GenerationConfig;
pub use model_config::HfConfig;
pub use tokenizer_config::{AddedToken, TokenizerConfig, SPECIAL_TOKEN_NAMES};

/// A model directory file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("{}:{line}:{column}: not valid JSON: {message}; fix or re-download the file", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A field has a shape the loader does not understand.
    #[error("{}: field {field}: {message}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The field (dotted path).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads a JSON object from a file, with line/column on syntax errors.
pub fn read_json_object(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_json_object(&text, path)
}

/// Parses JSON text that must be an object; `path` is only used in errors.
pub fn parse_json_object(text: &str, path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ConfigError::Field {
            path: path.to_owned(),
            field: "(top level)".into(),
            message: format!(
                "expected a JSON object, found {}",
                clemhost_pyfacts::json::kind_of(&other)
            ),
        }),
    }
}

pub(crate) fn field_err(path: &Path, field: &str, message: &str) -> ConfigError {
    ConfigError::Field {
        path: path.to_owned(),
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

/// An id field that may be one integer or a list of integers.
pub(crate) fn id_list(
    v: Option<&Value>,
    path: &Path,
    field: &str,
) -> Result<Vec<u32>, ConfigError> {
    let as_id = |x: &Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| {
                as_id(x).ok_or_else(|| {
                    field_err(path, field, "expected token ids (non-negative integers)")
                })
            })
            .collect(),
        Some(x) => as_id(x)
            .map(|id| vec![id])
            .ok_or_else(|| field_err(path, field, "expected a token id or a list of token ids")),
    }
}

pub(crate) fn opt_f64(
    m: &Map<String, Value>,
    path: &Path,
    field: &str,
) -> Result<Option<f64>, ConfigError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| field_err(path, field, "expected a number")),
    }
}

#[cfg(test)]
pub(crate) fn write_for_test(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap();
}
