//! # API keys (`key.json`)
//!
//! Remote backends need credentials. They come from a `key.json` file that
//! maps a *key name* (the section a backend's plugin asks for in its
//! manifest, `Capabilities::key_name`, e.g. `openai`) to an object with
//! `api_key` and optional fields (`organisation`, `base_url`, ...), the
//! format clemcore uses:
//!
//! ```json
//! {"openai": {"api_key": "sk-...", "organisation": "org-..."},
//!  "openai_compatible": {"api_key": "EMPTY", "base_url": "http://localhost:8000/v1"}}
//! ```
//!
//! Principal items:
//! - [`KeyStore`]: the first `key.json` found ([`search_paths`]:
//!   `./key.json`, then `~/.clemcore/key.json`, then
//!   `$XDG_CONFIG_HOME/clemhost/key.json` or `~/.config/clemhost/key.json`),
//!   with environment fallbacks ([`env_vars_for`]: `OPENAI_API_KEY`,
//!   `HF_TOKEN`, ...) for sections the file does not have.
//! - [`KeyStore::credentials`]: the section handed to a plugin;
//!   [`KeyStore::require`]: the same, or an error that says which files were
//!   searched and which variable would also work.
//! - [`mask`]: how a secret is shown (`sk-a...wxyz`), exactly as clemcore's
//!   `clem list keys` shows it.
//!
//! Secrets never appear in logs, error messages or command output: the
//! `Debug` form of [`KeyStore`] lists section names only, and everything
//! that prints a key goes through [`mask`].

use crate::error::Error;
use crate::registry::locate::element_position;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// The file name searched for.
pub const KEY_FILE: &str = "key.json";

/// The environment variables read, in order, when `key.json` has no section
/// for a key name (or the section has no `api_key`).
pub const ENV_FALLBACKS: &[(&str, &[&str])] = &[
    ("openai", &["OPENAI_API_KEY"]),
    ("anthropic", &["ANTHROPIC_API_KEY"]),
    ("mistral", &["MISTRAL_API_KEY"]),
    ("cohere", &["CO_API_KEY"]),
    ("google", &["GEMINI_API_KEY", "GOOGLE_API_KEY"]),
    ("openrouter", &["OPENROUTER_API_KEY"]),
    ("huggingface", &["HF_TOKEN"]),
];

/// The optional OpenAI organisation variable (read with `OPENAI_API_KEY`).
pub const OPENAI_ORG_VAR: &str = "OPENAI_ORG_ID";

/// The environment variables that can stand in for a key section.
pub fn env_vars_for(key_name: &str) -> &'static [&'static str] {
    ENV_FALLBACKS
        .iter()
        .find(|(name, _)| *name == key_name)
        .map_or(&[], |(_, vars)| vars)
}

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
    /// A needed key is absent.
    #[error("{0}")]
    Missing(String),
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::msg(e.to_string())
    }
}

/// The key files searched, in order: `./key.json` (absolute),
/// `~/.clemcore/key.json` (so clemcore users' keys work), then
/// `$XDG_CONFIG_HOME/clemhost/key.json` or `~/.config/clemhost/key.json`.
pub fn search_paths() -> Vec<PathBuf> {
    let mut paths = vec![std::path::absolute(KEY_FILE).unwrap_or_else(|_| PathBuf::from(KEY_FILE))];
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    if let Some(home) = &home {
        paths.push(home.join(".clemcore").join(KEY_FILE));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    if let Some(config) = config {
        paths.push(config.join("clemhost").join(KEY_FILE));
    }
    paths
}

/// Shows a secret as clemcore's `clem list keys` does: `[MISSING]` when
/// blank, `****` and the last 2 characters when it has at most 8, otherwise
/// the first 4, `...` and the last 4.
pub fn mask(secret: &str) -> String {
    if secret.trim().is_empty() {
        return "[MISSING]".into();
    }
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        let tail: String = chars[chars.len().saturating_sub(2)..].iter().collect();
        format!("****{tail}")
    } else {
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}...{tail}")
    }
}

