//! Cleaning a model's raw output into the answer a game sees, step by step
//! as clemcore does it.
//!
//! huggingface_local (on the decoded full sequence, special tokens kept):
//!
//! a. remove every occurrence of the decoded prompt, then strip whitespace;
//! b. `output_split_prefix`: keep what follows its **last** occurrence (no-op
//!    when absent);
//! c. if the text starts or ends with the pad token, remove **every**
//!    occurrence of it (the pad token is usually the EOS string);
//! d. `eos_to_cull`: remove every match of this **regular expression**; no
//!    strip afterwards;
//! e. `cot_output`: remove `cot_start_tag` (literal), split at the regex
//!    `cot_end_tag`: reasoning is the first part, the answer the last part,
//!    or `""` when the tag never occurs.
//!
//! llamacpp (on the completion text only): strip, then split at the last
//! `output_split_prefix` (which must occur), then step d.
//!
//! One deliberate fix: clemcore bug #118. Registry entries often give
//! `eos_to_cull` as a literal special token such as `<|im_end|>`; as a regex
//! its unescaped `|` makes it the alternation `<` or `im_end` or `>`, which
//! deletes every `<` and `>` of the answer. When `eos_to_cull` is such a
//! literal token (it is one of the model's special tokens, or has the
//! `<|...|>` shape), [`OutputCleaner`] removes the literal token instead and
//! logs a warning (once per pattern and process) when it is built.
//!
//! ```
//! use clemhost_local_common::clean::{CleanSettings, OutputCleaner};
//!
//! let cleaner = OutputCleaner::new(
//!     &CleanSettings { eos_to_cull: Some(r"<\|eot_id\|>".into()), ..Default::default() },
//!     &[],
//! )?;
//! let prompt = "<|start_header_id|>user<|end_header_id|>\n\nSay hi<|eot_id|>";
//! let output = format!("{prompt}GREET: Hello Peter, welcome!<|eot_id|>");
//! assert_eq!(cleaner.clean_hf(&output, prompt).text, "GREET: Hello Peter, welcome!");
//! # Ok::<(), clemhost_local_common::clean::CleanError>(())
//! ```

use crate::pystr;
use clemhost_plugin_sdk::{BackendError, ErrorKind};
use regex::Regex;
use serde_json::{Map, Value};

/// A registry setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleanError {
    /// A field that must be a regular expression is not one the `regex`
    /// crate accepts.
    #[error("model_config.{field} is not a valid regular expression ({message}); escape special characters such as | with a backslash")]
    BadRegex {
        /// The registry field (`eos_to_cull`, `cot_end_tag`).
        field: &'static str,
        /// What the regex parser said.
        message: String,
    },
    /// A field has the wrong JSON type or is missing.
    #[error("model_config.{field}: {message}")]
    BadField {
        /// The registry field.
        field: &'static str,
        /// What is wrong and what to write instead.
        message: String,
    },
}

impl From<CleanError> for BackendError {
    fn from(e: CleanError) -> Self {
        BackendError::invalid_request(e.to_string())
    }
}

/// The registry settings that drive cleaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanSettings {
    /// `model_config.eos_to_cull`: a regex removed from the answer.
    pub eos_to_cull: Option<String>,
    /// `model_config.output_split_prefix`.
    pub output_split_prefix: Option<String>,
    /// The tokenizer's pad token (clemcore sets it to the EOS token when the
    /// tokenizer has none).
    pub pad_token: Option<String>,
    /// `model_config.cot_output` is true.
    pub cot_output: bool,
    /// `model_config.cot_start_tag` (literal).
    pub cot_start_tag: Option<String>,
    /// `model_config.cot_end_tag` (regex; required when `cot_output`).
    pub cot_end_tag: Option<String>,
}

impl CleanSettings {
    /// Reads the cleaning fields of a registry entry's `model_config`.
    /// `pad_token` is not a registry field; pass the tokenizer's.
    pub fn from_model_config(
        model_config: &Map<String, Value>,
        pad_token: Option<String>,
    ) -> Result<Self, CleanError> {
        let cot_output = match model_config.get("cot_output") {
            None | Some(Value::Null) => false,
            Some(v) => clemhost_pyfacts::truth::truthy(v),
        };
        Ok(CleanSettings {
            eos_to_cull: opt_string(model_config, "eos_to_cull")?,
            output_split_prefix: opt_string(model_config, "output_split_prefix")?,
            pad_token,
            cot_output,
            cot_start_tag: opt_string(model_config, "cot_start_tag")?,
            cot_end_tag: opt_string(model_config, "cot_end_tag")?,
        })
    }
}

fn opt_string(map: &Map<String, Value>, field: &'static str) -> Result<Option<String>, CleanError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CleanError::BadField {
            field,
            message: format!("expected a string, found {other}"),
        }),
    }
}

