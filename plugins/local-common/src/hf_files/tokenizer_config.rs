//! `tokenizer_config.json` and its companions: special tokens, added
//! tokens, chat templates, `model_max_length`.

use super::{field_err, read_json_object, read_text, ConfigError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One entry of `added_tokens_decoder` (transformers' `AddedToken`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddedToken {
    /// The token text.
    pub content: String,
    /// A special token (skipped by `skip_special_tokens` decoding).
    pub special: bool,
    /// Strip whitespace on the left when matching.
    pub lstrip: bool,
    /// Strip whitespace on the right when matching.
    pub rstrip: bool,
    /// Match after normalisation.
    pub normalized: bool,
    /// Match whole words only.
    pub single_word: bool,
}

/// The names of the special-token attributes transformers knows, in the
/// order of its `special_tokens_map`.
pub const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// What `tokenizer_config.json` (and its companion files) say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerConfig {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// The single chat template, if the model has exactly one.
    pub chat_template: Option<String>,
    /// Named templates (`[{"name", "template"}]` form, or extra `.jinja`
    /// files), in file order. `default` is used when no name is asked for.
    pub named_templates: Vec<(String, String)>,
    /// Special tokens by attribute name (`bos_token`, `eos_token`,
    /// `pad_token`, ...): only those the tokenizer has.
    pub special_tokens: BTreeMap<String, String>,
    /// `additional_special_tokens`, as strings.
    pub additional_special_tokens: Vec<String>,
    /// `added_tokens_decoder`: token id to token.
    pub added_tokens_decoder: BTreeMap<u32, AddedToken>,
    /// `model_max_length` when it is a JSON integer that fits u64 (a float
    /// or the 1e30 "no limit" sentinel gives `None`, as clemcore ignores
    /// those).
    pub model_max_length: Option<u64>,
    /// `add_bos_token`, when set.
    pub add_bos_token: Option<bool>,
    /// `add_eos_token`, when set.
    pub add_eos_token: Option<bool>,
    /// `tokenizer_class`, when set.
    pub tokenizer_class: Option<String>,
    /// The whole `tokenizer_config.json` object, for anything else.
    pub raw: Map<String, Value>,
}

