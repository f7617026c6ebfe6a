//! A `model_registry.json` text (and, after a 0xFF byte, a `-m` selector)
//! read as `--registry FILE` is: parsing never panics, every error names the
//! file, and every entry with a string `model_name` resolves by that name.
#![no_main]

use clemhost::registry::{name_query, parse_model_arg, Registry, RegistryError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const LABEL: &str = "fuzz/model_registry.json";

fuzz_target!(|data: &[u8]| {
    let Some((text, selector)) = clemhost_fuzz::two_texts(data) else {
        return;
    };
    let registry = match Registry::from_json_text(text, LABEL, LABEL) {
        Ok(registry) => registry,
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(LABEL), "error without the file: {message}");
            // serde_json's columns start at 1; 0 means "before the first
            // character of the line" (an empty file is 1:0).
            if let RegistryError::Syntax { line, .. } = e {
                assert!(line >= 1, "{message}");
            }
            return;
        }
    };
    for entry in registry.entries() {
        assert!(entry.location().contains(LABEL), "{}", entry.location());
        let _ = entry.backend();
        let Some(Value::String(name)) = entry.spec.get("model_name") else {
            continue;
        };
        // An earlier entry of the same name may answer, or a built-in
        // player of that name; either way the name resolves.
        let resolved = registry
            .try_resolve(&name_query(name))
            .unwrap_or_else(|e| panic!("registered name {name:?} does not resolve: {e}"));
        assert_eq!(resolved.model_name(), name);
    }
    let query = parse_model_arg(selector);
    match registry.try_resolve(&query) {
        Ok(model) => clemhost_fuzz::assert_selector_kept(&query, &model),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = registry.closest_names(selector, 5);
});
