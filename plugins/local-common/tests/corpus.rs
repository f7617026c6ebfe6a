//! Renders every case of `../shared/chat-templates/cases.json` in-process
//! and compares with transformers' output (the same corpus the host's CLI
//! test runs through `clemhost template render`).

use clemhost_local_common::template::{ChatTemplate, RenderInput, TemplateError};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

fn shared_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CLEMHOST_SHARED") {
        let p = PathBuf::from(p);
        if p.is_dir() {
            return Some(p);
        }
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.is_dir() {
        return Some(p);
    }
    eprintln!(
        "skipped: the shared reference folder is neither at ../shared nor at $CLEMHOST_SHARED"
    );
    None
}

#[test]
fn every_corpus_case_renders_as_transformers_does() {
    let Some(shared) = shared_dir() else { return };
    let dir = shared.join("chat-templates");
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("cases.json is readable");
    let corpus: Value = serde_json::from_str(&text).expect("cases.json is JSON");
    let clock = corpus["render_settings"]["strftime_now_clock"]
        .as_str()
        .expect("render_settings.strftime_now_clock");
    let now =
        chrono::NaiveDateTime::parse_from_str(clock, "%Y-%m-%dT%H:%M:%S").expect("clock format");
    let cases = corpus["cases"].as_array().expect("cases is a list");
    assert!(!cases.is_empty());

    let mut templates: HashMap<String, Result<ChatTemplate, TemplateError>> = HashMap::new();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case["template"].as_str().expect("template name");
        let tpl = templates.entry(name.to_owned()).or_insert_with(|| {
            let src =
                std::fs::read_to_string(dir.join("templates").join(name)).expect("template file");
            ChatTemplate::new(&src)
        });
        let input = RenderInput {
            messages: case["messages"].as_array().expect("messages").clone(),
            add_generation_prompt: case["add_generation_prompt"].as_bool().expect("flag"),
            bos_token: case["bos_token"].as_str().map(str::to_owned),
            eos_token: case["eos_token"].as_str().map(str::to_owned),
            now: Some(now),
            ..RenderInput::default()
        };
        let got = match tpl {
            Ok(t) => t.render(&input),
            Err(e) => Err(e.clone()),
        };
        let ok = match (&case["expected"], &got) {
            (Value::String(want), Ok(have)) => want == have,
            (Value::Object(err), Err(e)) => match err["error_type"].as_str() {
                Some("TemplateError") => e.raised_message() == err["error"].as_str(),
                _ => true,
            },
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "case {i} ({name}, {}, gen={}):\n  want {:?}\n  got  {:?}",
                case["conversation"], case["add_generation_prompt"], case["expected"], got
            ));
        }
    }
    for f in failures.iter().take(5) {
        eprintln!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ",
        failures.len(),
        cases.len()
    );
}