impl TokenizerConfig {
    /// Loads `dir/tokenizer_config.json` and its companion files (see the
    /// module docs). A missing `tokenizer_config.json` is allowed (an empty
    /// config, as transformers does); a broken one is an error.
    pub fn load(dir: &Path) -> Result<TokenizerConfig, ConfigError> {
        let config_path = dir.join("tokenizer_config.json");
        let raw = if config_path.is_file() {
            read_json_object(&config_path)?
        } else {
            Map::new()
        };
        let mut cfg = Self::from_map(raw, &config_path)?;
        cfg.dir = dir.to_owned();

        let map_path = dir.join("special_tokens_map.json");
        if map_path.is_file() {
            let map = read_json_object(&map_path)?;
            for name in SPECIAL_TOKEN_NAMES {
                if let Some(v) = map.get(name) {
                    if let Some(tok) = token_text(v, &map_path, name)? {
                        cfg.special_tokens.insert(name.to_owned(), tok);
                    }
                }
            }
            if let Some(v) = map.get("additional_special_tokens") {
                cfg.additional_special_tokens =
                    token_list(v, &map_path, "additional_special_tokens")?;
            }
        }

        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            cfg.chat_template = Some(read_text(&jinja)?);
        }
        let extra_dir = dir.join("additional_chat_templates");
        if extra_dir.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&extra_dir)
                .map_err(|source| ConfigError::Io {
                    path: extra_dir.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
                .collect();
            files.sort();
            if !files.is_empty() && cfg.named_templates.is_empty() {
                if let Some(t) = cfg.chat_template.take() {
                    cfg.named_templates.push(("default".into(), t));
                }
            }
            for f in files {
                let name = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = read_text(&f)?;
                cfg.named_templates.retain(|(n, _)| n != &name);
                cfg.named_templates.push((name, text));
            }
        }
        if cfg.chat_template.is_none() && cfg.named_templates.is_empty() {
            let json_path = dir.join("chat_template.json");
            if json_path.is_file() {
                let map = read_json_object(&json_path)?;
                match map.get("chat_template") {
                    Some(Value::String(s)) => cfg.chat_template = Some(s.clone()),
                    Some(other) => {
                        cfg.named_templates = named_list(other, &json_path)?;
                    }
                    None => {}
                }
            }
        }
        Ok(cfg)
    }

    /// Builds a config from a parsed `tokenizer_config.json` object (`path`
    /// is only used in errors).
    pub fn from_map(raw: Map<String, Value>, path: &Path) -> Result<TokenizerConfig, ConfigError> {
        let mut cfg = TokenizerConfig::default();
        match raw.get("chat_template") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => cfg.chat_template = Some(s.clone()),
            Some(other) => cfg.named_templates = named_list(other, path)?,
        }
        for name in SPECIAL_TOKEN_NAMES {
            if let Some(v) = raw.get(name) {
                if let Some(tok) = token_text(v, path, name)? {
                    cfg.special_tokens.insert(name.to_owned(), tok);
                }
            }
        }
        if let Some(v) = raw.get("additional_special_tokens") {
            cfg.additional_special_tokens = token_list(v, path, "additional_special_tokens")?;
        }
        if let Some(v) = raw.get("added_tokens_decoder") {
            let Value::Object(m) = v else {
                return Err(field_err(
                    path,
                    "added_tokens_decoder",
                    "expected an object of id -> token",
                ));
            };
            for (id, tok) in m {
                let field = format!("added_tokens_decoder.{id}");
                let id: u32 = id.parse().map_err(|_| {
                    field_err(path, &field, "the key must be a token id (an integer)")
                })?;
                cfg.added_tokens_decoder
                    .insert(id, added_token(tok, path, &field)?);
            }
        }
        cfg.model_max_length = raw.get("model_max_length").and_then(Value::as_u64);
        cfg.add_bos_token = raw.get("add_bos_token").and_then(Value::as_bool);
        cfg.add_eos_token = raw.get("add_eos_token").and_then(Value::as_bool);
        cfg.tokenizer_class = raw
            .get("tokenizer_class")
            .and_then(Value::as_str)
            .map(str::to_owned);
        cfg.raw = raw;
        Ok(cfg)
    }

    /// A special token by attribute name (`"bos_token"`, ...).
    pub fn token(&self, name: &str) -> Option<&str> {
        self.special_tokens.get(name).map(String::as_str)
    }

    /// `bos_token`.
    pub fn bos_token(&self) -> Option<&str> {
        self.token("bos_token")
    }

    /// `eos_token`.
    pub fn eos_token(&self) -> Option<&str> {
        self.token("eos_token")
    }

    /// `pad_token`.
    pub fn pad_token(&self) -> Option<&str> {
        self.token("pad_token")
    }

    /// `unk_token`.
    pub fn unk_token(&self) -> Option<&str> {
        self.token("unk_token")
    }

    /// The template variables transformers passes from the tokenizer
    /// (`special_tokens_map`): every special token it has, plus
    /// `additional_special_tokens` when non-empty.
    pub fn template_variables(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for name in SPECIAL_TOKEN_NAMES {
            if let Some(t) = self.token(name) {
                m.insert(name.to_owned(), Value::String(t.to_owned()));
            }
        }
        if !self.additional_special_tokens.is_empty() {
            m.insert(
                "additional_special_tokens".into(),
                Value::Array(
                    self.additional_special_tokens
                        .iter()
                        .cloned()
                        .map(Value::String)
                        .collect(),
                ),
            );
        }
        m
    }

    /// Every special token string (named, additional, and the `special`
    /// entries of `added_tokens_decoder`), without duplicates.
    pub fn all_special_tokens(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let named = self.special_tokens.values();
        let added = self
            .added_tokens_decoder
            .values()
            .filter(|t| t.special)
            .map(|t| &t.content);
        for t in named
            .chain(self.additional_special_tokens.iter())
            .chain(added)
        {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }

    /// The template to use, as transformers picks it: with several named
    /// templates, `requested` when it names one, else `default`; a
    /// `requested` string that names no template is itself the template
    /// source. Errors say what is missing.
    pub fn select_chat_template(&self, requested: Option<&str>) -> Result<String, String> {
        if !self.named_templates.is_empty() {
            if let Some(name) = requested {
                if let Some((_, t)) = self.named_templates.iter().find(|(n, _)| n == name) {
                    return Ok(t.clone());
                }
                return Ok(name.to_owned());
            }
            if let Some((_, t)) = self.named_templates.iter().find(|(n, _)| n == "default") {
                return Ok(t.clone());
            }
            let names: Vec<&str> = self
                .named_templates
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(format!(
                "{}: the model has several chat templates ({}) and none is named \"default\"; \
                 choose one with model_config.chat_template_language",
                self.dir.display(),
                names.join(", ")
            ));
        }
        if let Some(name) = requested {
            return Ok(name.to_owned());
        }
        self.chat_template.clone().ok_or_else(|| {
            format!(
                "{}: the tokenizer has no chat template (no chat_template in tokenizer_config.json, \
                 no chat_template.jinja); set model_config.custom_chat_template in the registry entry",
                self.dir.display()
            )
        })
    }
}

/// The `[{"name": ..., "template": ...}]` form of `chat_template`.
fn named_list(v: &Value, path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(field_err(
            path,
            "chat_template",
            "expected a string or a list of {\"name\", \"template\"} objects",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let name = item.get("name").and_then(Value::as_str);
            let template = item.get("template").and_then(Value::as_str);
            match (name, template) {
                (Some(n), Some(t)) => Ok((n.to_owned(), t.to_owned())),
                _ => Err(field_err(
                    path,
                    &format!("chat_template[{i}]"),
                    "each entry needs a string \"name\" and a string \"template\"",
                )),
            }
        })
        .collect()
}

/// A special token given as a string or as an `AddedToken` object
/// (`{"content": ..., "__type": "AddedToken", ...}`); `null` is no token.
fn token_text(v: &Value, path: &Path, field: &str) -> Result<Option<String>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Object(m) => match m.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(field_err(
                path,
                field,
                "an AddedToken object needs a string \"content\"",
            )),
        },
        _ => Err(field_err(
            path,
            field,
            "expected a string, an AddedToken object or null",
        )),
    }
}

