//! From a conversation to a prompt string: the chat template (from the GGUF
//! or the registry) with the model's BOS/EOS strings, rendered by the shared
//! minijinja code of `clemhost-local-common` with a generation prompt.
//! Message preprocessing, the context check and the answer cleaning are the
//! shared ones too (`messages`, `context`, `clean` of that crate).

use clemhost_local_common::template::{messages_to_values, ChatTemplate, RenderInput};
use clemhost_plugin_sdk::{BackendError, Message};

/// The template and the special-token strings it may use.
#[derive(Debug)]
pub struct PromptBuilder {
    template: ChatTemplate,
    bos: Option<String>,
    eos: Option<String>,
}

impl PromptBuilder {
    /// Compiles a template; `source_name` says where it came from, for errors.
    pub fn new(
        model: &str,
        source: &str,
        source_name: &str,
        bos: Option<String>,
        eos: Option<String>,
    ) -> Result<PromptBuilder, BackendError> {
        let template = ChatTemplate::new(source).map_err(|e| {
            BackendError::invalid_request(format!(
                "model '{model}': the chat template from {source_name} does not compile: {e}"
            ))
        })?;
        Ok(PromptBuilder { template, bos, eos })
    }

    /// Renders a conversation (already preprocessed) with an assistant turn opened.
    pub fn render(&self, model: &str, messages: &[Message]) -> Result<String, BackendError> {
        let input = RenderInput {
            add_generation_prompt: true,
            bos_token: self.bos.clone(),
            eos_token: self.eos.clone(),
            ..RenderInput::new(messages_to_values(messages))
        };
        self.template.render(&input).map_err(|e| {
            BackendError::invalid_request(format!(
                "model '{model}': the chat template refused the conversation: {e}"
            ))
        })
    }
}
