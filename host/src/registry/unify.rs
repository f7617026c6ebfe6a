//! Feature-structure unification of model specs, with the exact outcome
//! clemcore 3.7.2 gets from `nltk.featstruct.unify(selector, entry)`.
//!
//! The rules, in short:
//! - a key present on one side only is copied into the result;
//! - two objects merge key by key, recursively;
//! - two lists unify when they have the same length and unify element by
//!   element (so `["en"]` does not unify with `["en", "de"]`);
//! - two scalars unify when Python's `==` says they are equal: `1 == true`,
//!   `4096 == 4096.0`, but `"4096" != 4096` and `null` equals only `null`;
//! - an object or list never unifies with a scalar; an empty object and an
//!   empty list unify (Python sees both as empty sequences);
//! - where both sides have a value, the selector's value is kept.
//!
//! Key order of the result (visible in `experiment.json`): the selector's
//! keys in the selector's order, then the entry's other keys sorted by code
//! point, at every level where both sides have an object. A value that only
//! the entry has is copied as it is, with its own key order.

use serde_json::{Map, Number, Value};

/// Unifies a selector with a registry entry; `None` when they conflict.
///
/// The result keeps the selector's values where both sides have one.
pub fn unify_maps(
    selector: &Map<String, Value>,
    entry: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let mut result = selector.clone();
    let mut others: Vec<(&String, &Value)> = entry.iter().collect();
    others.sort_by(|a, b| a.0.cmp(b.0));
    for (key, entry_value) in others {
        match result.get_mut(key) {
            // `get_mut` + assignment keeps the key at its position.
            Some(mine) => *mine = unify(mine, entry_value)?,
            None => {
                result.insert(key.clone(), entry_value.clone());
            }
        }
    }
    Some(result)
}

/// Unifies two JSON values (the first one is the selector's).
pub fn unify(selector: &Value, entry: &Value) -> Option<Value> {
    match (selector, entry) {
        (Value::Object(a), Value::Object(b)) => unify_maps(a, b).map(Value::Object),
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return None;
            }
            a.iter()
                .zip(b)
                .map(|(x, y)| unify(x, y))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array)
        }
        // Python treats dicts and lists alike as sequences here: two empty
        // ones unify (to the selector's), non-empty ones never do.
        (Value::Object(a), Value::Array(b)) if a.is_empty() && b.is_empty() => {
            Some(selector.clone())
        }
        (Value::Array(a), Value::Object(b)) if a.is_empty() && b.is_empty() => {
            Some(selector.clone())
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => None,
        (a, b) => python_eq(a, b).then(|| selector.clone()),
    }
}

/// Python's `==` on two JSON scalars (`bool` counts as the integers 0 and 1).
pub fn python_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(_) | Value::Number(_), Value::Bool(_) | Value::Number(_)) => numeric(a)
            .zip(numeric(b))
            .is_some_and(|(x, y)| x.equals(&y)),
        _ => false,
    }
}

/// A JSON number (or bool) as Python sees it: an exact integer or a float.
#[derive(Clone, Copy, Debug)]
enum PyNum {
    Int(i128),
    Float(f64),
}

impl PyNum {
    /// Exact comparison, as Python compares `int` with `float`.
    fn equals(&self, other: &PyNum) -> bool {
        match (*self, *other) {
            (PyNum::Int(x), PyNum::Int(y)) => x == y,
            (PyNum::Float(x), PyNum::Float(y)) => x == y,
            (PyNum::Int(i), PyNum::Float(f)) | (PyNum::Float(f), PyNum::Int(i)) => {
                float_equals_int(f, i)
            }
        }
    }
}

fn numeric(v: &Value) -> Option<PyNum> {
    match v {
        Value::Bool(b) => Some(PyNum::Int(i128::from(*b))),
        Value::Number(n) => Some(number(n)),
        _ => None,
    }
}