fn token_list(v: &Value, path: &Path, field: &str) -> Result<Vec<String>, ConfigError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(t) = token_text(item, path, &format!("{field}[{i}]"))? {
                    out.push(t);
                }
            }
            Ok(out)
        }
        _ => Err(field_err(path, field, "expected a list of tokens")),
    }
}

fn added_token(v: &Value, path: &Path, field: &str) -> Result<AddedToken, ConfigError> {
    let Value::Object(m) = v else {
        return Err(field_err(path, field, "expected an AddedToken object"));
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(field_err(
                path,
                field,
                "an AddedToken needs a string \"content\"",
            ))
        }
    };
    let flag = |k: &str, default: bool| m.get(k).and_then(Value::as_bool).unwrap_or(default);
    Ok(AddedToken {
        content,
        special: flag("special", false),
        lstrip: flag("lstrip", false),
        rstrip: flag("rstrip", false),
        normalized: flag("normalized", true),
        single_word: flag("single_word", false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf_files::write_for_test as write;

    #[test]
    fn reads_tokens_in_both_forms_and_the_decoder() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "tokenizer_config.json",
            r#"{
              "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
              "eos_token": "</s>", "pad_token": null, "unk_token": "<unk>",
              "added_tokens_decoder": {"2": {"content": "</s>", "special": true}, "7": {"content": "x", "special": false}},
              "model_max_length": 1000000000000000019884624838656,
              "chat_template": "{{ bos_token }}"
            }"#,
        );
        let c = TokenizerConfig::load(d.path()).unwrap();
        assert_eq!(c.bos_token(), Some("<s>"));
        assert_eq!(c.eos_token(), Some("</s>"));
        assert_eq!(c.pad_token(), None);
        assert_eq!(c.unk_token(), Some("<unk>"));
        assert_eq!(c.model_max_length, None);
        assert!(c.added_tokens_decoder[&2].special);
        assert_eq!(c.all_special_tokens(), ["<s>", "</s>", "<unk>"]);
        assert_eq!(c.select_chat_template(None).unwrap(), "{{ bos_token }}");
        let vars = c.template_variables();
        assert_eq!(vars.get("bos_token"), Some(&Value::String("<s>".into())));
        assert!(!vars.contains_key("pad_token"));
    }

    #[test]
    fn chat_template_jinja_wins_and_special_tokens_map_overrides() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "tokenizer_config.json",
            r#"{"chat_template": "old", "eos_token": "a", "model_max_length": 2048}"#,
        );
        write(d.path(), "chat_template.jinja", "new");
        write(
            d.path(),
            "special_tokens_map.json",
            r#"{"eos_token": {"content": "b"}}"#,
        );
        let c = TokenizerConfig::load(d.path()).unwrap();
        assert_eq!(c.select_chat_template(None).unwrap(), "new");
        assert_eq!(c.eos_token(), Some("b"));
        assert_eq!(c.model_max_length, Some(2048));
    }

    #[test]
    fn named_templates_pick_default_or_the_requested_one() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}"#,
        );
        let c = TokenizerConfig::load(d.path()).unwrap();
        assert_eq!(c.select_chat_template(None).unwrap(), "D");
        assert_eq!(c.select_chat_template(Some("tool_use")).unwrap(), "T");
        assert_eq!(c.select_chat_template(Some("{{ 1 }}")).unwrap(), "{{ 1 }}");

        write(
            d.path(),
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "a", "template": "A"}]}"#,
        );
        let c = TokenizerConfig::load(d.path()).unwrap();
        let err = c.select_chat_template(None).unwrap_err();
        assert!(err.contains("none is named \"default\""), "{err}");
    }

    #[test]
    fn additional_templates_and_processor_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "chat_template.jinja", "D");
        write(d.path(), "additional_chat_templates/rag.jinja", "R");
        let c = TokenizerConfig::load(d.path()).unwrap();
        assert_eq!(c.select_chat_template(None).unwrap(), "D");
        assert_eq!(c.select_chat_template(Some("rag")).unwrap(), "R");

        let e = tempfile::tempdir().unwrap();
        write(e.path(), "chat_template.json", r#"{"chat_template": "P"}"#);
        let c = TokenizerConfig::load(e.path()).unwrap();
        assert_eq!(c.select_chat_template(None).unwrap(), "P");
    }

    #[test]
    fn missing_template_says_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let c = TokenizerConfig::load(d.path()).unwrap();
        let err = c.select_chat_template(None).unwrap_err();
        assert!(err.contains("custom_chat_template"), "{err}");
    }

    #[test]
    fn json_errors_name_file_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "tokenizer_config.json",
            "{\n  \"eos_token\": ,\n}",
        );
        let err = TokenizerConfig::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("tokenizer_config.json:2:16"), "{err}");
        write(d.path(), "tokenizer_config.json", r#"{"eos_token": 5}"#);
        let err = TokenizerConfig::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("field eos_token"), "{err}");
    }
}