/// How `eos_to_cull` is applied.
#[derive(Debug, Clone)]
enum EosCull {
    /// As a regex (clemcore's meaning).
    Regex(Regex),
    /// As a literal token (the #118 fix).
    Literal(String),
}

/// The result of cleaning one output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanedOutput {
    /// The answer. With `cot_output`, the answer part stripped; clemcore
    /// also re-tokenises it and cuts it to `max_tokens` tokens before the
    /// strip, which needs the tokenizer: see [`CleanedOutput::cot_answer_raw`].
    pub text: String,
    /// With `cot_output`: the reasoning part (`cot_content`).
    pub cot_content: Option<String>,
    /// With `cot_output`: the answer before the token cut and strip, for
    /// plugins that apply clemcore's cut (tokenise, keep `max_tokens`,
    /// decode, then [`crate::pystr::strip`]). Note that clemcore tokenises
    /// here with the tokenizer's default special tokens and decodes without
    /// skipping them, so a tokenizer that adds a BOS puts the BOS text in
    /// front of the answer.
    pub cot_answer_raw: Option<String>,
}

/// Applies the cleaning steps of one model (see the module docs).
#[derive(Debug, Clone)]
pub struct OutputCleaner {
    eos: Option<EosCull>,
    split_prefix: Option<String>,
    pad_token: Option<String>,
    cot: Option<(Option<String>, Regex)>,
}

impl OutputCleaner {
    /// Builds a cleaner. `special_tokens` are the model's special token
    /// strings, used to recognise a literal `eos_to_cull` (#118).
    pub fn new(settings: &CleanSettings, special_tokens: &[&str]) -> Result<Self, CleanError> {
        let eos = match &settings.eos_to_cull {
            None => None,
            Some(p) if is_literal_token_pattern(p, special_tokens) => {
                if first_warning_for(p) {
                    log::warn!(
                        "model_config.eos_to_cull {p:?} is a special token, but as a regular \
                         expression its unescaped '|' would delete every '<' and '>' of the \
                         answer (clemcore bug #118); removing the literal token instead. \
                         Escape the bars to silence this warning"
                    );
                }
                Some(EosCull::Literal(p.clone()))
            }
            Some(p) => Some(EosCull::Regex(Regex::new(p).map_err(|e| {
                CleanError::BadRegex {
                    field: "eos_to_cull",
                    message: e.to_string(),
                }
            })?)),
        };
        let cot = if settings.cot_output {
            let end = settings.cot_end_tag.as_deref().ok_or(CleanError::BadField {
                field: "cot_end_tag",
                message: "cot_output is true, so cot_end_tag (the regex that ends the reasoning) is required".into(),
            })?;
            let re = Regex::new(end).map_err(|e| CleanError::BadRegex {
                field: "cot_end_tag",
                message: e.to_string(),
            })?;
            Some((settings.cot_start_tag.clone().filter(|s| !s.is_empty()), re))
        } else {
            None
        };
        Ok(OutputCleaner {
            eos,
            split_prefix: settings.output_split_prefix.clone(),
            pad_token: settings.pad_token.clone(),
            cot,
        })
    }

    /// Whether `eos_to_cull` is applied as a literal token (the #118 fix).
    pub fn culls_literal_token(&self) -> bool {
        matches!(self.eos, Some(EosCull::Literal(_)))
    }

    /// Steps a–e for huggingface_local: `output` is the decoded full
    /// sequence (prompt included), `prompt` the decoded prompt.
    pub fn clean_hf(&self, output: &str, prompt: &str) -> CleanedOutput {
        let mut text = remove_prompt(output, prompt);
        if let Some(prefix) = &self.split_prefix {
            text = split_after_last(&text, prefix).unwrap_or(text);
        }
        if let Some(pad) = &self.pad_token {
            text = purge_pad(&text, pad);
        }
        text = self.cull_eos(&text);
        match &self.cot {
            None => CleanedOutput {
                text,
                ..CleanedOutput::default()
            },
            Some((start, end)) => {
                let (reasoning, answer) = split_cot(&text, start.as_deref(), end);
                CleanedOutput {
                    text: pystr::strip(&answer).to_owned(),
                    cot_content: Some(reasoning),
                    cot_answer_raw: Some(answer),
                }
            }
        }
    }

