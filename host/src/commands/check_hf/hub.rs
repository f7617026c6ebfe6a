//! The tokenizer side of `check-hf` (feature `hub`): a Hub repo or a local
//! model directory, read with `tokenizers` as huggingface_local reads it.

use super::{Loaded, TokenizerFacts};
use crate::error::{Error, Result};
use clemhost_local_common::hub::{HubSettings, ModelSource};
use clemhost_local_common::tokenizer_config::{GenerationConfig, HfConfig, TokenizerConfig};
use std::path::Path;

/// Loads the facts of a Hub repo or a local model directory.
pub(super) fn load_tokenizer_dir(model: &str) -> Result<Loaded> {
    let settings = HubSettings::from_process_env(None);
    let source = ModelSource::open(model, &settings).map_err(|e| Error::msg(e.to_string()))?;
    // Fetch (or find) every file the tokenizer facts come from; they share one directory.
    let config = source
        .file("tokenizer_config.json")
        .map_err(|e| Error::msg(format!("{e}; a chat model needs tokenizer_config.json")))?;
    for optional in [
        "tokenizer.json",
        "config.json",
        "generation_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "chat_template.json",
    ] {
        source.optional_file(optional);
    }
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::msg(format!("{} has no parent directory", config.display())))?;
    let tc = TokenizerConfig::load(&dir).map_err(|e| Error::msg(e.to_string()))?;
    let gen = GenerationConfig::load(&dir).map_err(|e| Error::msg(e.to_string()))?;
    let hf = if dir.join("config.json").is_file() {
        Some(HfConfig::load(&dir).map_err(|e| Error::msg(e.to_string()))?)
    } else {
        None
    };
    let tokenizer =
        match dir.join("tokenizer.json") {
            p if p.is_file() => Some(tokenizers::Tokenizer::from_file(&p).map_err(|e| {
                Error::msg(format!("{}: cannot read the tokenizer: {e}", p.display()))
            })?),
            _ => None,
        };
    let id_of = |t: &str| -> Option<u32> {
        tokenizer
            .as_ref()
            .and_then(|tk| tk.token_to_id(t))
            .or_else(|| {
                tc.added_tokens_decoder
                    .iter()
                    .find(|(_, a)| a.content == t)
                    .map(|(id, _)| *id)
            })
    };
    let special_tokens = tc
        .special_tokens
        .iter()
        .map(|(role, text)| (role.clone(), text.clone(), id_of(text)))
        .collect();
    let facts = TokenizerFacts {
        class: tc.tokenizer_class.clone(),
        model_type: hf.as_ref().and_then(|h| h.model_type.clone()),
        vocab_size: tokenizer.as_ref().map(|t| t.get_vocab_size(true)),
        special_tokens,
        all_special: tc.all_special_tokens(),
        eos_token_ids: gen
            .as_ref()
            .map(|g| g.eos_token_ids.clone())
            .unwrap_or_default(),
        context_size: hf.as_ref().and_then(|h| {
            h.max_position_embeddings
                .or(h.n_positions)
                .or(h.text_config_max_position_embeddings)
        }),
    };
    Ok(Loaded {
        backend: "huggingface_local",
        location: dir,
        template: tc.chat_template.clone(),
        bos: tc.bos_token().map(str::to_string),
        eos: tc.eos_token().map(str::to_string),
        facts,
        tokenizer,
        gguf_file: None,
    })
}

/// Whether decoding the encoded prompt gives the prompt back (else the
/// backend cannot remove the prompt from the output by string replacement).
pub(super) fn round_trip(
    tokenizer: &tokenizers::Tokenizer,
    prompt: &str,
) -> std::result::Result<(), String> {
    let enc = tokenizer
        .encode(prompt, false)
        .map_err(|e| format!("cannot encode: {e}"))?;
    let dec = tokenizer
        .decode(enc.get_ids(), false)
        .map_err(|e| format!("cannot decode: {e}"))?;
    if dec == prompt {
        Ok(())
    } else {
        let at = prompt
            .char_indices()
            .zip(dec.chars())
            .find(|((_, a), b)| a != b)
            .map(|((i, _), _)| i)
            .unwrap_or(prompt.len().min(dec.len()));
        let excerpt: String = prompt[at..].chars().take(30).collect();
        Err(format!(
            "the decoded prompt differs from the rendered one at byte {at}: {excerpt:?}"
        ))
    }
}
