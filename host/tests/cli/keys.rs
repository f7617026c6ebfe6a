//! key.json as a user meets it: which file is used, how keys are shown,
//! what a malformed file says, and that a secret never reaches any output.

use crate::util::{files_containing, stderr, stdout, FakeServer, TestEnv};
use serde_json::Value;
use std::process::Output;

fn keys_json(env: &TestEnv) -> Value {
    let out = env.run(&["keys", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("keys list --json prints JSON")
}

/// The first line of a command's output that starts with `prefix`.
fn line_of<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
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
        "****",
        "a short secret shows no characters at all"
    );
    let mistral = section(&listing, "mistral").expect("mistral");
    assert_eq!(mistral["fields"]["api_key"], "[MISSING]");
    assert_eq!(mistral["active"], false);
    let slurk = section(&listing, "slurk").expect("slurk");
    assert_eq!(slurk["fields"]["base_url"], "http://localhost:5000");

    let out = env.run(&["keys", "list"]);
    assert!(out.status.success());
    let table = stdout(&out);
    let row = line_of(&table, "openai");
    assert!(
        row.contains("[ active ]") && row.contains("sk-p...mnop"),
        "{row}"
    );
    let row = line_of(&table, "mistral");
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
    let line = line_of(&text, "key:");
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

/// Issue 11, bug 2: a gated huggingface_local entry without a token is
/// refused by the host before any model opens, with the message a missing
/// remote key gets (section, files searched, HF_TOKEN), and the same exit code.
#[test]
fn a_gated_model_without_a_token_is_refused_before_anything_opens() {
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "gated", "backend": "huggingface_local", "huggingface_id": "org/gated-model",
             "model_config": {"requires_api_key": true}},
            {"model_name": "remote", "backend": "openai", "model_id": "gpt-4o"}]"#,
    );
    let remote = env.run(&["run", "-g", "hellogame", "-m", "remote"]);
    let out = env.run(&["run", "-g", "hellogame", "-m", "gated"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), remote.status.code(), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("backend 'huggingface_local' needs a key"),
        "{err}"
    );
    assert!(err.contains("\"huggingface\""), "{err}");
    assert!(err.contains("HF_TOKEN"), "{err}");
    assert!(
        err.contains(&env.home().join(".clemcore/key.json").display().to_string()),
        "the files searched are listed: {err}"
    );
    assert!(
        !err.contains("cannot open model"),
        "the host must refuse, not the plugin: {err}"
    );
    assert!(!env.path().join("results").exists(), "nothing was played");

    // With HF_TOKEN the host lets it through (to the plugin, which then
    // looks for the model).
    let out = env
        .cmd()
        .args(["run", "-g", "hellogame", "-m", "gated"])
        .env("HF_TOKEN", "hf_token_for_the_gated_model")
        .output()
        .expect("clemhost runs");
    assert!(!stderr(&out).contains("needs a key"), "{}", stderr(&out));
}

fn registry_with_two_nodes(env: &TestEnv) {
    env.write(
        "model_registry.json",
        r#"[{"model_name": "on-a", "backend": "openai_compatible", "key_name": "node_a", "model_id": "m-a"},
            {"model_name": "on-b", "backend": "openai_compatible", "key_name": "node_b", "model_id": "m-b"},
            {"model_name": "plain", "backend": "openai_compatible", "model_id": "m"}]"#,
    );
}

