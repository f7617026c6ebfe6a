//! Context sizes and the context check, as clemcore does them.
//!
//! - [`parse_context_size`]: a registry entry's `context_size` (`8192`,
//!   `"128k"`, `"1m"`, `" 4K "`; `"1.5k"` and `"128kb"` are unparsable).
//! - [`resolve_context_size`]: which source wins, in clemcore's order
//!   (`config.json` first, then the entry, then the tokenizer, then 256).
//! - [`check_context`]: prompt tokens plus `max_tokens` must fit, else a
//!   [`BackendError`] of kind `context_exceeded` with clemcore's message and
//!   the numbers in `details`.

use clemhost_plugin_sdk::{BackendError, ErrorKind};
use serde_json::{json, Value};

/// The context size clemcore assumes when nothing says otherwise.
pub const FALLBACK_CONTEXT_SIZE: u64 = 256;

/// A tokenizer `model_max_length` at or above this is a "no limit" sentinel
/// (transformers writes 1e30) and is ignored.
pub const TOKENIZER_MAX_LENGTH_GUARD: u64 = 1_000_000;

/// Parses a registry `context_size`: a JSON integer (a boolean counts as 0
/// or 1, as in Python), or a string of digits with an optional `k` (×1024)
/// or `m` (×1024²) suffix, case-insensitive, surrounding whitespace ignored.
/// Anything else (floats, `"1.5k"`, `"128kb"`, `""`) gives `None`.
pub fn parse_context_size(value: &Value) -> Option<u64> {
    match value {
        Value::Bool(b) => Some(u64::from(*b)),
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let text = crate::pystr::strip(s).to_lowercase();
            let (digits, factor) = if let Some(d) = text.strip_suffix('k') {
                (d, 1024)
            } else if let Some(d) = text.strip_suffix('m') {
                (d, 1024 * 1024)
            } else {
                (text.as_str(), 1)
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse::<u64>().ok()?.checked_mul(factor)
        }
        _ => None,
    }
}

/// Where a resolved context size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextSource {
    /// `config.json` `max_position_embeddings`.
    MaxPositionEmbeddings,
    /// `config.json` `n_positions` (GPT-2 style configs).
    NPositions,
    /// `config.json` `text_config.max_position_embeddings` (multimodal configs).
    TextConfig,
    /// The registry entry's `context_size`.
    Entry,
    /// The tokenizer's `model_max_length`.
    Tokenizer,
    /// Nothing said anything: [`FALLBACK_CONTEXT_SIZE`].
    Fallback,
    /// The engine's own number (for example a GGUF context length).
    Engine,
}

/// The facts [`resolve_context_size`] looks at, each optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextFacts {
    /// `config.json` `max_position_embeddings`.
    pub max_position_embeddings: Option<u64>,
    /// `config.json` `n_positions`.
    pub n_positions: Option<u64>,
    /// `config.json` `text_config.max_position_embeddings`.
    pub text_config_max_position_embeddings: Option<u64>,
    /// The registry entry's raw `context_size` value.
    pub entry_context_size: Option<Value>,
    /// The tokenizer's `model_max_length`, when it is an integer.
    pub tokenizer_model_max_length: Option<u64>,
}

/// Picks the context size as clemcore's `_context_size_from_config` does:
/// the first of `max_position_embeddings`, `n_positions`,
/// `text_config.max_position_embeddings`, the entry's parsable
/// `context_size`, the tokenizer's `model_max_length` below one million, and
/// finally 256. A zero from the entry or tokenizer counts as unset.
pub fn resolve_context_size(facts: &ContextFacts) -> (u64, ContextSource) {
    if let Some(n) = facts.max_position_embeddings {
        return (n, ContextSource::MaxPositionEmbeddings);
    }
    if let Some(n) = facts.n_positions {
        return (n, ContextSource::NPositions);
    }
    if let Some(n) = facts.text_config_max_position_embeddings {
        return (n, ContextSource::TextConfig);
    }
    let entry = facts
        .entry_context_size
        .as_ref()
        .and_then(parse_context_size);
    if let Some(n) = entry {
        if n > 0 {
            return (n, ContextSource::Entry);
        }
        // clemcore: `context_size or FALLBACK`, so 0 falls through to 256
        // without trying the tokenizer.
        return (FALLBACK_CONTEXT_SIZE, ContextSource::Fallback);
    }
    match facts.tokenizer_model_max_length {
        Some(n) if n > 0 && n < TOKENIZER_MAX_LENGTH_GUARD => (n, ContextSource::Tokenizer),
        _ => (FALLBACK_CONTEXT_SIZE, ContextSource::Fallback),
    }
}

