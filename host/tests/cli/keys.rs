//! key.json as a user meets it: which file is used, how keys are shown,
//! what a malformed file says, and that a secret never reaches any output.

use crate::util::{stderr, stdout, TestEnv};
use serde_json::Value;
use std::process::Output;

fn keys_json(env: &TestEnv) -> Value {
    let out = env.run(&["keys", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("keys list --json prints JSON")
}

fn section<'a>(listing: &'a Value, name: &str) -> Option<&'a Value> {
    listing["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["name"] == name)
}

#[test]
fn key_files_are_searched_in_order() {
    let env = TestEnv::new();
    let xdg = env.home().join(".config/clemhost/key.json");
    let clemcore = env.home().join(".clemcore/key.json");
    let cwd = env.path().join("key.json");

    // None at all: environment variables only.
    let listing = keys_json(&env);
    assert!(listing["key_file"].is_null());
    let searched: Vec<&str> = listing["searched"]
        .as_array()
        .expect("searched")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(searched.len(), 3, "{searched:?}");
    assert!(searched[0].ends_with("/key.json"));
    assert_eq!(searched[1], clemcore.display().to_string());
    assert_eq!(searched[2], xdg.display().to_string());

    env.write(
        "home/.config/clemhost/key.json",
        r#"{"mistral": {"api_key": "mistral-key-from-config"}}"#,
    );
    assert_eq!(
        keys_json(&env)["key_file"],
        xdg.display().to_string().as_str()
    );
    env.write(
        "home/.clemcore/key.json",
        r#"{"cohere": {"api_key": "cohere-key-from-clemcore"}}"#,
    );
    let listing = keys_json(&env);
    assert_eq!(listing["key_file"], clemcore.display().to_string().as_str());
    assert!(section(&listing, "cohere").is_some());
    assert!(
        section(&listing, "mistral").is_none(),
        "files are not merged"
    );
    env.write(
        "key.json",
        r#"{"openai": {"api_key": "openai-key-from-cwd"}}"#,
    );
    let listing = keys_json(&env);
    let used = listing["key_file"].as_str().expect("a file");
    assert_eq!(
        std::path::Path::new(used).canonicalize().expect("exists"),
        cwd.canonicalize().expect("exists")
    );
    assert!(section(&listing, "openai").is_some());
    assert!(section(&listing, "cohere").is_none());
}

#[test]
fn keys_are_masked_as_clemcore_masks_them() {
    let env = TestEnv::new();
    env.write(
        "key.json",
        r#"{"openai": {"api_key": "sk-proj-abcdefghijklmnop", "organization": "org-team"},
            "anthropic": {"api_key": "short42"},
            "mistral": {"api_key": "  "},
            "slurk": {"api_key": "slurk-admin-token-value", "base_url": "http://localhost:5000"}}"#,
    );
    let listing = keys_json(&env);
    let openai = section(&listing, "openai").expect("openai");
    assert_eq!(openai["fields"]["api_key"], "sk-p...mnop");
    assert_eq!(
        openai["fields"]["organisation"], "org-team",
        "organization is read as organisation"
    );
    assert_eq!(openai["active"], true);
    assert_eq!(
        section(&listing, "anthropic").expect("anthropic")["fields"]["api_key"],
        "****42"
    );
    let mistral = section(&listing, "mistral").expect("mistral");
    assert_eq!(mistral["fields"]["api_key"], "[MISSING]");
    assert_eq!(mistral["active"], false);
    let slurk = section(&listing, "slurk").expect("slurk");
    assert_eq!(slurk["fields"]["base_url"], "http://localhost:5000");

    let out = env.run(&["keys", "list"]);
    assert!(out.status.success());
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.starts_with("openai"))
        .expect("openai row");
    assert!(
        row.contains("[ active ]") && row.contains("sk-p...mnop"),
        "{row}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("mistral"))
        .expect("mistral row");
    assert!(row.contains("[MISSING]"), "{row}");
}