    /// clemcore's llamacpp cleaning of a completion text: strip, split at
    /// the last `output_split_prefix`, then step d. A configured prefix that
    /// does not occur is an `invalid_response` error (clemcore fails the
    /// episode with an `IndexError` there).
    pub fn clean_llamacpp(&self, completion: &str) -> Result<String, BackendError> {
        let mut text = pystr::strip(completion).to_owned();
        if let Some(prefix) = &self.split_prefix {
            text = split_after_last(&text, prefix).ok_or_else(|| {
                BackendError::new(
                    ErrorKind::InvalidResponse,
                    format!(
                        "the answer does not contain model_config.output_split_prefix {prefix:?}"
                    ),
                )
            })?;
        }
        Ok(self.cull_eos(&text))
    }

    /// Step d alone.
    pub fn cull_eos(&self, text: &str) -> String {
        match &self.eos {
            None => text.to_owned(),
            Some(EosCull::Regex(re)) => re.replace_all(text, "").into_owned(),
            Some(EosCull::Literal(tok)) if tok.is_empty() => text.to_owned(),
            Some(EosCull::Literal(tok)) => text.replace(tok.as_str(), ""),
        }
    }
}

/// Whether the #118 warning for this pattern is yet to be logged in this
/// process (so several models or cleaners with one pattern warn once).
fn first_warning_for(pattern: &str) -> bool {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    // A poisoned lock only means another thread panicked while pushing; the
    // list is still usable.
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.iter().any(|w| w == pattern) {
        false
    } else {
        warned.push(pattern.to_owned());
        true
    }
}

/// Step a: remove every occurrence of the prompt, then strip.
pub fn remove_prompt(output: &str, prompt: &str) -> String {
    let removed = if prompt.is_empty() {
        output.to_owned()
    } else {
        output.replace(prompt, "")
    };
    pystr::strip(&removed).to_owned()
}

/// Step b: the text after the last occurrence of `prefix`, or `None` when it
/// does not occur.
pub fn split_after_last(text: &str, prefix: &str) -> Option<String> {
    if prefix.is_empty() {
        // Python's rsplit("") raises; clemcore's `in` test passes first, so an
        // empty prefix never reaches it meaningfully. Treat it as no-op.
        return Some(text.to_owned());
    }
    text.rfind(prefix)
        .map(|i| text[i + prefix.len()..].to_owned())
}

/// Step c: if the text starts or ends with the pad token, remove all of its
/// occurrences.
pub fn purge_pad(text: &str, pad: &str) -> String {
    if !pad.is_empty() && (text.starts_with(pad) || text.ends_with(pad)) {
        text.replace(pad, "")
    } else {
        text.to_owned()
    }
}

/// Step e: remove the literal start tag, split at the end-tag regex;
/// returns (reasoning, answer), the answer being `""` without a match.
pub fn split_cot(text: &str, start_tag: Option<&str>, end_tag: &Regex) -> (String, String) {
    let text = match start_tag {
        Some(tag) if !tag.is_empty() => text.replace(tag, ""),
        _ => text.to_owned(),
    };
    let parts: Vec<&str> = end_tag.split(&text).collect();
    let reasoning = parts.first().copied().unwrap_or_default().to_owned();
    let answer = if parts.len() >= 2 {
        parts.last().copied().unwrap_or_default().to_owned()
    } else {
        String::new()
    };
    (reasoning, answer)
}

/// Whether a regex source contains a `|` that is not escaped and not inside
/// a character class, i.e. an alternation.
fn has_unescaped_bar(pattern: &str) -> bool {
    let mut escaped = false;
    let mut in_class = false;
    for c in pattern.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' => in_class = true,
            ']' => in_class = false,
            '|' if !in_class => return true,
            _ => {}
        }
    }
    false
}

