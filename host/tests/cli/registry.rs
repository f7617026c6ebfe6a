//! The model registry as a user meets it: `clemhost models show` and
//! `clemhost models list`, checked against clemcore 3.7.2's observed
//! behaviour (`../shared/reference/registry-cases.json`) and its packaged
//! registry.

use crate::util::{shared_dir, stderr, stdout, TestEnv};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The error clemcore raises for a query without `model_name`; clemhost
/// resolves such queries instead (docs/registry.md, "Differences").
const NO_MODEL_NAME_CRASH: &str = "'ModelSpec' object has no attribute 'model_name'";

/// What clemhost does instead of clemcore's crash, per case (documented in
/// docs/registry.md): `Ok(model_name)` or `Err(message start)`. The names
/// were computed with clemcore's own unifier (`nltk.featstruct.unify`) over
/// the same entries in the same order, leaving out only the `model_name`
/// check that crashes: an entry that lacks a field unifies with any value
/// of it, so `{"model_id": "gpt-4o"}` finds the first entry without a
/// conflicting `model_id`.
fn improved_outcome(id: &str) -> Option<Result<&'static str, &'static str>> {
    const NO_MATCH: &str = "No model spec unifies with model selector=";
    Some(match id {
        "pk-json-backend-only" => Ok("gpt-4o-mini"),
        "pk-obj-backend-hf" => Ok("llama-3.3-70b"),
        "pk-obj-nested-absent-field-unifies" => Ok("claude-opus-4.5"),
        "pk-obj-list-partial" => Ok("slurk"),
        "pk-obj-model-id" => Ok("llama-3.3-70b"),
        "pk-obj-lookup-source" => Err(NO_MATCH),
        "pk-obj-multimodal-audio" => Ok("command-a"),
        "in-partial-no-match" => Err(NO_MATCH),
        "in-int-float" => Ok("m"),
        "in-int-string" => Err(NO_MATCH),
        "in-bool-int" => Ok("m"),
        "in-list-prefix" => Err(NO_MATCH),
        "in-list-order" => Err(NO_MATCH),
        _ => return None,
    })
}

fn obj(v: &Value) -> &Map<String, Value> {
    v.as_object().expect("the fixture holds an object here")
}

/// The query as the command-line argument: a string as is, an object as
/// JSON (apostrophes escaped so the `'` → `"` rule leaves them alone).
fn query_arg(query: &Value) -> String {
    match query {
        Value::String(s) => s.clone(),
        other => other.to_string().replace('\'', "\\u0027"),
    }
}

/// `<cwd>` as the child process sees its working directory.
fn cwd_text(env: &TestEnv) -> String {
    env.path()
        .canonicalize()
        .expect("the test directory exists")
        .display()
        .to_string()
}

fn substitute_cwd(v: &Value, cwd: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("<cwd>", cwd)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute_cwd(x, cwd)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), substitute_cwd(x, cwd)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Runs one case; returns a description of the mismatch, if any.
fn check_case(case: &Value) -> Result<(), String> {
    let id = case["id"].as_str().unwrap_or("?");
    let env = TestEnv::new();
    let mut args: Vec<String> = vec!["models".into(), "show".into()];
    let inline = !case["registry"].is_string();
    if inline {
        env.write("inline-registry.json", &case["registry"].to_string());
        args.extend([
            "--no-default-registry".into(),
            "--registry".into(),
            "inline-registry.json".into(),
        ]);
    }
    if let Some(reg) = case.get("cwd_model_registry") {
        env.write("model_registry.json", &reg.to_string());
    }
    if let Some(raw) = case.get("cwd_model_registry_raw").and_then(Value::as_str) {
        env.write("model_registry.json", raw);
    }
    args.push(query_arg(&case["query"]));
    args.push("--json".into());
    let out = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (so, se) = (stdout(&out), stderr(&out));
    let cwd = cwd_text(&env);
    let expected = substitute_cwd(&case["expected"], &cwd);

    if let Some(message) = expected.get("message").and_then(Value::as_str) {
        if message == NO_MODEL_NAME_CRASH {
            return check_improved(id, out.status.success(), &so, &se);
        }
        if out.status.success() {
            return Err(format!(
                "{id}: expected error `{message}`, got success: {so}"
            ));
        }
        if !se.contains(message) {
            return Err(format!("{id}: stderr lacks `{message}`: {se}"));
        }
        return Ok(());
    }

    if !out.status.success() {
        return Err(format!("{id}: expected success, got: {se}"));
    }
    let mut spec: Map<String, Value> = serde_json::from_str(&so)
        .map_err(|e| format!("{id}: stdout is not a JSON object ({e}): {so}"))?;
    if inline {
        // The case's registry was loaded by clemcore without lookup_source.
        spec.shift_remove("lookup_source");
    }
    for key in ["model_name", "backend", "lookup_source"] {
        if let Some(want) = expected.get(key) {
            if spec.get(key) != Some(want) {
                return Err(format!(
                    "{id}: {key} is {:?}, expected {want}",
                    spec.get(key)
                ));
            }
        }
    }
    if let Some(fields) = expected.get("fields").and_then(Value::as_object) {
        for (k, want) in fields {
            if spec.get(k) != Some(want) {
                return Err(format!(
                    "{id}: field {k} is {:?}, expected {want}",
                    spec.get(k)
                ));
            }
        }
    }
    if let Some(resolved) = expected.get("resolved") {
        let omitted: Vec<&str> = expected
            .get("resolved_omits")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut compared = spec.clone();
        for k in &omitted {
            compared.shift_remove(*k);
        }
        if &Value::Object(compared) != resolved {
            return Err(format!("{id}: resolved spec {so} differs from {resolved}"));
        }
    }
    if let Some(order) = expected.get("resolved_key_order").and_then(Value::as_array) {
        let ours: Vec<&str> = spec.keys().map(String::as_str).collect();
        let theirs: Vec<&str> = order.iter().filter_map(Value::as_str).collect();
        if ours != theirs {
            return Err(format!("{id}: key order {ours:?}, expected {theirs:?}"));
        }
    }
    Ok(())
}

