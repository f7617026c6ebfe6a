//! The tokenizer side of `check-hf` (feature `hub`): a Hub repo or a local
//! model directory, read with `tokenizers` as huggingface_local reads it.

use super::Loaded;
use crate::error::{Error, Result};
use clemhost_local_common::hub::{HubSettings, ModelSource};
use clemhost_local_common::model_facts::{ModelFacts, Vocabulary};
use std::path::Path;

/// Loads the facts of a Hub repo or a local model directory.
pub(super) fn load_tokenizer_dir(model: &str) -> Result<Loaded> {
    let settings = HubSettings::from_process_env(None);
    let source = ModelSource::open(model, &settings).map_err(Error::wrap)?;
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
    let tokenizer =
        match dir.join("tokenizer.json") {
            p if p.is_file() => Some(tokenizers::Tokenizer::from_file(&p).map_err(|e| {
                Error::msg(format!("{}: cannot read the tokenizer: {e}", p.display()))
            })?),
            _ => None,
        };
    let vocabulary = tokenizer.as_ref().map(Vocab);
    let model = ModelFacts::from_model_dir(&dir, vocabulary.as_ref().map(|v| v as &dyn Vocabulary))
        .map_err(Error::wrap)?;
    Ok(Loaded { model, tokenizer })
}

/// The `tokenizers` vocabulary, as local-common asks for it.
struct Vocab<'a>(&'a tokenizers::Tokenizer);

impl Vocabulary for Vocab<'_> {
    fn id_of(&self, token: &str) -> Option<u32> {
        self.0.token_to_id(token)
    }
    fn size(&self) -> usize {
        self.0.get_vocab_size(true)
    }
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
