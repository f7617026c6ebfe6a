//! What an entry needs from the key files, and the one policy that decides
//! what its plugin gets.

use super::store::KeyStore;
use super::{KeyError, KEY_FILE};
use clemhost_plugin_sdk::Capabilities;
use serde_json::{Map, Value};
use std::fmt;
use std::path::PathBuf;

/// Which key section one registry entry reads, decided by its plugin's
/// manifest and the entry itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyNeed {
    /// The key.json section.
    pub key_name: String,
    /// The model cannot run without the section (the plugin requires it, or
    /// the entry sets the plugin's `key_required_flag`).
    pub required: bool,
    /// The variables that stand in for the section's `api_key`, in order.
    pub env: Vec<String>,
    /// Other fields taken from variables when the section comes from them.
    pub env_fields: Vec<(String, String)>,
    /// The section was named by the entry's `"key_name"`.
    pub named_by_entry: bool,
}

/// The entry's own `"key_name"`, checked.
fn entry_key_name(spec: &Map<String, Value>) -> Result<Option<String>, KeyError> {
    match spec.get("key_name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(other) => Err(KeyError::BadKeyName {
            model: spec
                .get("model_name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            found: other.to_string(),
        }),
    }
}

impl KeyNeed {
    /// What an entry served by a plugin with these capabilities needs:
    /// nothing when neither names a section. An entry's `"key_name"` takes
    /// the place of the plugin's section, and then no environment variable
    /// stands in for it (they belong to the plugin's own section).
    pub fn of(caps: &Capabilities, spec: &Map<String, Value>) -> Result<Option<KeyNeed>, KeyError> {
        let own = entry_key_name(spec)?;
        let Some(key_name) = own.clone().or_else(|| caps.key_name.clone()) else {
            return Ok(None);
        };
        let flagged = caps
            .key_required_flag
            .as_deref()
            .is_some_and(|flag| model_config_flag(spec, flag));
        let named_by_entry = own.is_some();
        Ok(Some(KeyNeed {
            key_name,
            required: caps.requires_key || flagged,
            env: if named_by_entry {
                Vec::new()
            } else {
                caps.key_env.clone()
            },
            env_fields: if named_by_entry {
                Vec::new()
            } else {
                caps.key_env_fields.clone()
            },
            named_by_entry,
        }))
    }

    /// What can be said without the plugin's manifest (its plugin is not
    /// installed): only the section an entry names itself; whether it is
    /// required and which variables stand in for it are the plugin's to say.
    pub fn from_entry_alone(spec: &Map<String, Value>) -> Result<Option<KeyNeed>, KeyError> {
        Ok(entry_key_name(spec)?.map(|key_name| KeyNeed {
            key_name,
            required: false,
            env: Vec::new(),
            env_fields: Vec::new(),
            named_by_entry: true,
        }))
    }

    /// The environment fallbacks a plugin declares for its own section, for
    /// `keys list` (`None` when it declares none).
    pub fn env_fallback(caps: &Capabilities) -> Option<KeyNeed> {
        let key_name = caps.key_name.clone()?;
        (!caps.key_env.is_empty()).then(|| KeyNeed {
            key_name,
            required: caps.requires_key,
            env: caps.key_env.clone(),
            env_fields: caps.key_env_fields.clone(),
            named_by_entry: false,
        })
    }
}

/// Whether the entry's `model_config` sets `flag` to a true value (Python's
/// truth value, as clemcore reads flags).
fn model_config_flag(spec: &Map<String, Value>, flag: &str) -> bool {
    spec.get("model_config")
        .and_then(|c| c.get(flag))
        .is_some_and(clemhost_pyfacts::truth::truthy)
}

/// Where a key section's secret came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// The section of the key file.
    File(PathBuf),
    /// The key file's section, with `api_key` from an environment variable.
    FileAndEnv(PathBuf, String),
    /// An environment variable alone.
    Env(String),
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

