//! Each fact against what Python printed for the same input
//! (`python.json`, written by `scripts/pyfacts-expectations.py`).

use chrono::NaiveDate;
use clemhost_plugin_sdk::serde_json::{self, Value};
use clemhost_pyfacts::{float, json, time, truth};
use std::time::Duration;

fn cases(section: &str) -> Vec<Value> {
    let text = include_str!("python.json");
    let data: Value = serde_json::from_str(text).expect("python.json is JSON");
    let list = data[section]
        .as_array()
        .unwrap_or_else(|| panic!("python.json has a {section} list"))
        .clone();
    assert!(!list.is_empty(), "{section} has cases");
    list
}

fn s(v: &Value) -> &str {
    v.as_str().expect("a string")
}

#[test]
fn timedelta_is_str_of_python_timedelta() {
    for case in cases("timedelta") {
        let micros = case[0].as_u64().expect("microseconds");
        let d = Duration::from_micros(micros);
        assert_eq!(time::timedelta(d), s(&case[1]), "{micros} µs");
        assert_eq!(time::parse_timedelta(s(&case[1])), Some(d), "{micros} µs");
    }
}

#[test]
fn datetime_is_str_and_isoformat_of_python_datetime() {
    for case in cases("datetime") {
        let p: Vec<u32> = case[0]
            .as_array()
            .expect("fields")
            .iter()
            .map(|v| v.as_u64().expect("a number") as u32)
            .collect();
        let t = NaiveDate::from_ymd_opt(p[0] as i32, p[1], p[2])
            .and_then(|d| d.and_hms_micro_opt(p[3], p[4], p[5], p[6]))
            .expect("a valid date");
        assert_eq!(time::datetime(&t), s(&case[1]));
        assert_eq!(time::isoformat(&t), s(&case[2]));
        assert_eq!(time::parse_datetime(s(&case[1])), Some(t));
    }
}

#[test]
fn float_repr_and_json_spelling_match_python() {
    for case in cases("float") {
        let f = f64::from_bits(case[0].as_u64().expect("bits"));
        assert_eq!(float::repr(f), s(&case[1]), "repr of {f:e}");
        assert_eq!(float::json(f), s(&case[2]), "json.dumps of {f:e}");
    }
}

#[test]
fn strings_escape_as_json_dumps_does() {
    for case in cases("string") {
        let text = s(&case[0]);
        let mut ascii = String::new();
        json::write_string(&mut ascii, text, true);
        assert_eq!(ascii, s(&case[1]), "ensure_ascii=True of {text:?}");
        let mut unicode = String::new();
        json::write_string(&mut unicode, text, false);
        assert_eq!(unicode, s(&case[2]), "ensure_ascii=False of {text:?}");
    }
}

#[test]
fn truthiness_is_python_bool() {
    for case in cases("truthy") {
        assert_eq!(
            truth::truthy(&case[0]),
            case[1].as_bool().expect("a bool"),
            "bool({})",
            case[0]
        );
    }
    assert!(!truth::truthy_opt(None));
}

#[test]
fn compact_is_json_dumps_with_compact_separators() {
    for case in cases("compact") {
        assert_eq!(json::compact(&case[0]), s(&case[1]));
    }
}

#[test]
fn env_flags_read_as_huggingface_hub_reads_them() {
    for yes in ["1", "true", "TRUE", "Yes", "on", " 1 "] {
        assert!(truth::env_true(yes), "{yes:?}");
    }
    for no in ["", "0", "false", "no", "off", "2", "y"] {
        assert!(!truth::env_true(no), "{no:?}");
    }
}