/// How much of the context a request takes (when it fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextUsage {
    /// Prompt tokens plus `max_new_tokens`.
    pub tokens_used: u64,
    /// `context_size - tokens_used` (negative when it does not fit).
    pub tokens_left: i64,
    /// The limit.
    pub context_size: u64,
}

/// clemcore's context check: `tokens_used = prompt_tokens + max_new_tokens`
/// must be at most `context_size`. `batch_index` adds clemcore's
/// huggingface_local wording (`" at batch index <i>"`).
///
/// The error has kind `context_exceeded`, the message
/// `"Context token limit for <model> exceeded[ at batch index <i>] <used>/<size>"`
/// and `details = {tokens_used, tokens_left, context_size}`.
pub fn check_context(
    model_name: &str,
    batch_index: Option<usize>,
    prompt_tokens: usize,
    max_new_tokens: u64,
    context_size: u64,
) -> Result<ContextUsage, BackendError> {
    let tokens_used = (prompt_tokens as u64).saturating_add(max_new_tokens);
    let tokens_left = i64::try_from(context_size)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(tokens_used).unwrap_or(i64::MAX));
    let usage = ContextUsage {
        tokens_used,
        tokens_left,
        context_size,
    };
    if tokens_used <= context_size {
        return Ok(usage);
    }
    let mut info = format!("Context token limit for {model_name} exceeded");
    if let Some(i) = batch_index {
        info.push_str(&format!(" at batch index {i}"));
    }
    log::info!("{info}: {tokens_used}/{context_size}");
    Err(BackendError::new(
        ErrorKind::ContextExceeded,
        format!("{info} {tokens_used}/{context_size}"),
    )
    .with_details(json!({
        "tokens_used": tokens_used,
        "tokens_left": tokens_left,
        "context_size": context_size,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_clemcore() {
        assert_eq!(parse_context_size(&json!("128k")), Some(131072));
        assert_eq!(parse_context_size(&json!("1m")), Some(1048576));
        assert_eq!(parse_context_size(&json!(" 4K ")), Some(4096));
        assert_eq!(parse_context_size(&json!("8192")), Some(8192));
        assert_eq!(parse_context_size(&json!(8192)), Some(8192));
        assert_eq!(parse_context_size(&json!(true)), Some(1));
        for bad in [
            json!("1.5k"),
            json!("128kb"),
            json!(""),
            json!("  "),
            json!("k"),
            json!(4096.0),
            json!(null),
            json!([1]),
        ] {
            assert_eq!(parse_context_size(&bad), None, "{bad}");
        }
    }

    #[test]
    fn resolution_order() {
        let mut facts = ContextFacts {
            max_position_embeddings: Some(8192),
            n_positions: Some(1024),
            text_config_max_position_embeddings: Some(4096),
            entry_context_size: Some(json!("2k")),
            tokenizer_model_max_length: Some(512),
        };
        assert_eq!(
            resolve_context_size(&facts),
            (8192, ContextSource::MaxPositionEmbeddings)
        );
        facts.max_position_embeddings = None;
        assert_eq!(
            resolve_context_size(&facts),
            (1024, ContextSource::NPositions)
        );
        facts.n_positions = None;
        assert_eq!(
            resolve_context_size(&facts),
            (4096, ContextSource::TextConfig)
        );
        facts.text_config_max_position_embeddings = None;
        assert_eq!(resolve_context_size(&facts), (2048, ContextSource::Entry));
        facts.entry_context_size = Some(json!("lots"));
        assert_eq!(
            resolve_context_size(&facts),
            (512, ContextSource::Tokenizer)
        );
        facts.tokenizer_model_max_length = Some(1_000_000);
        assert_eq!(resolve_context_size(&facts), (256, ContextSource::Fallback));
        facts.tokenizer_model_max_length = None;
        assert_eq!(resolve_context_size(&facts), (256, ContextSource::Fallback));
    }

    #[test]
    fn context_check_fits_at_the_limit() {
        let u = check_context("tiny", None, 44, 20, 64).unwrap();
        assert_eq!(
            u,
            ContextUsage {
                tokens_used: 64,
                tokens_left: 0,
                context_size: 64
            }
        );
    }

    #[test]
    fn context_check_error_has_clemcore_shape() {
        let e = check_context("tiny", Some(0), 45, 20, 64).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContextExceeded);
        assert_eq!(
            e.message,
            "Context token limit for tiny exceeded at batch index 0 65/64"
        );
        assert_eq!(
            e.details,
            Some(json!({"tokens_used": 65, "tokens_left": -1, "context_size": 64}))
        );
        let e = check_context("m", None, 100, 300, 256).unwrap_err();
        assert_eq!(e.message, "Context token limit for m exceeded 400/256");
    }
}
