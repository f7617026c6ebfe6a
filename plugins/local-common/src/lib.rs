//! # clemhost-local-common
//!
//! What clemhost's local-inference plugins (`llamacpp`, `huggingface_local`)
//! share, each piece reproducing what clemcore and transformers do:
//!
//! - [`template`]: [`ChatTemplate`](template::ChatTemplate) compiles a
//!   HuggingFace chat template and renders a
//!   [`RenderInput`](template::RenderInput) exactly as transformers'
//!   `apply_chat_template(..., tokenize=False)` does;
//!   [`TemplateError::Raised`](template::TemplateError::Raised) carries the
//!   template's own `raise_exception` message.
//! - [`template_sandbox`]: inside clemhost, templates render in a worker
//!   process with a memory cap and a deadline.
//! - [`template_choice`]: which template an entry is rendered with
//!   (custom or the model's own), by clemcore's rules for each backend.
//! - [`hf_files`]: a model directory's `tokenizer_config.json` (chat
//!   template, special tokens, added tokens, `model_max_length`),
//!   `generation_config.json` and `config.json`, one reader each.
//! - [`messages`]: clemcore's `ensure_alternating_roles` preprocessing
//!   (re-exported from `clemhost-pyfacts`).
//! - [`context`]: context-size parsing and resolution, and the context check
//!   with clemcore's `context_exceeded` error.
//! - [`clean`]: the output cleaning steps (prompt removal, split prefix, pad
//!   purge, `eos_to_cull`, chain-of-thought split), with the fix for
//!   clemcore bug #118.
//! - [`hub`]: the HF environment ([`HubSettings`](hub::HubSettings)); with the
//!   feature `hub`, `huggingface_id` → files, from a local directory or the
//!   Hub through the standard HF cache.
//! - [`gguf`]: a GGUF file's metadata (chat template, BOS/EOS token texts).
//! - [`model_facts`]: what a local model says about itself (template,
//!   special tokens and ids, EOS ids, context size), from a GGUF file or a
//!   model directory; `check-hf` and `doctor` read it.
//! - [`gguf_file`]: which GGUF file an entry means (Hub repos need the
//!   feature `hub`).
//! - [`pystr`]: the Python string behaviour the others need (`strip`,
//!   `rsplit`, `strftime`).
//!
//! ```
//! use clemhost_local_common::{messages, template::{ChatTemplate, RenderInput}};
//! use clemhost_plugin_sdk::Message;
//!
//! let conversation = messages::ensure_alternating_roles(&[
//!     Message::new("user", "Rules."),
//!     Message::new("user", "Go."),
//! ])?;
//! let template = ChatTemplate::new(
//!     "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}",
//! )?;
//! let mut input = RenderInput::from_messages(&conversation);
//! input.bos_token = Some("<s>".into());
//! assert_eq!(template.render(&input)?, "<s>[user] Rules.\n\nGo.\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod clean;
pub mod context;
pub mod gguf;
pub mod gguf_file;
pub mod hf_files;
pub mod hub;
/// clemcore's `ensure_alternating_roles` (it lives in `clemhost-pyfacts`,
/// shared with the host and the remote backends).
pub use clemhost_pyfacts::messages;
pub mod model_facts;
mod pyjson;
pub mod pystr;
pub mod template;
pub mod template_choice;
pub mod template_sandbox;
