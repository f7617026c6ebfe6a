//! Which chat template an entry's model is rendered with, decided once for
//! the two local backends and the host's `template render` and `doctor`.
//!
//! clemcore's rules, from `model_config`:
//! - **llamacpp**: `premade_chat_template: true` takes the GGUF's
//!   `tokenizer.chat_template`, and `custom_chat_template` when the file has
//!   none; `false` takes `custom_chat_template`, which must then be given.
//! - **huggingface_local**: `custom_chat_template` when
//!   `premade_chat_template` is false and a custom template is given; the
//!   tokenizer's template otherwise.

/// Which backend's rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateRules {
    /// The llamacpp backend (GGUF metadata).
    Llamacpp,
    /// The huggingface_local backend (the tokenizer's files).
    Transformers,
}

/// Where the chosen template came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// `model_config.custom_chat_template`.
    Custom,
    /// The model's own template (GGUF metadata or tokenizer files).
    Model,
}

/// A chosen template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenTemplate {
    /// The Jinja source.
    pub source: String,
    /// Where it came from.
    pub origin: TemplateOrigin,
}

/// Why no template could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError<E> {
    /// `premade_chat_template` is false and no custom template is given (llamacpp).
    #[error("premade_chat_template is false and model_config.custom_chat_template is not set; set one of them")]
    NoCustomTemplate,
    /// The model has no template of its own and no custom one is given.
    #[error("premade_chat_template is true but the model has no chat template of its own; set model_config.custom_chat_template")]
    NoModelTemplate,
    /// The model's template could not be read.
    #[error("{0}")]
    Model(E),
}

/// Chooses the template by the rules above. `model_template` reads the
/// model's own template (`Ok(None)`: it has none); it is called only when
/// that template is the one the rules pick.
pub fn choose_template<E>(
    rules: TemplateRules,
    premade: bool,
    custom: Option<&str>,
    model_template: impl FnOnce() -> Result<Option<String>, E>,
) -> Result<ChosenTemplate, ChoiceError<E>> {
    let custom_choice = |s: &str| ChosenTemplate {
        source: s.to_owned(),
        origin: TemplateOrigin::Custom,
    };
    let use_custom_first = match rules {
        TemplateRules::Llamacpp if !premade => {
            return custom
                .map(custom_choice)
                .ok_or(ChoiceError::NoCustomTemplate)
        }
        TemplateRules::Llamacpp => false,
        TemplateRules::Transformers => !premade && custom.is_some(),
    };
    if use_custom_first {
        return Ok(custom_choice(custom.unwrap_or_default()));
    }
    match model_template().map_err(ChoiceError::Model)? {
        Some(t) if !t.is_empty() => Ok(ChosenTemplate {
            source: t,
            origin: TemplateOrigin::Model,
        }),
        _ => match (rules, custom) {
            (TemplateRules::Llamacpp, Some(c)) => Ok(custom_choice(c)),
            _ => Err(ChoiceError::NoModelTemplate),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn pick(
        rules: TemplateRules,
        premade: bool,
        custom: Option<&str>,
        model: Option<&str>,
    ) -> Result<(String, TemplateOrigin), String> {
        let mut asked = false;
        let r = choose_template(rules, premade, custom, || {
            asked = true;
            Ok::<_, Infallible>(model.map(str::to_owned))
        })
        .map(|c| (c.source, c.origin))
        .map_err(|e| e.to_string());
        if let Ok((_, TemplateOrigin::Custom)) = &r {
            if rules == TemplateRules::Transformers || !premade {
                assert!(
                    !asked,
                    "the model's template is not read when the custom one is used"
                );
            }
        }
        r
    }

    #[test]
    fn llamacpp_rules() {
        use TemplateOrigin::*;
        let r = TemplateRules::Llamacpp;
        assert_eq!(pick(r, true, Some("C"), Some("M")), Ok(("M".into(), Model)));
        assert_eq!(pick(r, true, Some("C"), None), Ok(("C".into(), Custom)));
        assert!(pick(r, true, None, None)
            .unwrap_err()
            .contains("custom_chat_template"));
        assert_eq!(
            pick(r, false, Some("C"), Some("M")),
            Ok(("C".into(), Custom))
        );
        assert!(pick(r, false, None, Some("M"))
            .unwrap_err()
            .contains("premade_chat_template is false"));
    }

    #[test]
    fn transformers_rules() {
        use TemplateOrigin::*;
        let r = TemplateRules::Transformers;
        assert_eq!(pick(r, true, Some("C"), Some("M")), Ok(("M".into(), Model)));
        assert_eq!(
            pick(r, false, Some("C"), Some("M")),
            Ok(("C".into(), Custom))
        );
        assert_eq!(pick(r, false, None, Some("M")), Ok(("M".into(), Model)));
        assert!(
            pick(r, true, Some("C"), None).is_err(),
            "no fallback to the custom template"
        );
    }
}
