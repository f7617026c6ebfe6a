//! # API keys (`key.json`)
//!
//! Remote backends need credentials. They come from a `key.json` file that
//! maps a *key name* (a section; the one a backend's plugin names in its
//! manifest, `Capabilities::key_name`, e.g. `openai`, or the one a registry
//! entry names with a top-level `"key_name"`) to an object with `api_key`
//! and optional fields (`organisation`, `base_url`, ...), the format
//! clemcore uses:
//!
//! ```json
//! {"openai": {"api_key": "sk-...", "organisation": "org-..."},
//!  "openai_compatible": {"api_key": "EMPTY", "base_url": "http://localhost:8000/v1"}}
//! ```
//!
//! The host knows no backend by name: which section an entry reads, which
//! environment variables stand in for it (`OPENAI_API_KEY`, `HF_TOKEN`, ...)
//! and whether it is required all come from the plugin's manifest and the
//! entry ([`KeyNeed`]).
//!
//! The module, by job:
//! - `store`: [`KeyStore`], the first key file found ([`search_paths`]:
//!   `./key.json`, then `~/.clemcore/key.json`, then
//!   `$XDG_CONFIG_HOME/clemhost/key.json` or `~/.config/clemhost/key.json`),
//!   read and checked.
//! - `credentials`: [`KeyNeed`] and the one key policy
//!   ([`KeyStore::for_entry`]): the section handed to a plugin with its
//!   environment fallbacks, or the error that stops a run before a model
//!   opens, naming the section, the files searched and the variables.
//! - `masking`: how a secret is shown ([`mask`]) and `keys list`'s view
//!   ([`KeyStore::masked`]).
//!
//! Secrets never appear in logs, error messages or command output: the
//! `Debug` form of [`KeyStore`] lists section names only, everything that
//! prints a key goes through [`mask`], and URLs are shown through
//! [`clemhost_plugin_sdk::redact`].

mod credentials;
mod masking;
mod store;

pub use credentials::{credentials_for_model, CredentialSource, KeyNeed};
pub use masking::{is_secret_field, mask, MaskedSection};
pub use store::{search_paths, KeyStore, KEY_FILE};

use crate::error::Error;
use std::path::PathBuf;

/// What can go wrong reading `key.json` or finding a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file exists but could not be read.
    #[error("{path}: cannot read the key file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON. (The message never quotes the file.)
    #[error(
        "{path}:{line}:{column}: the key file is not valid JSON: {problem}; fix it and run again"
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong there (never a piece of the file).
        problem: String,
    },
    /// The top level is not an object.
    #[error("{path}: the key file must be a JSON object like {{\"openai\": {{\"api_key\": \"...\"}}}}, not {found}")]
    NotObject {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        found: &'static str,
    },
    /// A section is not an object.
    #[error("{location}: section \"{name}\" of the key file must be an object like {{\"api_key\": \"...\"}}, not {found}")]
    SectionNotObject {
        /// `path:line:column` of the section.
        location: String,
        /// The key name.
        name: String,
        /// What it is instead.
        found: &'static str,
    },
    /// A registry entry's `key_name` is not a usable section name.
    #[error("model '{model}': \"key_name\" must be a non-empty string naming a key.json section (e.g. \"vllm_node_2\"), not {found}; fix the registry entry")]
    BadKeyName {
        /// The entry's `model_name`.
        model: String,
        /// What it holds instead.
        found: String,
    },
    /// A needed key is absent.
    #[error("{0}")]
    Missing(String),
    /// An environment key was not sent to an address that a key file in the
    /// working directory chose.
    #[error("{file}: section \"{section}\" sets \"{field}\" but no api_key, and this key file is in the working directory, so clemhost does not send ${var} to the address or over the certificate checks it sets (a key file in a cloned repository could send your key anywhere). Put the api_key into that section, or set \"{field}\" in ~/.clemcore/key.json instead")]
    EnvKeyWithheld {
        /// The key file.
        file: PathBuf,
        /// The section.
        section: String,
        /// The address field (`base_url`).
        field: String,
        /// The variable that was not used.
        var: String,
    },
    /// An environment key was not sent over a connection whose certificate
    /// checks a registry entry's `model_config` changed.
    #[error("model '{model}': its registry entry sets \"{field}\" in model_config, so clemhost does not send ${var} over that connection (a registry from a cloned repository could turn certificate checks off, or trust its own certificate, and read your key). Set \"{field}\" in the key section of ~/.clemcore/key.json instead, or write the api_key into the key file you want used with it")]
    EnvKeyWithheldByEntry {
        /// The entry's `model_name`.
        model: String,
        /// The trust field (`insecure_skip_tls_verify`, `ca_cert`).
        field: String,
        /// The variable that was not used.
        var: String,
    },
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::wrap(e)
    }
}
