//! A `key.json` text loaded as clemhost loads one (from a file): never a
//! panic; an error about the file never depends on the text of its
//! strings (so it cannot quote a secret); `keys list`'s masked view and the
//! store's `Debug` never show a secret in full.
#![no_main]

use clemhost::keys::{is_secret_field, KeyError, KeyNeed, KeyStore};
use clemhost_plugin_sdk::Capabilities;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file the input is written to.
fn key_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| clemhost_fuzz::scratch_file("key.json"))
}

fn load(text: &str) -> Result<KeyStore, KeyError> {
    std::fs::write(key_file(), text).expect("writing the scratch key.json");
    KeyStore::load_from(vec![key_file().to_path_buf()])
}

/// `text` with every byte inside plain printable-ASCII string literals
/// replaced: the same shape and positions, other strings.
fn with_other_strings(text: &str) -> String {
    let mut out = text.to_string();
    for literal in clemhost_fuzz::string_literals(text, 1) {
        if !literal.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            continue;
        }
        let start = literal.as_ptr() as usize - text.as_ptr() as usize;
        let other: String = literal
            .bytes()
            .map(|b| if b == b'q' { 'z' } else { 'q' })
            .collect();
        out.replace_range(start..start + literal.len(), &other);
    }
    out
}

/// The strings of one section: those under a secret-looking field name (at
/// any depth) and those shown in clear.
fn strings<'a>(
    value: &'a Value,
    under_secret: bool,
    secret: &mut Vec<&'a str>,
    clear: &mut Vec<&'a str>,
) {
    match value {
        Value::String(s) if under_secret => secret.push(s),
        Value::String(s) => clear.push(s),
        Value::Object(map) => {
            for (k, v) in map {
                clear.push(k);
                strings(v, under_secret || is_secret_field(k), secret, clear);
            }
        }
        Value::Array(items) => {
            for v in items {
                strings(v, under_secret, secret, clear);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let store = match load(text) {
        Ok(store) => store,
        Err(e) => {
            let message = e.to_string();
            let path = key_file().display().to_string();
            assert!(message.contains(&path), "error without the file: {message}");
            if matches!(e, KeyError::Syntax { .. } | KeyError::NotObject { .. }) {
                let other = load(&with_other_strings(text)).err().map(|e| e.to_string());
                assert_eq!(
                    other.as_deref(),
                    Some(message.as_str()),
                    "the error changes with the strings of the file, so it may quote them"
                );
            }
            return;
        }
    };
    let names: Vec<String> = store
        .section_names()
        .into_iter()
        .map(String::from)
        .collect();
    let sections: Map<String, Value> = serde_json::from_str(text).expect("it loaded");
    let (mut hidden, mut clear) = (Vec::new(), Vec::new());
    for (name, section) in &sections {
        clear.push(name.as_str());
        strings(section, false, &mut hidden, &mut clear);
    }
    // What `keys list` shows of each section, and the store's Debug with
    // the text around its names and path counted as clear.
    let listed: Vec<String> = store
        .masked(&[])
        .iter()
        .map(|section| Value::Object(section.fields.clone()).to_string())
        .collect();
    let listed = listed.join("\n");
    let debug = format!("{store:?}");
    let path = key_file().display().to_string();
    clear.push(&path);
    clear.push("KeyStore { file: Some(\"\"), sections: [\"\", ] }");
    for secret in hidden {
        // A short secret is shown in part by design (`****yz`); the same
        // text may also be written where it is not a secret.
        if secret.chars().count() < 12 || clear.iter().any(|c| c.contains(secret)) {
            continue;
        }
        assert!(
            !listed.contains(secret),
            "keys list shows a secret in full: {listed}"
        );
        assert!(!debug.contains(secret), "Debug shows a secret: {debug}");
    }
    let capabilities = Capabilities {
        key_name: Some("fuzz_missing_section".into()),
        requires_key: true,
        ..Capabilities::default()
    };
    let _ = store.for_entry("fuzz", &capabilities, &Map::new());
    for name in &names {
        let need = KeyNeed {
            key_name: name.clone(),
            required: false,
            env: Vec::new(),
            env_fields: Vec::new(),
            named_by_entry: false,
        };
        let _ = store.credentials(&need);
        if let Some(source) = store.source(&need) {
            let _ = source.to_string();
        }
        let _ = store.has_api_key(&need);
        let capabilities = Capabilities {
            key_name: Some(name.clone()),
            ..Capabilities::default()
        };
        let _ = store.for_entry(name, &capabilities, &Map::new());
    }
});
