//! The errors of loading a model and of generating with it.

use clemhost_plugin_sdk::{BackendError, ErrorKind};
use std::path::PathBuf;

/// Everything that can go wrong in this plugin, with the file and field
/// involved where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON.
    #[error("{path}: invalid JSON at line {line}, column {column}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What serde_json said.
        message: String,
    },
    /// A configuration field is missing or has the wrong type.
    #[error("{file}: field `{field}` {problem}")]
    Field {
        /// The file (or `model_config` for the registry entry).
        file: String,
        /// The field, as a JSON path.
        field: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The model's `model_type` has no adapter here.
    #[error("{path}: model_type `{model_type}` is not supported by huggingface_local; supported: {supported}")]
    UnsupportedModelType {
        /// The config.json.
        path: PathBuf,
        /// The model_type found.
        model_type: String,
        /// The supported model types, comma separated.
        supported: String,
    },
    /// A weight is missing or has an unexpected shape.
    #[error("{path}: {message}")]
    Weights {
        /// The model directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `tokenizer.json` could not be loaded or used.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What the tokenizers crate said.
        message: String,
    },
    /// The Hub download failed or the model is not in the local cache.
    #[error("cannot get `{repo}` from the HuggingFace Hub: {message}")]
    Hub {
        /// The repo id.
        repo: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// A model file (tokenizer_config.json, generation_config.json, ...) or
    /// a registry setting is unusable; the message names it.
    #[error("{0}")]
    Config(String),
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// Prompt plus `max_tokens` do not fit the context.
    #[error("Context token limit for {model} exceeded at batch index {index} {tokens_used}/{context_size}")]
    ContextExceeded {
        /// The model name.
        model: String,
        /// The row of the batch.
        index: usize,
        /// Padded prompt length plus `max_tokens`.
        tokens_used: usize,
        /// The model's context size.
        context_size: usize,
    },
    /// An error inside candle (a bug or an out-of-memory condition).
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The request is invalid (e.g. no messages).
    #[error("{0}")]
    Request(String),
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A missing or malformed field.
    pub fn field(
        file: impl Into<String>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Field {
            file: file.into(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<Error> for BackendError {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::ContextExceeded {
                tokens_used,
                context_size,
                index,
                ..
            } => BackendError::new(ErrorKind::ContextExceeded, message).with_details(
                serde_json::json!({
                    "tokens_used": tokens_used,
                    "tokens_left": context_size as i64 - tokens_used as i64,
                    "context_size": context_size,
                    "batch_index": index,
                }),
            ),
            Error::Candle(_) => BackendError::internal(message),
            Error::Hub { .. } => BackendError::new(ErrorKind::Unavailable, message),
            _ => BackendError::invalid_request(message),
        }
    }
}

/// Reads and parses a JSON file, reporting line and column on bad JSON.
pub fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}