/// A section as found: the credentials, where they came from, and an
/// environment key that was held back (see [`KeyError::EnvKeyWithheld`]).
pub(super) struct Found {
    pub(super) credentials: Map<String, Value>,
    pub(super) source: CredentialSource,
    pub(super) withheld: Option<KeyError>,
}

fn env_value(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

pub(super) fn has_api_key(section: &Map<String, Value>) -> bool {
    section
        .get("api_key")
        .and_then(Value::as_str)
        .is_some_and(|k| !k.trim().is_empty())
}

/// The fields that decide which certificates a connection trusts (read by
/// the remote plugins from the key section or the entry's `model_config`):
/// a network attacker who holds such a certificate reads the key, as a
/// server at an address of his choosing would.
pub const TRUST_FIELDS: [&str; 2] = ["insecure_skip_tls_verify", "ca_cert"];

/// Whether `field` is a [`TRUST_FIELDS`] entry set to something that
/// changes the checks (`false` and `null` do not).
fn loosens_trust(field: &str, value: &Value) -> bool {
    TRUST_FIELDS.contains(&field) && !matches!(value, Value::Null | Value::Bool(false))
}

/// A field that says where requests go, or which certificates they trust:
/// an environment key must not follow it when a key file in the working
/// directory set it.
fn address_field(section: &Map<String, Value>) -> Option<&str> {
    section
        .iter()
        .find(|(k, v)| {
            *k == "base_url" || k.ends_with("_url") || *k == "api_base" || loosens_trust(k, v)
        })
        .map(|(k, _)| k.as_str())
}

/// A trust field set in the entry's `model_config` (registries are files of
/// others: an environment key must not go over a connection they loosened).
fn entry_trust_field(spec: &Map<String, Value>) -> Option<&str> {
    spec.get("model_config")
        .and_then(Value::as_object)?
        .iter()
        .find(|(k, v)| loosens_trust(k, v))
        .map(|(k, _)| k.as_str())
}

impl KeyStore {
    fn env_key(need: &KeyNeed) -> Option<(String, String)> {
        need.env
            .iter()
            .find_map(|var| env_value(var).map(|v| (var.clone(), v)))
    }

    /// The section for `need` as it goes to the plugin: the key file's
    /// section (with `organization` also given as `organisation`, and a
    /// missing, `null` or blank `api_key` taken from the environment when a
    /// variable is set, unless this file is `./key.json` and chose the
    /// address), or, without a section, `{"api_key": <first set variable>}`
    /// plus the declared extra fields.
    pub(super) fn find(&self, need: &KeyNeed) -> Option<Found> {
        let key_name = need.key_name.as_str();
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
            let mut withheld = None;
            if !has_api_key(&creds) {
                if let Some((var, value)) = Self::env_key(need) {
                    match address_field(&creds).filter(|_| self.file_in_cwd) {
                        Some(field) => {
                            withheld = Some(KeyError::EnvKeyWithheld {
                                file: file.clone(),
                                section: key_name.to_string(),
                                field: field.to_string(),
                                var,
                            })
                        }
                        None => {
                            creds.insert("api_key".into(), Value::String(value));
                            source = CredentialSource::FileAndEnv(file.clone(), var);
                        }
                    }
                }
            }
            return Some(Found {
                credentials: creds,
                source,
                withheld,
            });
        }
        let (var, value) = Self::env_key(need)?;
        let mut creds = Map::new();
        creds.insert("api_key".into(), Value::String(value));
        for (field, field_var) in &need.env_fields {
            if let Some(v) = env_value(field_var) {
                creds.insert(field.clone(), Value::String(v));
            }
        }
        Some(Found {
            credentials: creds,
            source: CredentialSource::Env(var),
            withheld: None,
        })
    }

    /// The credentials for `need`, if there is a section or a variable.
    pub fn credentials(&self, need: &KeyNeed) -> Option<Map<String, Value>> {
        self.find(need).map(|f| f.credentials)
    }

    /// Where [`KeyStore::credentials`] would take them from.
    pub fn source(&self, need: &KeyNeed) -> Option<CredentialSource> {
        self.find(need).map(|f| f.source)
    }

    /// Whether there are credentials for `need` (a section or a variable).
    pub fn has_key(&self, need: &KeyNeed) -> bool {
        self.find(need).is_some()
    }

    /// Whether `need` has a usable (non-blank) `api_key`.
    pub fn has_api_key(&self, need: &KeyNeed) -> bool {
        self.credentials(need).is_some_and(|c| has_api_key(&c))
    }

    /// The error for a required section that is absent: it names the
    /// backend, the section, the files searched and the variables that
    /// would also work.
    pub fn missing(&self, backend: &str, need: &KeyNeed) -> KeyError {
        let key_name = need.key_name.as_str();
        let env_hint = match need.env.as_slice() {
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
        let named = if need.named_by_entry {
            " (the registry entry names it with \"key_name\")"
        } else {
            ""
        };
        let example = if need.env.is_empty() {
            // A self-hosted server is reached through base_url; its api_key may be optional.
            format!("{{\"{key_name}\": {{\"base_url\": \"http://HOST:PORT/v1\", \"api_key\": \"...\"}}}}")
        } else {
            format!("{{\"{key_name}\": {{\"api_key\": \"...\"}}}}")
        };
        KeyError::Missing(format!(
            "backend '{backend}' needs a key: no \"{key_name}\" section{named} in a key file; searched {}{used}. Add {example} to {}{env_hint}; see key.json.example",
            searched.join(", "),
            self.file
                .as_ref()
                .or(self.searched.first())
                .map_or_else(|| KEY_FILE.to_string(), |p| p.display().to_string()),
        ))
    }

    /// The credentials a model's plugin gets: the one key policy of the
    /// host. Nothing when the entry reads no section; the section, or the
    /// error that stops the run before the model opens, when it is required
    /// (by the plugin, or by the entry through the plugin's
    /// `key_required_flag`, as gated HuggingFace models do); otherwise the
    /// section if there is one. An environment key held back from an address
    /// that `./key.json` chose is an error for a required section and a
    /// warning otherwise.
    pub fn for_entry(
        &self,
        backend: &str,
        caps: &Capabilities,
        spec: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, KeyError> {
        let Some(need) = KeyNeed::of(caps, spec)? else {
            return Ok(None);
        };
        let mut found = self.find(&need);
        if let Some(f) = found.as_mut() {
            let var = match &f.source {
                CredentialSource::Env(var) | CredentialSource::FileAndEnv(_, var) => {
                    Some(var.clone())
                }
                CredentialSource::File(_) => None,
            };
            if let (Some(var), Some(field)) = (var, entry_trust_field(spec)) {
                f.credentials.remove("api_key");
                f.withheld = Some(KeyError::EnvKeyWithheldByEntry {
                    model: spec
                        .get("model_name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    field: field.to_string(),
                    var,
                });
            }
        }
        match found {
            Some(Found {
                withheld: Some(e), ..
            }) if need.required => Err(e),
            Some(found) => {
                if let Some(e) = found.withheld {
                    tracing::warn!("{e}");
                }
                Ok(Some(found.credentials))
            }
            None if need.required => Err(self.missing(backend, &need)),
            None => Ok(None),
        }
    }
}

/// [`KeyStore::for_entry`] with the store read on first need, so that a run
/// whose models read no key section never depends on key.json.
pub fn credentials_for_model(
    store: &mut Option<KeyStore>,
    backend: &str,
    caps: &Capabilities,
    spec: &Map<String, Value>,
) -> crate::Result<Option<Map<String, Value>>> {
    if KeyNeed::of(caps, spec)?.is_none() {
        return Ok(None);
    }
    if store.is_none() {
        *store = Some(KeyStore::load()?);
    }
    let store = store.as_ref().expect("the key store was just loaded");
    Ok(store.for_entry(backend, caps, spec)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn caps(key_name: Option<&str>, requires_key: bool, env: &[&str]) -> Capabilities {
        Capabilities {
            key_name: key_name.map(str::to_string),
            requires_key,
            key_env: env.iter().map(|s| s.to_string()).collect(),
            key_required_flag: Some("requires_api_key".into()),
            ..Default::default()
        }
    }

    #[test]
    fn organization_is_also_organisation() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("/k/key.json")),
            obj(json!({"openai": {"api_key": "sk-x", "organization": "org-1"}})),
        );
        let need = KeyNeed::of(&caps(Some("openai"), true, &[]), &Map::new())
            .expect("ok")
            .expect("a need");
        let c = store.credentials(&need).expect("openai section");
        assert_eq!(c["organisation"], json!("org-1"));
        assert_eq!(c["organization"], json!("org-1"));
    }

    #[test]
    fn missing_key_names_files_and_variables() {
        let store = KeyStore::load_from(vec![PathBuf::from("/nonexistent/a/key.json")])
            .expect("no file is fine");
        let need = KeyNeed::of(
            &caps(Some("mistral"), true, &["CLEMHOST_TEST_UNSET_VAR_1"]),
            &Map::new(),
        )
        .expect("ok")
        .expect("a need");
        let text = store.missing("mistral", &need).to_string();
        assert!(text.contains("backend 'mistral'"), "{text}");
        assert!(text.contains("/nonexistent/a/key.json"), "{text}");
        assert!(text.contains("CLEMHOST_TEST_UNSET_VAR_1"), "{text}");
    }

    #[test]
    fn the_manifest_and_the_entry_decide_what_a_backend_gets() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("/k/key.json")),
            obj(json!({"huggingface": {"api_key": "hf_x"}, "node_2": {"base_url": "http://b/v1"}})),
        );
        let plain = obj(json!({"model_name": "m"}));
        let gated = obj(json!({"model_name": "g", "model_config": {"requires_api_key": true}}));
        let hf = caps(Some("huggingface"), false, &["CLEMHOST_TEST_UNSET_VAR_2"]);
        // No key section in the manifest or the entry: nothing.
        assert_eq!(
            store
                .for_entry("echo", &Capabilities::default(), &plain)
                .expect("ok"),
            None
        );
        // Optional section: handed over when present.
        let got = store
            .for_entry("huggingface_local", &hf, &plain)
            .expect("ok");
        assert_eq!(got.expect("section")["api_key"], json!("hf_x"));
        // Required by the entry's flag and absent: an error naming the variable.
        let empty = KeyStore::from_sections(None, Map::new());
        let e = empty
            .for_entry("huggingface_local", &hf, &gated)
            .expect_err("gated model without a token");
        assert!(e.to_string().contains("CLEMHOST_TEST_UNSET_VAR_2"), "{e}");
        assert!(e.to_string().contains("\"huggingface\""), "{e}");
        assert_eq!(
            empty
                .for_entry("huggingface_local", &hf, &plain)
                .expect("optional"),
            None
        );
        // An entry's key_name picks another section.
        let named = obj(json!({"model_name": "n", "key_name": "node_2"}));
        let compat = caps(Some("openai_compatible"), true, &[]);
        let got = store
            .for_entry("openai_compatible", &compat, &named)
            .expect("ok")
            .expect("section");
        assert_eq!(got["base_url"], json!("http://b/v1"));
        let e = store
            .for_entry(
                "openai_compatible",
                &compat,
                &obj(json!({"model_name": "n", "key_name": "node_3"})),
            )
            .expect_err("no such section");
        assert!(e.to_string().contains("\"node_3\""), "{e}");
        let e = store
            .for_entry(
                "openai_compatible",
                &compat,
                &obj(json!({"model_name": "n", "key_name": 3})),
            )
            .expect_err("not a string");
        assert!(e.to_string().contains("model 'n'"), "{e}");
    }
}
