//! A `-m` selector (a model name, or a JSON object with `'` for `"`)
//! resolved against the registry shipped with clemhost: never a panic, and
//! unification behaves as its rules say (a query unifies with itself and
//! keeps its own values).
#![no_main]

use clemhost::registry::unify::{unify, unify_maps};
use clemhost::registry::{parse_model_arg, Registry, PACKAGED_LOOKUP_SOURCE, SHIPPED_REGISTRY};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

fn shipped() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Registry::from_json_text(SHIPPED_REGISTRY, "builtin", PACKAGED_LOOKUP_SOURCE)
            .expect("the shipped registry parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(selector) = std::str::from_utf8(data) else {
        return;
    };
    let query = parse_model_arg(selector);
    assert_eq!(
        unify_maps(&query, &query).as_ref(),
        Some(&query),
        "a selector must unify with itself, unchanged"
    );
    let registry = shipped();
    match registry.try_resolve(&query) {
        Ok(model) => clemhost_fuzz::assert_selector_kept(&query, &model),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // Whether two values unify does not depend on which one is the selector.
    for entry in registry.entries().iter().take(8) {
        let q = Value::Object(query.clone());
        let e = Value::Object(entry.spec.clone());
        assert_eq!(unify(&q, &e).is_some(), unify(&e, &q).is_some());
    }
    let _ = registry.closest_names(selector, 5);
});