/// A case where clemcore crashes on a query without `model_name`.
fn check_improved(id: &str, success: bool, so: &str, se: &str) -> Result<(), String> {
    match (improved_outcome(id), success) {
        (Some(Ok(name)), true) => {
            let spec: Value = serde_json::from_str(so).map_err(|e| format!("{id}: {e}: {so}"))?;
            if spec["model_name"] != name {
                return Err(format!(
                    "{id}: resolved {}, expected {name}",
                    spec["model_name"]
                ));
            }
            Ok(())
        }
        (Some(Err(start)), false) if se.contains(start) => Ok(()),
        // A case not in the table: any resolution or a clear no-match error.
        (None, true) => {
            let spec: Value = serde_json::from_str(so).map_err(|e| format!("{id}: {e}: {so}"))?;
            if spec["model_name"].is_string() && spec["backend"].is_string() {
                Ok(())
            } else {
                Err(format!("{id}: resolved without model_name/backend: {so}"))
            }
        }
        (None, false) if se.contains("No model spec unifies with model selector=") => Ok(()),
        _ => Err(format!(
            "{id}: unexpected outcome (success={success}): stdout {so} stderr {se}"
        )),
    }
}

#[test]
fn every_clemcore_registry_case_passes() {
    let Some(shared) = shared_dir() else { return };
    let path = shared.join("reference/registry-cases.json");
    let text = std::fs::read_to_string(&path).expect("registry-cases.json is readable");
    let cases: Vec<Value> =
        serde_json::from_str(&text).expect("registry-cases.json is a JSON array");
    assert!(!cases.is_empty());
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// clemcore 3.7.2's packaged `model_registry.json`, extracted from the
/// cached wheel, or `None` (with the reason) when it is not there.
fn clemcore_packaged_registry(into: &Path) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let wheel = PathBuf::from(home).join(".cache/clemhost/wheels/clemcore-3.7.2-py3-none-any.whl");
    if !wheel.is_file() {
        eprintln!(
            "skipped: {} is not there (scripts/setup caches it)",
            wheel.display()
        );
        return None;
    }
    let member = "clemcore/backends/model_registry.json";
    let out = std::process::Command::new("unzip")
        .arg("-p")
        .arg(&wheel)
        .arg(member)
        .output();
    let Ok(out) = out.map_err(|e| eprintln!("skipped: cannot run unzip to read the wheel: {e}"))
    else {
        return None;
    };
    assert!(
        out.status.success(),
        "unzip could not read {member} from {}",
        wheel.display()
    );
    let file = into.join("clemcore-packaged-registry.json");
    std::fs::write(&file, &out.stdout).expect("write the extracted registry");
    Some(file)
}

