//! What a local model says about itself, read as the local backends read
//! it: its chat template, BOS/EOS texts, special tokens with their ids, EOS
//! ids and context size. `check-hf` and `doctor` print and check these
//! facts; they come from a GGUF file's metadata ([`ModelFacts::from_gguf`])
//! or a HuggingFace model directory's JSON files
//! ([`ModelFacts::from_model_dir`]).
//!
//! Token ids and the vocabulary size of a model directory come from its
//! tokenizer when the caller has one ([`Vocabulary`]: the host reads
//! `tokenizer.json` with the `tokenizers` crate), else from the
//! `added_tokens_decoder` of `tokenizer_config.json`.

use crate::gguf::{GgufError, GgufMetadata, GgufValue};
use crate::hf_files::{ConfigError, GenerationConfig, HfConfig, TokenizerConfig};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What was learnt about the model's tokenizer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TokenizerFacts {
    /// `tokenizer_class` of tokenizer_config.json (or `gguf:<model>` for GGUF).
    pub class: Option<String>,
    /// `model_type` of config.json (or `general.architecture` of a GGUF).
    pub model_type: Option<String>,
    /// Size of the vocabulary, added tokens included.
    pub vocab_size: Option<usize>,
    /// Special tokens by role (`bos_token`, `eos_token`, ...) with their ids.
    pub special_tokens: Vec<(String, String, Option<u32>)>,
    /// Every special/added token text.
    pub all_special: Vec<String>,
    /// EOS ids from generation_config.json (or the GGUF's eos and eot ids).
    pub eos_token_ids: Vec<u32>,
    /// The context size the backend would use, if known.
    pub context_size: Option<u64>,
}

/// A local model's template, special tokens and tokenizer facts.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFacts {
    /// The backend that reads this kind of model: `huggingface_local` for a
    /// model directory, `llamacpp` for a GGUF file.
    pub backend: &'static str,
    /// The directory or file actually read.
    pub location: PathBuf,
    /// The model's own chat template, if it has one.
    pub template: Option<String>,
    /// The BOS token text the template gets.
    pub bos: Option<String>,
    /// The EOS token text the template gets.
    pub eos: Option<String>,
    /// The tokenizer's facts.
    pub facts: TokenizerFacts,
    /// For a GGUF file: its file name inside its directory.
    pub gguf_file: Option<String>,
}

/// A tokenizer's vocabulary, when the caller has loaded one.
pub trait Vocabulary {
    /// The id of a token text, if the vocabulary has it.
    fn id_of(&self, token: &str) -> Option<u32>;
    /// The number of tokens, added tokens included.
    fn size(&self) -> usize;
}

/// Why a model's facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The GGUF file is unreadable or malformed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// One of the model directory's JSON files is unreadable or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The metadata keys of a GGUF's special tokens, by transformers' role name.
const GGUF_SPECIAL_TOKENS: [(&str, &str); 5] = [
    ("bos_token", "tokenizer.ggml.bos_token_id"),
    ("eos_token", "tokenizer.ggml.eos_token_id"),
    ("eot_token", "tokenizer.ggml.eot_token_id"),
    ("pad_token", "tokenizer.ggml.padding_token_id"),
    ("unk_token", "tokenizer.ggml.unknown_token_id"),
];

impl ModelFacts {
    /// Reads the facts of a GGUF file from its metadata (the tensors are not read).
    pub fn from_gguf(path: &Path) -> Result<ModelFacts, FactsError> {
        let meta = GgufMetadata::read(path)?;
        let text = |key: &str| {
            meta.get(key)
                .and_then(GgufValue::as_str)
                .map(str::to_string)
        };
        let id = |key: &str| meta.get(key).and_then(GgufValue::as_u64);
        let arch = text("general.architecture");
        let mut special_tokens = Vec::new();
        let mut all_special: Vec<String> = Vec::new();
        for (role, key) in GGUF_SPECIAL_TOKENS {
            if let (Some(id), Some(token)) = (id(key), meta.special_token(key)) {
                special_tokens.push((role.to_string(), token.to_string(), u32::try_from(id).ok()));
                if !all_special.iter().any(|t| t == token) {
                    all_special.push(token.to_string());
                }
            }
        }
        let vocab_size = match meta.get("tokenizer.ggml.tokens") {
            Some(GgufValue::Array(a)) => Some(a.len()),
            _ => None,
        };
        let mut eos_token_ids = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = id(key).and_then(|n| u32::try_from(n).ok()) {
                if !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }
        let context_size = arch
            .as_ref()
            .and_then(|a| id(&format!("{a}.context_length")));
        Ok(ModelFacts {
            backend: "llamacpp",
            location: path.to_path_buf(),
            template: meta.chat_template().map(str::to_string),
            bos: meta
                .special_token("tokenizer.ggml.bos_token_id")
                .map(str::to_string),
            eos: meta
                .special_token("tokenizer.ggml.eos_token_id")
                .map(str::to_string),
            facts: TokenizerFacts {
                class: text("tokenizer.ggml.model").map(|m| format!("gguf:{m}")),
                model_type: arch,
                vocab_size,
                special_tokens,
                all_special,
                eos_token_ids,
                context_size,
            },
            gguf_file: path
                .file_name()
                .and_then(|f| f.to_str())
                .map(str::to_string),
        })
    }