/// Issue 11, "several OpenAI-compatible servers at once": each entry reads
/// the key section it names, so two entries reach two servers with their
/// own keys, and the listings show which section each uses.
#[test]
fn two_entries_reach_two_servers_with_their_own_keys() {
    let env = TestEnv::new();
    let a = FakeServer::chat("GREET: Hello from a");
    let b = FakeServer::chat("GREET: Hello from b");
    env.write(
        "home/.clemcore/key.json",
        &format!(
            r#"{{"node_a": {{"api_key": "key-for-node-a-0123456789", "base_url": "{}/v1"}},
                "node_b": {{"api_key": "key-for-node-b-0123456789", "base_url": "{}/v1"}},
                "openai_compatible": {{"base_url": "http://127.0.0.1:9/v1"}}}}"#,
            a.base_url, b.base_url
        ),
    );
    registry_with_two_nodes(&env);
    for model in ["on-a", "on-b"] {
        let out = env.run(&["run", "-g", "hellogame", "-m", model, "-e", "greet_en"]);
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(4),
            "{model}: {}",
            stderr(&out)
        );
    }
    let (ra, rb) = (a.requests(), b.requests());
    assert!(!ra.is_empty() && !rb.is_empty(), "both servers were called");
    for r in &ra {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer key-for-node-a-0123456789")
        );
        assert!(r.body.contains("\"m-a\""), "{}", r.body);
    }
    for r in &rb {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer key-for-node-b-0123456789")
        );
        assert!(r.body.contains("\"m-b\""), "{}", r.body);
    }

    let out = env.run(&["models", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let row = |name: &str| {
        listing["models"]
            .as_array()
            .expect("models")
            .iter()
            .find(|m| m["model_name"] == name)
            .cloned()
            .expect("listed")
    };
    assert_eq!(row("on-a")["key_name"], "node_a");
    assert_eq!(row("on-a")["key"]["name"], "node_a");
    assert_eq!(row("on-a")["key"]["present"], true);
    assert_eq!(row("plain")["key"]["name"], "openai_compatible");
    let table = stdout(&env.run(&["models", "list"]));
    let line = line_of(&table, "on-b");
    assert!(line.contains("yes (node_b)"), "{line}");

    let keys = keys_json(&env);
    assert_eq!(
        section(&keys, "node_a").expect("node_a")["named_by"],
        serde_json::json!(["on-a"])
    );
    let table = stdout(&env.run(&["keys", "list"]));
    let line = line_of(&table, "node_b");
    assert!(line.contains("key_name of on-b"), "{line}");
}

/// Issue 12, item 10: `./key.json` (which may come with a cloned repository)
/// cannot send a key from the environment to an address it chooses; the same
/// base_url in the user's own key file can.
#[test]
fn a_key_file_in_the_working_directory_cannot_redirect_an_environment_key() {
    let env = TestEnv::new();
    let attacker = FakeServer::chat("GREET: thanks for the key");
    let secret = "sk-env-SECRET-must-stay-home-0123";
    env.write(
        "model_registry.json",
        r#"[{"model_name": "o", "backend": "openai", "model_id": "gpt-4o"}]"#,
    );
    let only_base_url = format!(
        r#"{{"openai": {{"base_url": "{}/v1"}}}}"#,
        attacker.base_url
    );
    let run_with_env_key = || {
        env.cmd()
            .args(["run", "-g", "hellogame", "-m", "o", "-e", "greet_en"])
            .env("OPENAI_API_KEY", secret)
            .output()
            .expect("clemhost runs")
    };
    env.write("key.json", &only_base_url);
    let out = run_with_env_key();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        attacker.requests().is_empty(),
        "the key went to the key file's address"
    );
    assert!(err.contains("does not send $OPENAI_API_KEY"), "{err}");
    assert!(err.contains("base_url"), "{err}");
    assert!(!err.contains(secret), "{err}");

    // The user's own key file may point the variable's key elsewhere.
    std::fs::remove_file(env.path().join("key.json")).expect("rm");
    env.write("home/.clemcore/key.json", &only_base_url);
    let out = run_with_env_key();
    let seen = attacker.requests();
    assert!(!seen.is_empty(), "{}", stderr(&out));
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
}

/// Issue 12, item 12: credentials in URLs and in a server's echo of the
/// request reach neither the terminal nor the results.
#[test]
fn credentials_in_urls_and_echoed_headers_are_redacted_everywhere() {
    let env = TestEnv::new();
    let password = "PASSWORD-in-url-77";
    let key = "sk-echoed-key-SECRET-4242";
    let echo = FakeServer::start(400, |r| {
        serde_json::json!({"error": "bad request", "you_sent": format!("authorization: {}", r.header("authorization").unwrap_or(""))}).to_string()
    });
    let with_password = echo
        .base_url
        .replace("http://", &format!("http://user:{password}@"));
    env.write(
        "key.json",
        &format!(
            r#"{{"node": {{"api_key": "{key}", "base_url": "{with_password}/v1"}},
                "pasted": {{"api_key": "x", "base_url": "sk-proj-PASTED-KEY-999"}}}}"#
        ),
    );
    env.write(
        "model_registry.json",
        r#"[{"model_name": "n", "backend": "openai_compatible", "key_name": "node", "model_id": "m"},
            {"model_name": "p", "backend": "openai_compatible", "key_name": "pasted", "model_id": "m"}]"#,
    );
    for args in [&["keys", "list"][..], &["keys", "list", "--json"]] {
        let out = env.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_no_secret(&out, password);
        assert_no_secret(&out, "sk-proj-PASTED-KEY-999");
        assert!(stdout(&out).contains("user:***@"), "{}", stdout(&out));
    }
    let out = env.run(&[
        "run",
        "-g",
        "hellogame",
        "-m",
        "n",
        "-e",
        "greet_en",
        "--retries",
        "1",
    ]);
    assert!(!echo.requests().is_empty(), "{}", stderr(&out));
    assert_no_secret(&out, key);
    assert_no_secret(&out, password);
    let results = env.path().join("results");
    assert!(results.exists(), "{}", stderr(&out));
    assert_eq!(
        files_containing(&results, key),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_containing(&results, password),
        Vec::<std::path::PathBuf>::new()
    );

    let out = env.run(&["run", "-g", "hellogame", "-m", "p", "-e", "greet_en"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("must start with http://"),
        "{}",
        stderr(&out)
    );
    assert_no_secret(&out, "sk-proj-PASTED-KEY-999");
}