fn number(n: &Number) -> PyNum {
    if let Some(i) = n.as_i64() {
        PyNum::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        PyNum::Int(i128::from(u))
    } else {
        // serde_json without arbitrary precision: every other number is an f64.
        PyNum::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn float_equals_int(f: f64, i: i128) -> bool {
    // 2^127 as f64 is exact; anything at or beyond it cannot equal an i128.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    f.is_finite() && f.fract() == 0.0 && f.abs() < LIMIT && (f as i128) == i
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("test fixture is not an object: {other}"),
        }
    }

    fn keys(m: &Map<String, Value>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn scalars_compare_like_python() {
        assert!(python_eq(&json!(1), &json!(true)));
        assert!(python_eq(&json!(0), &json!(false)));
        assert!(python_eq(&json!(true), &json!(1.0)));
        assert!(python_eq(&json!(4096), &json!(4096.0)));
        assert!(!python_eq(&json!("4096"), &json!(4096)));
        assert!(!python_eq(&json!(null), &json!("x")));
        assert!(!python_eq(&json!(null), &json!(0)));
        assert!(python_eq(&json!(null), &json!(null)));
        assert!(!python_eq(&json!(2), &json!(2.0000000001)));
        assert!(!python_eq(&json!(2), &json!(true)));
        assert!(!python_eq(&json!("a"), &json!("A")));
        // Exact int/float comparison, beyond the 2^53 float precision.
        assert!(!python_eq(
            &json!(9_007_199_254_740_993_i64),
            &json!(9_007_199_254_740_992.0)
        ));
        assert!(python_eq(&json!(u64::MAX), &json!(u64::MAX)));
    }

    #[test]
    fn selector_values_win() {
        let r = unify_maps(
            &obj(json!({"open_weight": 1})),
            &obj(json!({"open_weight": true})),
        )
        .expect("unifies");
        assert_eq!(r["open_weight"], json!(1));
        let r =
            unify_maps(&obj(json!({"ctx": 4096.0})), &obj(json!({"ctx": 4096}))).expect("unifies");
        assert_eq!(r["ctx"], json!(4096.0));
    }

    #[test]
    fn conflicts_fail() {
        assert!(unify_maps(&obj(json!({"ctx": "4096"})), &obj(json!({"ctx": 4096}))).is_none());
        assert!(unify_maps(&obj(json!({"a": null})), &obj(json!({"a": "x"}))).is_none());
        assert!(unify_maps(&obj(json!({"a": {}})), &obj(json!({"a": 1}))).is_none());
        assert!(unify_maps(&obj(json!({"a": "x"})), &obj(json!({"a": ["x"]}))).is_none());
        assert!(unify_maps(&obj(json!({"a": {"x": 1}})), &obj(json!({"a": null}))).is_none());
        assert!(unify_maps(&obj(json!({"a": {"x": 1}})), &obj(json!({"a": [1]}))).is_none());
    }

    #[test]
    fn lists_need_same_length_and_order() {
        let entry = obj(json!({"languages": ["en", "de"]}));
        assert!(unify_maps(&obj(json!({"languages": ["en"]})), &entry).is_none());
        assert!(unify_maps(&obj(json!({"languages": ["de", "en"]})), &entry).is_none());
        assert!(unify_maps(&obj(json!({"languages": ["en", "de"]})), &entry).is_some());
        let r = unify(&json!([{"x": 1}]), &json!([{"y": 2}])).expect("element objects merge");
        assert_eq!(r, json!([{"x": 1, "y": 2}]));
        let r = unify(&json!([1]), &json!([true])).expect("element scalars compare like Python");
        assert_eq!(r, json!([1]));
    }

    #[test]
    fn empty_object_and_empty_list_unify() {
        assert_eq!(unify(&json!({}), &json!([])), Some(json!({})));
        assert_eq!(unify(&json!([]), &json!({})), Some(json!([])));
    }

    #[test]
    fn nested_objects_merge_with_clemcore_key_order() {
        let sel = obj(json!({"model_name": "m", "model_config": {"b": 2}}));
        let entry = obj(
            json!({"model_name": "m", "backend": "hf", "model_config": {"z": {"k": "v"}, "a": 1}}),
        );
        let r = unify_maps(&sel, &entry).expect("unifies");
        assert_eq!(keys(&r), ["model_name", "model_config", "backend"]);
        let mc = r["model_config"].as_object().expect("object");
        assert_eq!(keys(mc), ["b", "a", "z"]);
    }

    #[test]
    fn entry_only_values_keep_their_own_order() {
        let sel = obj(json!({"model_name": "m"}));
        let entry = obj(
            json!({"zeta": 1, "model_name": "m", "cfg": {"z": 1, "a": {"y": 1, "b": 2}}, "backend": "b"}),
        );
        let r = unify_maps(&sel, &entry).expect("unifies");
        assert_eq!(keys(&r), ["model_name", "backend", "cfg", "zeta"]);
        let cfg = r["cfg"].as_object().expect("object");
        assert_eq!(keys(cfg), ["z", "a"]);
        assert_eq!(keys(cfg["a"].as_object().expect("object")), ["y", "b"]);
    }

    #[test]
    fn nested_conflict_fails() {
        let sel = obj(json!({"model_name": "m", "model_config": {"a": 2}}));
        let entry = obj(json!({"model_name": "m", "model_config": {"a": 1}}));
        assert!(unify_maps(&sel, &entry).is_none());
    }

    #[test]
    fn empty_model_config_accepts_anything() {
        let sel =
            obj(json!({"model_name": "c", "model_config": {"multimodality": {"audio": true}}}));
        let entry = obj(json!({"model_name": "c", "backend": "cohere", "model_config": {}}));
        let r = unify_maps(&sel, &entry).expect("unifies");
        assert_eq!(r["model_config"], json!({"multimodality": {"audio": true}}));
    }
}