    /// Reads the facts of a HuggingFace model directory: its
    /// `tokenizer_config.json` (and companions), `generation_config.json`
    /// and `config.json` when present; ids from `vocabulary` when given.
    pub fn from_model_dir(
        dir: &Path,
        vocabulary: Option<&dyn Vocabulary>,
    ) -> Result<ModelFacts, FactsError> {
        let tc = TokenizerConfig::load(dir)?;
        let generation = GenerationConfig::load(dir)?;
        let config = if dir.join("config.json").is_file() {
            Some(HfConfig::load(dir)?)
        } else {
            None
        };
        let id_of = |token: &str| -> Option<u32> {
            vocabulary.and_then(|v| v.id_of(token)).or_else(|| {
                tc.added_tokens_decoder
                    .iter()
                    .find(|(_, added)| added.content == token)
                    .map(|(id, _)| *id)
            })
        };
        let special_tokens = tc
            .special_tokens
            .iter()
            .map(|(role, token)| (role.clone(), token.clone(), id_of(token)))
            .collect();
        let facts = TokenizerFacts {
            class: tc.tokenizer_class.clone(),
            model_type: config.as_ref().and_then(|c| c.model_type.clone()),
            vocab_size: vocabulary.map(Vocabulary::size),
            special_tokens,
            all_special: tc.all_special_tokens(),
            eos_token_ids: generation.map(|g| g.eos_token_ids).unwrap_or_default(),
            context_size: config.as_ref().and_then(|c| {
                c.max_position_embeddings
                    .or(c.n_positions)
                    .or(c.text_config_max_position_embeddings)
            }),
        };
        Ok(ModelFacts {
            backend: "huggingface_local",
            location: dir.to_path_buf(),
            template: tc.chat_template.clone(),
            bos: tc.bos_token().map(str::to_string),
            eos: tc.eos_token().map(str::to_string),
            facts,
            gguf_file: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf_files::write_for_test as write;

    struct Fixed;
    impl Vocabulary for Fixed {
        fn id_of(&self, token: &str) -> Option<u32> {
            (token == "<s>").then_some(7)
        }
        fn size(&self) -> usize {
            100
        }
    }

    #[test]
    fn a_model_directory_gives_its_tokens_ids_and_context() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "tokenizer_config.json",
            r#"{"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{{ bos_token }}",
                "tokenizer_class": "LlamaTokenizer",
                "added_tokens_decoder": {"2": {"content": "</s>", "special": true}}}"#,
        );
        write(
            d.path(),
            "generation_config.json",
            r#"{"eos_token_id": [2, 9]}"#,
        );
        write(
            d.path(),
            "config.json",
            r#"{"model_type": "llama", "max_position_embeddings": 8192}"#,
        );
        let facts = ModelFacts::from_model_dir(d.path(), Some(&Fixed)).unwrap();
        assert_eq!(facts.backend, "huggingface_local");
        assert_eq!(facts.template.as_deref(), Some("{{ bos_token }}"));
        assert_eq!(
            (facts.bos.as_deref(), facts.eos.as_deref()),
            (Some("<s>"), Some("</s>"))
        );
        let t = &facts.facts;
        assert_eq!(t.class.as_deref(), Some("LlamaTokenizer"));
        assert_eq!(t.model_type.as_deref(), Some("llama"));
        assert_eq!((t.vocab_size, t.context_size), (Some(100), Some(8192)));
        assert_eq!(t.eos_token_ids, [2, 9]);
        // <s> from the vocabulary, </s> from added_tokens_decoder.
        assert!(t
            .special_tokens
            .contains(&("bos_token".into(), "<s>".into(), Some(7))));
        assert!(t
            .special_tokens
            .contains(&("eos_token".into(), "</s>".into(), Some(2))));
        // Without a vocabulary, only the decoder's ids are known.
        let bare = ModelFacts::from_model_dir(d.path(), None).unwrap();
        assert!(bare
            .facts
            .special_tokens
            .contains(&("bos_token".into(), "<s>".into(), None)));
        assert_eq!(bare.facts.vocab_size, None);
    }

    #[test]
    fn a_broken_file_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "config.json", "{\"model_type\": ");
        let err = ModelFacts::from_model_dir(d.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json:1:"), "{err}");
        let gguf = d.path().join("x.gguf");
        std::fs::write(&gguf, b"not a gguf").unwrap();
        let err = ModelFacts::from_gguf(&gguf).unwrap_err().to_string();
        assert!(err.contains("x.gguf"), "{err}");
    }
}