/// Certificate settings decide where a key can end up as much as an
/// address does: a network attacker with the certificate of `ca_cert`, or
/// any certificate at all without checks, reads the key.
#[test]
fn a_working_directory_cannot_loosen_tls_for_an_environment_key() {
    let env = TestEnv::new();
    let secret = "sk-env-SECRET-must-stay-home-0123";
    env.write(
        "evil-ca.pem",
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    );
    let run_with_env_key = || {
        env.cmd()
            .args(["run", "-g", "hellogame", "-m", "o", "-e", "greet_en"])
            .env("OPENAI_API_KEY", secret)
            .output()
            .expect("clemhost runs")
    };
    let plain = r#"[{"model_name": "o", "backend": "openai", "model_id": "gpt-4o"}]"#;
    for (key_json, registry, field) in [
        (
            r#"{"openai": {"insecure_skip_tls_verify": true}}"#,
            plain,
            "insecure_skip_tls_verify",
        ),
        (
            r#"{"openai": {"ca_cert": "evil-ca.pem"}}"#,
            plain,
            "ca_cert",
        ),
        (
            "",
            r#"[{"model_name": "o", "backend": "openai", "model_id": "gpt-4o", "model_config": {"insecure_skip_tls_verify": true}}]"#,
            "insecure_skip_tls_verify",
        ),
        (
            "",
            r#"[{"model_name": "o", "backend": "openai", "model_id": "gpt-4o", "model_config": {"ca_cert": "evil-ca.pem"}}]"#,
            "ca_cert",
        ),
    ] {
        let _ = std::fs::remove_file(env.path().join("key.json"));
        if !key_json.is_empty() {
            env.write("key.json", key_json);
        }
        env.write("model_registry.json", registry);
        let out = run_with_env_key();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{key_json} {registry}: {err}");
        assert!(
            err.contains("does not send $OPENAI_API_KEY"),
            "{key_json} {registry}: {err}"
        );
        assert!(err.contains(field), "{err}");
        assert!(!err.contains(secret), "{err}");
    }
}

#[test]
fn keys_of_no_known_shape_echoed_by_a_server_are_masked_by_their_value() {
    let env = TestEnv::new();
    let key = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6";
    let echo = FakeServer::start(400, move |r| {
        let sent = r
            .header("authorization")
            .unwrap_or("")
            .replace("Bearer ", "");
        format!(
            "{{\"error\": \"bad key {sent}\", \"html\": \"&quot;x-api-key&quot;: &quot;{sent}&quot;\"}}"
        )
    });
    env.write(
        "key.json",
        &format!(
            r#"{{"openai_compatible": {{"api_key": "{key}", "base_url": "{}/v1"}}}}"#,
            echo.base_url
        ),
    );
    env.write(
        "model_registry.json",
        r#"[{"model_name": "n", "backend": "openai_compatible", "model_id": "m"}]"#,
    );
    let out = env.run(&[
        "run",
        "-g",
        "hellogame",
        "-m",
        "n",
        "-e",
        "greet_en",
        "--retries",
        "1",
    ]);
    assert!(!echo.requests().is_empty(), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad key ***"), "{}", stderr(&out));
    assert_no_secret(&out, key);
    let results = env.path().join("results");
    assert!(results.exists(), "{}", stderr(&out));
    assert_eq!(
        files_containing(&results, key),
        Vec::<std::path::PathBuf>::new()
    );
}
