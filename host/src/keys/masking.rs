//! How secrets are shown: [`mask`] and the masked sections of `keys list`.

use super::credentials::{has_api_key, KeyNeed};
use super::store::KeyStore;
use super::CredentialSource;
use serde_json::{Map, Value};

/// Secrets shorter than this are shown as `****` alone.
const SHORT_SECRET: usize = 12;
/// From this length on, 4 characters are shown at each end (as clemcore
/// shows them); in between, 2.
const LONG_SECRET: usize = 20;

/// Shows a secret: `[MISSING]` when blank; `****` alone below 12
/// characters (clemcore showed 8 of a 9-character key); the first and last
/// 2 around `...` below 20; the first and last 4 (clemcore's `clem list
/// keys` form, `sk-p...mnop`) from 20 on, so that at most two fifths of a
/// secret are ever shown.
pub fn mask(secret: &str) -> String {
    if secret.trim().is_empty() {
        return "[MISSING]".into();
    }
    let chars: Vec<char> = secret.chars().collect();
    let shown = match chars.len() {
        n if n < SHORT_SECRET => return "****".into(),
        n if n < LONG_SECRET => 2,
        _ => 4,
    };
    let head: String = chars[..shown].iter().collect();
    let tail: String = chars[chars.len() - shown..].iter().collect();
    format!("{head}...{tail}")
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

/// One section as `clemhost keys list` shows it (secrets masked).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskedSection {
    /// The key name (`openai`, ...).
    pub name: String,
    /// `api_key` is a non-blank string.
    pub active: bool,
    /// The fields, sorted, with secrets masked and credentials in URLs
    /// redacted.
    pub fields: Map<String, Value>,
    /// Where it came from.
    pub source: CredentialSource,
}

/// Fields of a key section that are shown in clear (besides URL fields,
/// `*url` and `api_base`, whose credentials are redacted): settings that
/// name an account, a version or a file, never a secret.
const READABLE_FIELDS: &[&str] = &[
    "organization",
    "organisation",
    "project",
    "api_version",
    "ca_cert",
    "insecure_skip_tls_verify",
];

/// Whether a field's string values are shown in clear.
pub fn is_readable_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !is_secret_field(&n)
        && (n.ends_with("url") || n == "api_base" || READABLE_FIELDS.contains(&n.as_str()))
}

/// A value of a field not known to be harmless (`session`, `extra_headers`,
/// ...): its shape, with every string masked as a key is. Numbers, booleans
/// and `null` stay (a port, a flag).
fn hidden(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(mask(&s)),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, hidden(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(hidden).collect()),
        other => other,
    }
}

fn shown(field: &str, value: Value) -> Value {
    if is_secret_field(field) {
        return Value::String(match &value {
            Value::String(s) => mask(s),
            // clemcore shows a non-string api_key as missing.
            _ if field == "api_key" => "[MISSING]".into(),
            _ => "[HIDDEN]".into(),
        });
    }
    if !is_readable_field(field) {
        return hidden(value);
    }
    match value {
        // Something that is no URL in a URL field may be a key pasted there.
        Value::String(s)
            if field.ends_with("url")
                && !(s.starts_with("http://") || s.starts_with("https://")) =>
        {
            Value::String(format!("[NOT A URL: {}]", mask(&s)))
        }
        // `http://user:PASSWORD@host` and `?key=...` never show in clear.
        Value::String(s) => Value::String(clemhost_plugin_sdk::redact::redact_url(&s)),
        // An object or a list under a readable name is not a setting clemhost
        // knows: shown by its shape (found by fuzz/fuzz_targets/keys.rs).
        v @ (Value::Object(_) | Value::Array(_)) => hidden(v),
        other => other,
    }
}