#[test]
fn environment_variables_stand_in_for_missing_sections() {
    let env = TestEnv::new();
    env.write(
        "key.json",
        r#"{"anthropic": {"api_key": "anthropic-file-key-1"}}"#,
    );
    let out = env
        .cmd()
        .args(["keys", "list", "--json"])
        .env("OPENAI_API_KEY", "sk-env-0123456789abcdef")
        .env("GOOGLE_API_KEY", "google-env-key-00000")
        .output()
        .expect("clemhost runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let listing: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let openai = section(&listing, "openai").expect("openai from the environment");
    assert_eq!(openai["source"], "$OPENAI_API_KEY");
    assert_eq!(openai["fields"]["api_key"], "sk-e...cdef");
    assert_eq!(
        section(&listing, "google").expect("google")["source"],
        "$GOOGLE_API_KEY"
    );
    assert!(section(&listing, "mistral").is_none());

    // models list sees the key too.
    let out = env
        .cmd()
        .args(["models", "list", "--backend", "openai", "--json"])
        .env("OPENAI_API_KEY", "sk-env-0123456789abcdef")
        .output()
        .expect("clemhost runs");
    let listing: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    for m in listing["models"].as_array().expect("models") {
        assert_eq!(m["key"]["present"], true, "{m}");
        assert_eq!(m["key"]["source"], "$OPENAI_API_KEY", "{m}");
    }
}

#[test]
fn a_missing_key_names_the_files_and_the_variable() {
    let env = TestEnv::new();
    let out = env.run(&["models", "show", "mistral-large"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("key:"))
        .expect("a key line");
    assert!(line.contains("MISSING"), "{line}");
    assert!(line.contains("backend 'mistral'"), "{line}");
    assert!(
        line.contains(&env.home().join(".clemcore/key.json").display().to_string()),
        "{line}"
    );
    assert!(line.contains("MISTRAL_API_KEY"), "{line}");
}

#[test]
fn malformed_key_files_name_path_line_and_column() {
    let env = TestEnv::new();
    let secret = "sk-malformed-SECRET-7f3a9c";
    env.write(
        "key.json",
        &format!("{{\n  \"openai\": {{\"api_key\": \"{secret}\",}}\n}}"),
    );
    let out = env.run(&["keys", "list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let file = env.path().canonicalize().expect("exists").join("key.json");
    assert!(
        err.contains(&format!("{}:2:", file.display())) || err.contains("key.json:2:"),
        "{err}"
    );
    assert!(err.contains("key.json:2:54:"), "{err}");
    assert_no_secret(&out, secret);

    env.write(
        "key.json",
        "{\"openai\": {\"api_key\": \"x\"},\n \"google\": \"just-a-string\"}",
    );
    let out = env.run(&["keys", "list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("key.json:2:2: section \"google\""), "{err}");
    assert!(!err.contains("just-a-string"), "{err}");
}

fn assert_no_secret(out: &Output, secret: &str) {
    let all = format!("{}{}", stdout(out), stderr(out));
    // Also no long piece of it (a partial mask would leak most of it).
    let middle = &secret[3..secret.len() - 3];
    assert!(
        !all.contains(secret) && !all.contains(middle),
        "the secret leaked into the output:\n{all}"
    );
}

#[test]
fn a_key_from_key_json_appears_in_no_output() {
    let env = TestEnv::new();
    let secrets = [
        "sk-proj-SECRETopenai0123456789",
        "sk-ant-SECRETanthropic98765",
        "hf_SECREThuggingface55555",
        "SECRET-compat-424242",
        "SECRET-admin-token-1",
    ];
    env.write(
        "key.json",
        &format!(
            r#"{{"openai": {{"api_key": "{}", "organisation": "org-visible"}},
                 "anthropic": {{"api_key": "{}"}},
                 "huggingface": {{"api_key": "{}"}},
                 "openai_compatible": {{"api_key": "{}", "base_url": "http://localhost:8000/v1"}},
                 "slurk": {{"api_key": "x", "admin_token": "{}"}}}}"#,
            secrets[0], secrets[1], secrets[2], secrets[3], secrets[4]
        ),
    );
    env.write(
        "model_registry.json",
        r#"[{"model_name": "gated", "backend": "huggingface_local", "huggingface_id": "org/gated",
             "model_config": {"requires_api_key": true}},
            {"model_name": "compat", "backend": "openai_compatible", "model_id": "m"}]"#,
    );
    let commands: &[&[&str]] = &[
        &["keys", "list"],
        &["keys", "list", "--json"],
        &["-vvv", "keys", "list", "--json"],
        &["models", "list"],
        &["models", "list", "--json"],
        &["-vvv", "models", "list"],
        &["models", "show", "gpt-4o"],
        &["models", "show", "gpt-4o", "--json"],
        &["-vvv", "models", "show", "claude-sonnet-4.5"],
        &["models", "show", "gated"],
        &["models", "show", "compat"],
        &["models", "show", "no-such-model"],
        &[
            "models",
            "show",
            "{'model_name':'gpt-4o','model_id':'other'}",
        ],
    ];
    for args in commands {
        let out = env.run(args);
        for secret in &secrets {
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert!(
                !all.contains(secret),
                "`clemhost {}` printed a secret:\n{all}",
                args.join(" ")
            );
        }
    }
}
