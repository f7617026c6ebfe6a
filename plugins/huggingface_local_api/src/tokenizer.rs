//! `tokenizer.json` with the special tokens of `tokenizer_config.json`,
//! encoding and decoding as transformers' fast tokenizers do in clemcore's
//! calls (no added special tokens; special tokens kept when decoding).

use crate::error::{Error, Result};
use clemhost_local_common::hf_files::TokenizerConfig;
use std::path::{Path, PathBuf};
use tokenizers::{AddedToken, Tokenizer};

/// A loaded tokenizer.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    clean_up_spaces: bool,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json` and marks the special tokens that
    /// `tokenizer_config.json` names (when the vocabulary has them) so they
    /// are always matched whole.
    pub fn load(dir: &Path, config: &TokenizerConfig) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path,
                message: "missing; huggingface_local needs a fast tokenizer file (tokenizer.json)"
                    .into(),
            });
        }
        let mut inner = Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let specials: Vec<AddedToken> = config
            .all_special_tokens()
            .into_iter()
            .filter(|t| inner.token_to_id(t).is_some())
            .map(|t| AddedToken::from(t, true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| Error::Tokenizer {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let clean_up_spaces = config
            .raw
            .get("clean_up_tokenization_spaces")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        Ok(TextTokenizer {
            inner,
            path,
            clean_up_spaces,
        })
    }

    /// Token ids of `text`, without adding BOS/EOS or other special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self
            .inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(if self.clean_up_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// The id of a token string, if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// transformers' `clean_up_tokenization`: removes the space before
/// punctuation and English contractions.
fn clean_up_tokenization(text: &str) -> String {
    [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]
    .iter()
    .fold(text.to_string(), |acc, (from, to)| acc.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::clean_up_tokenization;

    #[test]
    fn clean_up_removes_spaces_before_punctuation() {
        assert_eq!(
            clean_up_tokenization("Hi , I do n't know ."),
            "Hi, I don't know."
        );
    }
}