/// The #118 rule: `eos_to_cull` is meant as a literal token when it has an
/// unescaped `|` and either is one of the model's special tokens or has the
/// `<|name|>` shape with no other regex syntax.
pub fn is_literal_token_pattern(pattern: &str, special_tokens: &[&str]) -> bool {
    if !has_unescaped_bar(pattern) {
        return false;
    }
    if special_tokens.contains(&pattern) {
        return true;
    }
    let Some(inner) = pattern
        .strip_prefix("<|")
        .and_then(|p| p.strip_suffix("|>"))
    else {
        return false;
    };
    !inner.is_empty() && !inner.chars().any(|c| "|\\()[]{}*+?.^$".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaner(settings: CleanSettings) -> OutputCleaner {
        OutputCleaner::new(&settings, &["<|im_end|>", "<eos>|</s>"]).expect("valid settings")
    }

    #[test]
    fn a_prompt_removed_everywhere_then_stripped() {
        assert_eq!(remove_prompt("P  answer P \n", "P"), "answer");
        assert_eq!(remove_prompt("\u{1c} x ", ""), "x");
    }

    #[test]
    fn b_split_prefix_takes_the_last_occurrence() {
        assert_eq!(split_after_last("a::b::c", "::").as_deref(), Some("c"));
        assert_eq!(split_after_last("abc", "::"), None);
        let c = cleaner(CleanSettings {
            output_split_prefix: Some("ANSWER:".into()),
            ..Default::default()
        });
        assert_eq!(c.clean_hf("ANSWER: x ANSWER: y", "").text, " y");
        assert_eq!(c.clean_hf("no prefix here", "").text, "no prefix here");
    }

    #[test]
    fn c_pad_purged_only_at_the_edges() {
        assert_eq!(purge_pad("<pad><pad>hi <pad> there", "<pad>"), "hi  there");
        assert_eq!(purge_pad("hi <pad> there", "<pad>"), "hi <pad> there");
        assert_eq!(purge_pad("hi</s>", "</s>"), "hi");
    }

    #[test]
    fn d_eos_regex_without_final_strip() {
        let c = cleaner(CleanSettings {
            eos_to_cull: Some(r"<\|eot_id\|>".into()),
            ..Default::default()
        });
        assert!(!c.culls_literal_token());
        assert_eq!(
            c.clean_hf("  spaced answer  <|eot_id|>", "").text,
            "spaced answer  "
        );
        // clemcore's observed Llama-3 example.
        let prompt = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nSay hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        let out = format!("{prompt}GREET: Hello Peter, welcome!<|eot_id|>");
        assert_eq!(
            c.clean_hf(&out, prompt).text,
            "GREET: Hello Peter, welcome!"
        );
    }

    #[test]
    fn d_literal_special_token_is_culled_literally() {
        let c = cleaner(CleanSettings {
            eos_to_cull: Some("<|im_end|>".into()),
            ..Default::default()
        });
        assert!(c.culls_literal_token());
        assert_eq!(c.clean_hf("a <b> c<|im_end|>", "").text, "a <b> c");
        // a token-shaped pattern the model does not list is also literal
        assert!(is_literal_token_pattern("<|eot_id|>", &[]));
        // real alternations stay regexes
        assert!(!is_literal_token_pattern("<eos>|</s>", &[]));
        assert!(!is_literal_token_pattern(r"<\|im_end\|>", &[]));
        assert!(!is_literal_token_pattern("[|]", &[]));
        assert!(!is_literal_token_pattern("<|a|>|<|b|>", &[]));
        let alt = cleaner(CleanSettings {
            eos_to_cull: Some("<eos>$|</s>$".into()),
            ..Default::default()
        });
        assert_eq!(alt.cull_eos("x<eos>"), "x");
    }

    #[test]
    fn e_cot_split() {
        let c = cleaner(CleanSettings {
            cot_output: true,
            cot_start_tag: Some("<think>".into()),
            cot_end_tag: Some("</think>".into()),
            ..Default::default()
        });
        let out = c.clean_hf("<think>hmm</think>\n\n Answer ", "");
        assert_eq!(out.cot_content.as_deref(), Some("hmm"));
        assert_eq!(out.text, "Answer");
        assert_eq!(out.cot_answer_raw.as_deref(), Some("\n\n Answer"));
        let none = c.clean_hf("<think>still thinking", "");
        assert_eq!(none.cot_content.as_deref(), Some("still thinking"));
        assert_eq!(none.text, "");
    }

    #[test]
    fn cot_output_needs_an_end_tag() {
        let err = OutputCleaner::new(
            &CleanSettings {
                cot_output: true,
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("cot_end_tag"), "{err}");
    }

    #[test]
    fn bad_regex_names_the_field() {
        let err = OutputCleaner::new(
            &CleanSettings {
                eos_to_cull: Some("(unclosed".into()),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("model_config.eos_to_cull"),
            "{err}"
        );
    }

    #[test]
    fn llamacpp_cleaning() {
        let c = cleaner(CleanSettings {
            eos_to_cull: Some("</s>".into()),
            output_split_prefix: Some("A:".into()),
            ..Default::default()
        });
        assert_eq!(c.clean_llamacpp("  A: one A: two</s> ").unwrap(), " two");
        let e = c.clean_llamacpp("no prefix").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
    }

    #[test]
    fn settings_from_model_config() {
        let mc = serde_json::json!({
            "eos_to_cull": "<\\|eot_id\\|>", "output_split_prefix": "X", "cot_output": true,
            "cot_end_tag": "</think>", "premade_chat_template": true
        });
        let s = CleanSettings::from_model_config(mc.as_object().unwrap(), Some("<pad>".into()))
            .unwrap();
        assert_eq!(s.eos_to_cull.as_deref(), Some("<\\|eot_id\\|>"));
        assert!(s.cot_output);
        let bad = serde_json::json!({"eos_to_cull": 5});
        assert!(CleanSettings::from_model_config(bad.as_object().unwrap(), None).is_err());
    }
}