/// Whether a section field holds a secret (and is masked when shown):
/// `api_key`, and any field whose name mentions a key, secret, token or
/// password.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["key", "secret", "token", "password"]
        .iter()
        .any(|w| n.contains(w))
}

/// Where a key section's secret came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// The section of the key file.
    File(PathBuf),
    /// The key file's section, with `api_key` from an environment variable.
    FileAndEnv(PathBuf, &'static str),
    /// An environment variable alone.
    Env(&'static str),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::File(p) => write!(f, "{}", p.display()),
            CredentialSource::FileAndEnv(p, var) => {
                write!(f, "{} (api_key from ${var})", p.display())
            }
            CredentialSource::Env(var) => write!(f, "${var}"),
        }
    }
}

/// One section as `clemhost keys list` shows it (secrets masked).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskedSection {
    /// The key name (`openai`, ...).
    pub name: String,
    /// `api_key` is a non-blank string.
    pub active: bool,
    /// The fields, sorted, with secrets masked.
    pub fields: Map<String, Value>,
    /// Where it came from.
    pub source: CredentialSource,
}

/// The key file in use (if any) and the environment fallbacks.
#[derive(Clone, Default)]
pub struct KeyStore {
    file: Option<PathBuf>,
    searched: Vec<PathBuf>,
    sections: Map<String, Value>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values: they hold secrets.
        f.debug_struct("KeyStore")
            .field("file", &self.file)
            .field("sections", &self.sections.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn env_value(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn has_api_key(section: &Map<String, Value>) -> bool {
    section
        .get("api_key")
        .and_then(Value::as_str)
        .is_some_and(|k| !k.trim().is_empty())
}

impl KeyStore {
    /// Reads the first key file of [`search_paths`] that exists. A file that
    /// exists but is malformed is an error with its path, line and column
    /// (clemcore would silently move on to the next file). No file at all is
    /// fine: the store is empty and only environment variables count.
    pub fn load() -> crate::Result<KeyStore> {
        Self::load_from(search_paths()).map_err(Error::from)
    }

    /// [`KeyStore::load`] over explicit candidate files, with the typed error.
    pub fn load_from(candidates: Vec<PathBuf>) -> Result<KeyStore, KeyError> {
        for path in &candidates {
            if path.is_file() {
                let sections = read_key_file(path)?;
                tracing::debug!(
                    "keys: using {} ({} sections)",
                    path.display(),
                    sections.len()
                );
                return Ok(KeyStore {
                    file: Some(path.clone()),
                    searched: candidates.clone(),
                    sections,
                });
            }
        }
        tracing::debug!("keys: no key file found; only environment variables count");
        Ok(KeyStore {
            file: None,
            searched: candidates,
            sections: Map::new(),
        })
    }

    /// A store from sections in memory (for tests and callers that build one).
    pub fn from_sections(file: Option<PathBuf>, sections: Map<String, Value>) -> KeyStore {
        KeyStore {
            searched: file.iter().cloned().collect(),
            file,
            sections,
        }
    }

    /// The key file in use, if one was found.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The files that were searched, in order.
    pub fn searched(&self) -> &[PathBuf] {
        &self.searched
    }

    /// The section names of the key file, in file order.
    pub fn section_names(&self) -> Vec<&str> {
        self.sections.keys().map(String::as_str).collect()
    }

    /// The credentials for `key_name`, as they go to the plugin: the key
    /// file's section (with `organization` also given as `organisation`,
    /// and a missing, `null` or blank `api_key` taken from the environment
    /// when a variable is set), or, without a section,
    /// `{"api_key": <value of the first set variable>}`.
    pub fn credentials(&self, key_name: &str) -> Option<Map<String, Value>> {
        self.credentials_with_source(key_name).map(|(c, _)| c)
    }

    /// Where [`KeyStore::credentials`] would take them from.
    pub fn source(&self, key_name: &str) -> Option<CredentialSource> {
        self.credentials_with_source(key_name).map(|(_, s)| s)
    }

    fn env_key(key_name: &str) -> Option<(&'static str, String)> {
        env_vars_for(key_name)
            .iter()
            .find_map(|var| env_value(var).map(|v| (*var, v)))
    }

    fn credentials_with_source(
        &self,
        key_name: &str,
    ) -> Option<(Map<String, Value>, CredentialSource)> {
        if let (Some(section), Some(file)) = (
            self.sections.get(key_name).and_then(Value::as_object),
            &self.file,
        ) {
            let mut creds = section.clone();
            if !creds.contains_key("organisation") {
                if let Some(org) = creds.get("organization").cloned() {
                    creds.insert("organisation".into(), org);
                }
            }
            let mut source = CredentialSource::File(file.clone());
            if !has_api_key(&creds) {
                if let Some((var, value)) = Self::env_key(key_name) {
                    creds.insert("api_key".into(), Value::String(value));
                    source = CredentialSource::FileAndEnv(file.clone(), var);
                }
            }
            return Some((creds, source));
        }
        let (var, value) = Self::env_key(key_name)?;
        let mut creds = Map::new();
        creds.insert("api_key".into(), Value::String(value));
        if key_name == "openai" {
            if let Some(org) = env_value(OPENAI_ORG_VAR) {
                creds.insert("organisation".into(), Value::String(org));
            }
        }
        Some((creds, CredentialSource::Env(var)))
    }

    /// Whether there are credentials for `key_name` (a section or a
    /// variable); see [`KeyStore::has_api_key`] for the secret itself.
    pub fn has_key(&self, key_name: &str) -> bool {
        self.credentials(key_name).is_some()
    }

    /// Whether `key_name` has a usable (non-blank) `api_key`.
    pub fn has_api_key(&self, key_name: &str) -> bool {
        self.credentials(key_name).is_some_and(|c| has_api_key(&c))
    }

    /// The credentials for `key_name`, or an error naming the files
    /// searched and the environment variable that would also work. As in
    /// clemcore, the section only has to exist: whether its fields suffice
    /// (a non-blank `api_key`, a `base_url`) is for the plugin to say.
    pub fn require(&self, key_name: &str) -> crate::Result<Map<String, Value>> {
        self.require_for(key_name, key_name).map_err(Error::from)
    }

    /// [`KeyStore::require`] for a backend whose key section has another name
    /// (e.g. backend `huggingface_local` reads section `huggingface`).
    pub fn require_for(
        &self,
        backend: &str,
        key_name: &str,
    ) -> Result<Map<String, Value>, KeyError> {
        if let Some(creds) = self.credentials(key_name) {
            return Ok(creds);
        }
        let vars = env_vars_for(key_name);
        let env_hint = match vars {
            [] => String::new(),
            [one] => format!(", or set the environment variable {one}"),
            many => format!(
                ", or set one of the environment variables {}",
                many.join(", ")
            ),
        };
        let searched: Vec<String> = self
            .searched
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let used = match &self.file {
            Some(f) => format!(
                " (the one in use is {}, and has no \"{key_name}\" section)",
                f.display()
            ),
            None => " (none of them exists)".to_string(),
        };
        // A self-hosted server is reached through base_url; its api_key is optional.
        let example = if key_name == "openai_compatible" {
            format!("{{\"{key_name}\": {{\"base_url\": \"http://HOST:PORT/v1\", \"api_key\": \"...\"}}}}")
        } else {
            format!("{{\"{key_name}\": {{\"api_key\": \"...\"}}}}")
        };
        let message = format!(
            "backend '{backend}' needs a key: no \"{key_name}\" section in a key file; searched {}{used}. Add {example} to {}{env_hint}; see key.json.example",
            searched.join(", "),
            self.file
                .as_ref()
                .or(self.searched.first())
                .map_or_else(|| KEY_FILE.to_string(), |p| p.display().to_string()),
        );
        Err(KeyError::Missing(message))
    }

    /// The credentials a backend's plugin gets, decided by its manifest:
    /// nothing when it names no key section; the section (or an error, see
    /// [`KeyStore::require_for`]) when it requires one or the entry sets
    /// `model_config.requires_api_key: true` (gated HuggingFace models);
    /// otherwise the section if there is one.
    pub fn for_backend(
        &self,
        backend: &str,
        capabilities: &clemhost_plugin_sdk::Capabilities,
        spec: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, KeyError> {
        let Some(key_name) = capabilities.key_name.as_deref() else {
            return Ok(None);
        };
        if capabilities.requires_key || entry_requires_key(spec) {
            self.require_for(backend, key_name).map(Some)
        } else {
            Ok(self.credentials(key_name))
        }
    }

    /// Every key name with credentials (the file's sections, then the
    /// environment fallbacks the file lacks), secrets masked.
    pub fn masked(&self) -> Vec<MaskedSection> {
        let mut names: Vec<String> = self.sections.keys().cloned().collect();
        for (name, _) in ENV_FALLBACKS {
            if !names.iter().any(|n| n == name) && Self::env_key(name).is_some() {
                names.push((*name).to_string());
            }
        }
        names.sort();
        names
            .into_iter()
            .filter_map(|name| {
                let (creds, source) = match self.credentials_with_source(&name) {
                    Some(found) => found,
                    // A section that is not an object (never loaded that way).
                    None => return None,
                };
                let mut fields: Vec<(String, Value)> = creds.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                let active = fields.iter().any(|(k, v)| {
                    k == "api_key" && v.as_str().is_some_and(|s| !s.trim().is_empty())
                });
                let fields = fields
                    .into_iter()
                    .map(|(k, v)| {
                        let shown = if is_secret_field(&k) {
                            Value::String(match &v {
                                Value::String(s) => mask(s),
                                // clemcore shows a non-string api_key as missing.
                                _ if k == "api_key" => "[MISSING]".into(),
                                _ => "[HIDDEN]".into(),
                            })
                        } else {
                            v
                        };
                        (k, shown)
                    })
                    .collect();
                Some(MaskedSection {
                    name,
                    active,
                    fields,
                    source,
                })
            })
            .collect()
    }
}

/// Whether a registry entry asks for a key itself
/// (a true `model_config.requires_api_key`, used by gated HuggingFace models).
pub fn entry_requires_key(spec: &Map<String, Value>) -> bool {
    spec.get("model_config")
        .and_then(|c| c.get("requires_api_key"))
        .is_some_and(clemhost_pyfacts::truth::truthy)
}

/// serde_json's description of a syntax error without its position. Its
/// syntax messages are fixed phrases (they never quote the text, which may
/// hold a secret); anything else is reduced to its category.
fn syntax_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => {
            let full = e.to_string();
            match full.rfind(" at line ") {
                Some(cut) => full[..cut].to_string(),
                None => full,
            }
        }
        Category::Io => "it could not be read".into(),
        Category::Data => "it holds data of the wrong type".into(),
    }
}

/// Reads and checks one key file (its text never goes into an error).
fn read_key_file(path: &Path) -> Result<Map<String, Value>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| KeyError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        problem: syntax_problem(&e),
    })?;
    let Value::Object(sections) = value else {
        return Err(KeyError::NotObject {
            path: path.to_path_buf(),
            found: clemhost_pyfacts::json::kind_of(&value),
        });
    };
    for (index, (name, section)) in sections.iter().enumerate() {
        if !section.is_object() {
            let location = match element_position(&text, index) {
                Some(p) => format!("{}:{p}", path.display()),
                None => path.display().to_string(),
            };
            return Err(KeyError::SectionNotObject {
                location,
                name: name.clone(),
                found: clemhost_pyfacts::json::kind_of(section),
            });
        }
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_like_clemcore() {
        assert_eq!(mask(""), "[MISSING]");
        assert_eq!(mask("   "), "[MISSING]");
        assert_eq!(mask("a"), "****a");
        assert_eq!(mask("abcdefgh"), "****gh");
        assert_eq!(mask("abcdefghi"), "abcd...fghi");
        assert_eq!(mask("sk-proj-0123456789"), "sk-p...6789");
        assert_eq!(mask("ключ-секрет-42"), "ключ...т-42");
    }

    #[test]
    fn organization_is_also_organisation() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("/k/key.json")),
            json!({"openai": {"api_key": "sk-x", "organization": "org-1"}})
                .as_object()
                .cloned()
                .expect("object"),
        );
        let c = store.credentials("openai").expect("openai section");
        assert_eq!(c["organisation"], json!("org-1"));
        assert_eq!(c["organization"], json!("org-1"));
        assert!(
            store.credentials("anthropic").is_none() || std::env::var("ANTHROPIC_API_KEY").is_ok()
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("key.json")),
            json!({"openai": {"api_key": "sk-very-secret-value"}})
                .as_object()
                .cloned()
                .expect("object"),
        );
        let shown = format!("{store:?}");
        assert!(shown.contains("openai"));
        assert!(!shown.contains("sk-very-secret-value"));
        let listed = format!("{:?}", store.masked());
        assert!(!listed.contains("sk-very-secret-value"), "{listed}");
        assert!(listed.contains("sk-v...alue"), "{listed}");
    }

    #[test]
    fn missing_key_names_files_and_variable() {
        let store = KeyStore::load_from(vec![PathBuf::from("/nonexistent/a/key.json")])
            .expect("no file is fine");
        let e = store.require_for("mistral", "mistral");
        if std::env::var("MISTRAL_API_KEY").is_ok() {
            return; // the developer's own key is set: nothing to check here
        }
        let text = e.expect_err("no key").to_string();
        assert!(text.contains("backend 'mistral'"), "{text}");
        assert!(text.contains("/nonexistent/a/key.json"), "{text}");
        assert!(text.contains("MISTRAL_API_KEY"), "{text}");
    }

    fn caps(key_name: Option<&str>, requires_key: bool) -> clemhost_plugin_sdk::Capabilities {
        clemhost_plugin_sdk::Capabilities {
            key_name: key_name.map(str::to_string),
            requires_key,
            ..Default::default()
        }
    }

    #[test]
    fn the_manifest_decides_what_a_backend_gets() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("/k/key.json")),
            json!({"huggingface": {"api_key": "hf_x"}, "slurk": {"api_key": 7}})
                .as_object()
                .cloned()
                .expect("object"),
        );
        let plain = json!({"model_name": "m"})
            .as_object()
            .cloned()
            .expect("object");
        let gated = json!({"model_name": "g", "model_config": {"requires_api_key": true}})
            .as_object()
            .cloned()
            .expect("object");
        // No key section in the manifest: nothing, whatever the file holds.
        assert_eq!(
            store
                .for_backend("echo", &caps(None, false), &plain)
                .expect("ok"),
            None
        );
        // Optional section: handed over when present.
        let got = store
            .for_backend(
                "huggingface_local",
                &caps(Some("huggingface"), false),
                &plain,
            )
            .expect("ok");
        assert_eq!(got.expect("section")["api_key"], json!("hf_x"));
        // Required (by the plugin or by the entry) and absent: an error.
        let empty = KeyStore::from_sections(None, Map::new());
        if std::env::var("HF_TOKEN").is_err() {
            let e = empty
                .for_backend(
                    "huggingface_local",
                    &caps(Some("huggingface"), false),
                    &gated,
                )
                .expect_err("gated model without a token");
            assert!(e.to_string().contains("HF_TOKEN"), "{e}");
            assert_eq!(
                empty
                    .for_backend(
                        "huggingface_local",
                        &caps(Some("huggingface"), false),
                        &plain
                    )
                    .expect("optional"),
                None
            );
        }
        // A non-string api_key is shown as missing, as clemcore shows it.
        let slurk = store
            .masked()
            .into_iter()
            .find(|s| s.name == "slurk")
            .expect("slurk");
        assert_eq!(slurk.fields["api_key"], json!("[MISSING]"));
        assert!(!slurk.active);
    }

    #[test]
    fn secret_fields() {
        assert!(is_secret_field("api_key"));
        assert!(is_secret_field("admin_token"));
        assert!(!is_secret_field("base_url"));
        assert!(!is_secret_field("organisation"));
    }
}