/// What clemcore resolves a plain name to: the first entry with that name,
/// `model_name` first, then the other keys sorted (`lookup_source` included).
fn clemcore_plain_name_resolution(
    entries: &[Value],
    name: &str,
    lookup_source: &str,
) -> Map<String, Value> {
    let entry = entries
        .iter()
        .find(|e| e["model_name"] == name)
        .expect("the name comes from the entries");
    let mut rest: Vec<(String, Value)> = obj(entry).clone().into_iter().collect();
    if !obj(entry).contains_key("lookup_source") {
        rest.push(("lookup_source".into(), Value::String(lookup_source.into())));
    }
    rest.retain(|(k, _)| k != "model_name");
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    let mut spec = Map::new();
    spec.insert("model_name".into(), Value::String(name.into()));
    spec.extend(rest);
    spec
}

fn keys_of(m: &Map<String, Value>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

#[test]
fn clemcore_packaged_registry_resolves_every_name_to_the_same_entry() {
    let env = TestEnv::new();
    let Some(file) = clemcore_packaged_registry(env.path()) else {
        return;
    };
    let text = std::fs::read_to_string(&file).expect("extracted registry");
    let entries: Vec<Value> =
        serde_json::from_str(&text).expect("clemcore's registry is a JSON array");
    let abs = file
        .canonicalize()
        .expect("extracted file exists")
        .display()
        .to_string();
    let mut names: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["model_name"].as_str())
        .collect();
    names.dedup();
    assert!(names.len() >= 10, "the packaged registry has its models");
    for name in names {
        // Read alone, as a --registry file.
        let out = env.run(&[
            "models",
            "show",
            name,
            "--json",
            "--no-default-registry",
            "--registry",
            &abs,
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let ours: Map<String, Value> = serde_json::from_str(&stdout(&out)).expect("JSON object");
        let theirs = clemcore_plain_name_resolution(&entries, name, &abs);
        assert_eq!(ours, theirs, "{name} resolves to the same entry");
        assert_eq!(keys_of(&ours), keys_of(&theirs), "{name}: same key order");

        // The registry shipped with clemhost carries the same entry, as
        // clemcore's "packaged" one.
        let out = env.run(&["models", "show", name, "--json"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let shipped: Map<String, Value> = serde_json::from_str(&stdout(&out)).expect("JSON object");
        let theirs = clemcore_plain_name_resolution(&entries, name, "packaged");
        assert_eq!(
            shipped, theirs,
            "{name}: the shipped entry matches clemcore's packaged one"
        );
        assert_eq!(
            keys_of(&shipped),
            keys_of(&theirs),
            "{name}: same key order"
        );
    }
}

#[test]
fn malformed_registry_files_name_path_line_and_column() {
    let env = TestEnv::new();
    env.write("bad.json", "[\n  {\"model_name\": \"a\", \"backend\": \"b\"},\n  {\"model_name\": \"c\" \"backend\": \"d\"}\n]\n");
    let out = env.run(&["models", "show", "a", "--registry", "bad.json"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.json:3:22:"), "{err}");

    // A broken ./model_registry.json is an error too (clemcore ignores it).
    env.write(
        "model_registry.json",
        "{\"model_name\": \"x\",\n \"backend\": }",
    );
    let out = env.run(&["models", "list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let cwd_file = format!("{}/model_registry.json", cwd_text(&env));
    assert!(err.contains(&format!("{cwd_file}:2:13:")), "{err}");

    // An entry that is not an object: its own position.
    env.write(
        "model_registry.json",
        "[\n  {\"model_name\": \"x\", \"backend\": \"b\"},\n    \"oops\"\n]",
    );
    let out = env.run(&["models", "list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("{cwd_file}:3:5: entry 1")), "{err}");

    // A --registry entry without backend is an error with its position.
    env.write(
        "nobackend.json",
        "[{\"model_name\": \"x\", \"backend\": \"b\"}, {\"model_name\": \"y\"}]",
    );
    let out = env.run(&["models", "list", "--registry", "nobackend.json"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("nobackend.json:1:39: entry 1 (model_name \"y\") has no \"backend\""),
        "{err}"
    );
}

#[test]
fn non_string_backend_or_model_name_is_refused_with_the_field_and_fix() {
    let env = TestEnv::new();
    env.write(
        "types.json",
        "[\n  {\"model_name\": \"a\", \"backend\": \"b\"},\n  {\"model_name\": \"c\", \"backend\": 123}\n]",
    );
    let out = env.run(&["models", "list", "--registry", "types.json"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("types.json:3:3: entry 1: \"backend\" is a number, but it must be a string"),
        "{err}"
    );
    assert!(err.contains("\"backend\": \"openai\""), "the fix: {err}");
    env.write("names.json", r#"[{"model_name": ["a"], "backend": "b"}]"#);
    let out = env.run(&["models", "list", "--registry", "names.json"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("names.json:1:2: entry 0: \"model_name\" is an array"),
        "{err}"
    );
}

/// A `model_config` that is not an object (`"model_config": "s"`) was taken
/// without a word and its settings silently lost.
#[test]
fn a_model_config_that_is_not_an_object_is_refused() {
    let env = TestEnv::new();
    env.write(
        "mc.json",
        "[\n  {\"model_name\": \"a\", \"backend\": \"b\", \"model_config\": \"s\"}\n]",
    );
    let out = env.run(&["models", "list", "--registry", "mc.json"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "mc.json:2:3: entry 0: \"model_config\" is a string, but it must be an object"
        ),
        "{err}"
    );
}

#[test]
fn duplicate_keys_warn_with_both_lines_and_the_later_value_counts() {
    let env = TestEnv::new();
    env.write(
        "dup.json",
        "[{\"model_name\": \"m\",\n  \"backend\": \"x\",\n  \"backend\": \"echo\"}]",
    );
    let out = env.run(&[
        "models",
        "show",
        "m",
        "--registry",
        "dup.json",
        "--no-default-registry",
    ]);
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{se}");
    assert!(
        se.contains("dup.json:3:3: the key \"backend\" appears again (first at line 2, column 3)"),
        "{se}"
    );
    assert!(so.contains("echo"), "the later value is used: {so}");
}

#[test]
fn a_utf8_byte_order_mark_is_accepted() {
    let env = TestEnv::new();
    env.write(
        "bom.json",
        "\u{feff}[{\"model_name\": \"m\", \"backend\": \"echo\"}]",
    );
    let out = env.run(&["models", "show", "m", "--registry", "bom.json"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_registry_of_twenty_thousand_entries_loads_with_positions() {
    // Positions used to be found by rescanning the text for every entry
    // (2.6 s for 20k entries); this checks the result, not the time.
    let env = TestEnv::new();
    let mut text = String::from("[\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "  {{\"model_name\": \"m{i}\", \"backend\": \"echo\"}},\n"
        ));
    }
    text.push_str("  {\"model_name\": \"last\"}\n]\n");
    env.write("big.json", &text);
    let out = env.run(&["models", "list", "--registry", "big.json"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("big.json:20002:3: entry 20000 (model_name \"last\") has no \"backend\""),
        "{err}"
    );
}

#[test]
fn cwd_registry_without_backend_is_ignored_with_a_warning() {
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "my-local", "backend": "openai_compatible"}, {"model_name": "broken"}]"#,
    );
    let out = env.run(&["models", "show", "my-local"]);
    assert!(
        !out.status.success(),
        "the whole file is left out, as in clemcore"
    );
    let err = stderr(&out);
    assert!(err.contains("has no \"backend\""), "{err}");
    assert!(err.contains("is ignored"), "{err}");
}

#[test]
fn registry_files_come_in_order_and_single_objects_work() {
    let env = TestEnv::new();
    env.write(
        "first.json",
        r#"{"model_name": "gpt-4o", "backend": "echo", "note": "first"}"#,
    );
    env.write("model_registry.json", r#"[{"model_name": "gpt-4o", "backend": "openai_compatible"}, {"model_name": "solo", "backend": "echo"}]"#);
    let out = env.run(&[
        "models",
        "show",
        "gpt-4o",
        "--json",
        "--registry",
        "first.json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(spec["backend"], "echo");
    assert_eq!(spec["note"], "first");
    let first = env
        .path()
        .join("first.json")
        .canonicalize()
        .expect("exists");
    assert_eq!(spec["lookup_source"], first.display().to_string().as_str());

    let out = env.run(&["models", "show", "gpt-4o", "--json"]);
    let spec: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        spec["backend"], "openai_compatible",
        "./model_registry.json precedes the shipped one"
    );

    let out = env.run(&[
        "models",
        "show",
        "gpt-4o-mini",
        "--json",
        "--no-default-registry",
    ]);
    assert!(!out.status.success(), "the shipped registry is left out");
    assert!(stderr(&out)
        .contains("No model spec unifies with model selector={\"model_name\":\"gpt-4o-mini\"}"));
}

#[test]
fn unknown_models_list_the_closest_names() {
    let env = TestEnv::new();
    let out = env.run(&["models", "show", "gpt-4"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("No model spec unifies with model selector={\"model_name\":\"gpt-4\"}"),
        "{err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("closest registered names"))
        .unwrap_or_else(|| panic!("no suggestion line in: {err}"));
    assert!(
        line.contains("gpt-4o") && line.contains("gpt-4o-mini"),
        "{line}"
    );
    assert!(
        stdout(&out).is_empty(),
        "nothing on stdout for a failed show"
    );
}

#[test]
fn cli_json_arguments_use_apostrophes_and_merge_model_config() {
    let env = TestEnv::new();
    let out = env.run(&[
        "models",
        "show",
        "{'model_name':'llama-3.3-70b','model_config':{'padding_side':'left','extra_body':{'top_k':20}}}",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let mc = obj(&spec["model_config"]);
    assert_eq!(
        keys_of(mc)[..2],
        ["padding_side", "extra_body"],
        "the query's keys come first"
    );
    assert_eq!(mc["extra_body"]["top_k"], 20);
    assert_eq!(
        mc["premade_chat_template"], true,
        "the entry's settings are merged in"
    );

    let out = env.run(&[
        "models",
        "show",
        "{'model_name':'llama-3.3-70b','model_config':{'padding_side':'right'}}",
    ]);
    assert!(
        !out.status.success(),
        "a conflicting setting does not unify"
    );
    assert!(
        stderr(&out).contains("differs in: model_config"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn builtin_players_need_no_registry() {
    let env = TestEnv::new();
    for (name, backend) in [
        ("mock", "_player_programmed"),
        ("programmatic", "_player_programmed"),
        ("human", "_player_human"),
        ("terminal", "_player_human"),
    ] {
        let out = env.run(&["models", "show", name, "--json", "--no-default-registry"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let spec: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        assert_eq!(
            spec,
            serde_json::json!({"model_name": name, "backend": backend})
        );
    }
}

#[test]
fn old_format_entries_are_read_with_a_warning() {
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "old-hf", "backend": "huggingface_local", "huggingface_id": "org/model",
             "premade_chat_template": true, "eos_to_cull": "</s>"}]"#,
    );
    let out = env.run(&["models", "show", "old-hf", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(spec["model_config"]["premade_chat_template"], true);
    assert_eq!(spec["model_config"]["eos_to_cull"], "</s>");
    assert!(spec.get("premade_chat_template").is_none());
    let err = stderr(&out);
    assert!(
        err.contains("old clembench format") && err.contains("model_config"),
        "{err}"
    );
}

#[test]
fn models_list_shows_backend_plugin_and_key() {
    let env = TestEnv::new();
    env.write(
        "key.json",
        r#"{"anthropic": {"api_key": "sk-ant-0123456789"}}"#,
    );
    let out = env.run(&["models", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let models = listing["models"].as_array().expect("models array");
    let find = |name: &str| {
        models
            .iter()
            .find(|m| m["model_name"] == name)
            .unwrap_or_else(|| panic!("{name} is listed"))
    };
    let claude = find("claude-sonnet-4.5");
    assert_eq!(claude["backend"], "anthropic");
    assert_eq!(claude["key"]["name"], "anthropic");
    assert_eq!(claude["key"]["present"], true);
    let gpt = find("gpt-4o");
    assert_eq!(gpt["key"]["present"], false);
    assert_eq!(gpt["key"]["required"], true);
    let slurk = find("slurk");
    assert_eq!(
        slurk["plugin_installed"], false,
        "clemhost has no slurk plugin"
    );

    // Filtering by backend, and the table form.
    let out = env.run(&["models", "list", "--backend", "anthropic"]);
    assert!(out.status.success());
    let table = stdout(&out);
    assert!(
        table.contains("claude-opus-4.5") && table.contains("claude-sonnet-4.5"),
        "{table}"
    );
    assert!(!table.contains("gpt-4o"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("claude-sonnet-4.5"))
        .expect("a row");
    assert!(row.contains("yes (anthropic)"), "{row}");
}

#[test]
fn models_list_and_show_find_installed_plugins() {
    let env = TestEnv::new();
    let echo = crate::util::built_plugin("echo");
    let out = env.run(&["models", "list", "--backend", "echo", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let models = listing["models"].as_array().expect("models array");
    let echo1 = models
        .iter()
        .find(|m| m["model_name"] == "echo-1")
        .expect("echo-1 is shipped");
    assert_eq!(echo1["plugin_installed"], true);
    assert_eq!(echo1["plugin"], echo.display().to_string().as_str());
    assert!(
        echo1["key"].is_null(),
        "the echo plugin reads no key: {echo1}"
    );
    assert!(
        models.iter().all(|m| m["backend"] == "echo"),
        "filtered by backend"
    );

    let out = env.run(&["models", "show", "echo-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("(plugin {})", echo.display())),
        "{text}"
    );
    assert!(text.contains("key:        none needed"), "{text}");
}