impl KeyStore {
    /// Every key section with credentials, secrets masked: the file's
    /// sections, then the sections that the installed plugins' environment
    /// fallbacks (`fallbacks`, from their manifests) fill in and the file
    /// lacks.
    pub fn masked(&self, fallbacks: &[KeyNeed]) -> Vec<MaskedSection> {
        let mut needs: Vec<KeyNeed> = self
            .sections
            .keys()
            .map(|name| {
                fallbacks
                    .iter()
                    .find(|f| &f.key_name == name)
                    .cloned()
                    .unwrap_or_else(|| KeyNeed {
                        key_name: name.clone(),
                        required: false,
                        env: Vec::new(),
                        env_fields: Vec::new(),
                        named_by_entry: false,
                    })
            })
            .collect();
        for f in fallbacks {
            if !needs.iter().any(|n| n.key_name == f.key_name) {
                needs.push(f.clone());
            }
        }
        needs.sort_by(|a, b| a.key_name.cmp(&b.key_name));
        needs
            .into_iter()
            .filter_map(|need| {
                let found = self.find(&need)?;
                let mut fields: Vec<(String, Value)> = found.credentials.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                let map: Map<String, Value> = fields.iter().cloned().collect();
                Some(MaskedSection {
                    name: need.key_name,
                    active: has_api_key(&map),
                    fields: fields
                        .into_iter()
                        .map(|(k, v)| {
                            let v = shown(&k, v);
                            (k, v)
                        })
                        .collect(),
                    source: found.source,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    #[test]
    fn short_secrets_show_little_or_nothing() {
        assert_eq!(mask(""), "[MISSING]");
        assert_eq!(mask("   "), "[MISSING]");
        assert_eq!(mask("a"), "****");
        assert_eq!(
            mask("abcdefghi"),
            "****",
            "9 chars: clemcore showed 8 of them"
        );
        assert_eq!(mask("abcdefghijk"), "****");
        assert_eq!(mask("abcdefghijkl"), "ab...kl");
        assert_eq!(mask("sk-proj-0123456789abcd"), "sk-p...abcd");
        assert_eq!(mask("ключ-секрет-42-длинный"), "ключ...нный");
    }

    #[test]
    fn listed_sections_hide_secrets_and_url_passwords() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("/k/key.json")),
            json!({"openai": {"api_key": "sk-very-secret-value"},
                   "node": {"base_url": "http://user:PASSWORD@h:8000/v1"},
                   "slurk": {"api_key": 7}})
            .as_object()
            .cloned()
            .expect("object"),
        );
        let listed = store.masked(&[]);
        let text = format!("{listed:?}");
        assert!(!text.contains("sk-very-secret-value"), "{text}");
        assert!(!text.contains("PASSWORD"), "{text}");
        assert!(text.contains("sk-v...alue"), "{text}");
        let node = listed.iter().find(|s| s.name == "node").expect("node");
        assert_eq!(node.fields["base_url"], json!("http://user:***@h:8000/v1"));
        let slurk = listed.iter().find(|s| s.name == "slurk").expect("slurk");
        assert_eq!(slurk.fields["api_key"], json!("[MISSING]"));
        assert!(!slurk.active);
    }

    #[test]
    fn url_secrets_on_ipv6_hosts_are_masked() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("/k/key.json")),
            json!({"local": {"base_url": "http://[::1]:8000/v1?token=TOKEN-VALUE"},
                   "lan": {"base_url": "http://me:PASSWORD@[fd00::7]:8000/v1?key=K"}})
            .as_object()
            .cloned()
            .expect("object"),
        );
        let listed = store.masked(&[]);
        let text = format!("{listed:?}");
        assert!(
            !text.contains("TOKEN-VALUE") && !text.contains("PASSWORD"),
            "{text}"
        );
        let url = |name: &str| {
            listed.iter().find(|s| s.name == name).expect(name).fields["base_url"].clone()
        };
        assert_eq!(url("local"), json!("http://[::1]:8000/v1?token=***"));
        assert_eq!(url("lan"), json!("http://me:***@[fd00::7]:8000/v1?key=***"));
    }

    #[test]
    fn nested_secrets_are_masked_too() {
        // Found by fuzz/fuzz_targets/keys.rs: a secret one level down, under
        // a field whose name says nothing, was listed in full.
        let store = KeyStore::from_sections(
            Some(PathBuf::from("key.json")),
            json!({"openai": {
                "api_key": "sk-top-level-secret",
                "proxy": {"api_key": "sk-nested-secret-value", "port": 8080},
                "headers": [{"x-token": "tok-in-a-list-0123"}]
            }})
            .as_object()
            .cloned()
            .expect("object"),
        );
        let listed = format!("{:?}", store.masked(&[]));
        assert!(!listed.contains("sk-nested-secret-value"), "{listed}");
        assert!(!listed.contains("tok-in-a-list-0123"), "{listed}");
        assert!(listed.contains("sk-n...alue"), "{listed}");
        assert!(
            listed.contains("8080"),
            "what is not secret stays: {listed}"
        );
    }

    #[test]
    fn unknown_and_nested_fields_show_only_their_shape() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("key.json")),
            json!({"openai_compatible": {
                "api_key": "sk-x",
                "base_url": "http://h/v1",
                "organization": "org-team",
                "extra_headers": {"X-Custom-Auth": "customsecretvalue123"},
                "session": "sessionsecret4567890",
                "mirror_url": ["http://a/v1"],
                "retries": 3
            }})
            .as_object()
            .cloned()
            .expect("object"),
        );
        let listed = store.masked(&[]);
        let text = format!("{listed:?}");
        for secret in [
            "customsecretvalue123",
            "sessionsecret4567890",
            "secretvalue",
            "onsecret45",
        ] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        let f = &listed[0].fields;
        assert_eq!(f["extra_headers"], json!({"X-Custom-Auth": "cust...e123"}));
        assert_eq!(f["session"], json!("sess...7890"));
        assert_eq!(f["base_url"], json!("http://h/v1"));
        assert_eq!(f["organization"], json!("org-team"));
        assert_eq!(f["mirror_url"], json!(["****"]), "a list is no URL setting");
        assert_eq!(f["retries"], json!(3));
    }

    #[test]
    fn secret_fields() {
        assert!(is_secret_field("api_key"));
        assert!(is_secret_field("admin_token"));
        assert!(!is_secret_field("base_url"));
        assert!(!is_secret_field("organisation"));
    }
}
