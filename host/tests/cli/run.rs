//! `clemhost run`, `score`, `eval` and `transcribe`, as a user runs them.

use crate::times::without_times;
use crate::util::{built_plugin, plugin_build_dir, shared_dir, stderr, stdout, TestEnv};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// Every file under `dir`, relative, sorted (none when `dir` does not exist).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The shape of a JSON value: key names, nesting and types (ints and
/// floats apart), never the values themselves.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => "float".into(),
        Value::Number(_) => "int".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// A number from the summary table `clemhost run` prints.
fn summary(out: &std::process::Output, row: &str) -> u64 {
    stdout(out)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(row)
                .map(|rest| rest.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no '{row}' row in:\n{}", stdout(out)))
}

fn mock_env() -> (TestEnv, PathBuf) {
    let env = TestEnv::new();
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock"]);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    let run_dir = env.path().join("results/mock");
    (env, run_dir)
}

#[test]
fn mock_run_matches_the_tree_clemcore_writes() {
    let Some(shared) = shared_dir() else { return };
    let golden = shared.join("reference/clemcore-results-examples/mock");
    let (_env, ours) = mock_env();
    assert_eq!(
        tree(&ours),
        tree(&golden),
        "same files as clemcore 3.7.2 writes"
    );
    for rel in tree(&golden) {
        let (g, o) = (read(&golden.join(&rel)), read(&ours.join(&rel)));
        assert_eq!(
            shape(&o),
            shape(&g),
            "{} differs in keys or types",
            rel.display()
        );
    }
    // The formatting too: 2-space indent and Python's float format.
    let text = std::fs::read_to_string(ours.join("run.json")).expect("run.json");
    assert!(
        text.starts_with("{\n  \"clem_version\": \"3.7.2\",\n"),
        "{text}"
    );
    assert!(text.contains("\"temperature\": 0.0,"), "{text}");
}

#[test]
fn mock_run_writes_what_clemcore_writes() {
    // Written by clemcore 3.7.2 with a stand-in hellogame over the same
    // instances (scripts/make-golden-clemcore): every value must match,
    // in the same key order, except times and the game's path.
    let golden = crate::util::repo_root().join("games/hellogame/tests/clemcore-mock");
    let (_env, ours) = mock_env();
    assert_eq!(tree(&ours), tree(&golden));
    for rel in tree(&golden) {
        let mut g = without_times(&read(&golden.join(&rel)));
        let mut o = without_times(&read(&ours.join(&rel)));
        for v in [&mut g, &mut o] {
            if let Some(game) = v.pointer_mut("/games/hellogame") {
                game["game_path"] = Value::Null;
            }
        }
        assert_eq!(
            serde_json::to_string(&o).expect("json"),
            serde_json::to_string(&g).expect("json"),
            "{} differs from clemcore's",
            rel.display()
        );
    }
}

#[test]
fn mock_greeter_is_recorded_as_clemcore_records_it() {
    let (_env, ours) = mock_env();
    let ep = ours.join("hellogame/greet_en/instance_00003");
    let req = read(&ep.join("player_1.requests.json"));
    let call = &req["calls"][0]["call"];
    assert_eq!(call["manipulated_prompt_obj"]["role"], "user");
    assert_eq!(
        call["raw_response_obj"],
        serde_json::json!({"clem_player": {"response": "GREET: Hello Ted!", "model_name": "mock"}})
    );
    let inter = read(&ep.join("interactions.json"));
    let last = &inter["turns"][0][4]["action"];
    assert_eq!(last["type"], "greeting failed");
    let name = read(&ep.join("instance.json"))["target_name"]
        .as_str()
        .expect("target_name")
        .to_lowercase();
    assert_eq!(last["content"], format!("missing words=[welcome,{name}]"));
}

fn contents(dir: &Path) -> BTreeMap<PathBuf, Value> {
    tree(dir)
        .into_iter()
        .map(|rel| {
            let v = without_times(&read(&dir.join(&rel)));
            (rel, v)
        })
        .collect()
}

#[test]
fn parallel_run_writes_what_a_sequential_run_writes() {
    let env = TestEnv::new();
    for (dir, parallel) in [("seq", "1"), ("par", "8")] {
        let out = env.run(&[
            "run",
            "-g",
            "hellogame",
            "-m",
            "mock",
            "-r",
            dir,
            "--parallel",
            parallel,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let seq = contents(&env.path().join("seq/mock"));
    let par = contents(&env.path().join("par/mock"));
    assert_eq!(seq.len(), 1 + 1 + 10 * 5);
    assert_eq!(seq, par);
}

#[test]
fn broken_instances_file_names_line_and_column_and_plays_nothing() {
    let env = TestEnv::new();
    env.write(
        "bad.json",
        "{\n  \"experiments\": [\n    {\"name\": \"x\",, }\n  ]\n}\n",
    );
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "-i", "bad.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad.json:3:18"), "{err}");
    assert!(!env.path().join("results").exists(), "nothing written");
}

#[test]
fn wrong_model_count_unknown_game_and_experiment_fail_before_playing() {
    let env = TestEnv::new();
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "-m", "mock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("hellogame takes 1 model but 2 were given"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["run", "-g", "nogame", "-m", "mock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown game 'nogame'; known games: hellogame"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "-e", "greet_xx"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no experiment 'greet_xx'"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("greet_en"), "{}", stderr(&out));
    assert!(!env.path().join("results").exists());
}

#[test]
fn own_instances_file_and_experiment_filter() {
    let env = TestEnv::new();
    env.write(
        "mine.json",
        r#"{"experiments": [
            {"name": "a", "game_instances": [{"game_id": 7, "prompt": "Greet Zoë.", "target_name": "Zoë"}]},
            {"name": "b", "game_instances": [{"game_id": 1, "prompt": "p", "target_name": "Bo"}]}]}"#,
    );
    let out = env.run(&[
        "run",
        "-g",
        "hellogame",
        "-m",
        "mock",
        "-i",
        "mine.json",
        "-e",
        "a",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ep = env.path().join("results/mock/hellogame/a/instance_00007");
    assert!(ep.join("completed.json").exists());
    assert!(!env.path().join("results/mock/hellogame/b").exists());
    // Non-ASCII is kept as is, not escaped.
    let text = std::fs::read_to_string(ep.join("instance.json")).expect("instance.json");
    assert!(text.contains("\"target_name\": \"Zoë\""), "{text}");
}

#[test]
fn score_eval_and_transcribe_over_a_run() {
    let (env, run_dir) = mock_env();
    let out = env.run(&["score"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let scores = read(&run_dir.join("hellogame/greet_en/instance_00000/scores.json"));
    let ep = &scores["episode scores"];
    for key in [
        "Success",
        "Aborted",
        "Lose",
        "Request Count",
        "Parsed Request Count",
        "Violated Request Count",
    ] {
        assert!(ep[key].is_u64(), "{key} in {ep}");
    }
    assert_eq!(ep["Lose"], 1);
    assert_eq!(ep["Main Score"], 0.0);
    assert!(scores["round scores"]["0"]["Request Count"].is_u64());

    let out = env.run(&["eval"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(env.path().join("results/results.csv")).expect("results.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            r#","-, clemscore","all, Average % Played","all, Average Quality Score","hellogame, % Played","hellogame, Quality Score""#
        )
    );
    assert_eq!(lines.next(), Some("mock,0.0,100.0,0.0,100.0,0.0"));
    let raw = std::fs::read_to_string(env.path().join("results/raw.csv")).expect("raw.csv");
    assert!(raw.starts_with(",game,model,experiment,episode,metric,value\n"));
    assert!(
        raw.contains(",hellogame,mock,greet_en,instance_00000,Played,1.0\n"),
        "{raw}"
    );
    assert!(env.path().join("results/results.html").exists());

    let out = env.run(&["transcribe"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html =
        std::fs::read_to_string(run_dir.join("hellogame/greet_en/instance_00001/transcript.html"))
            .expect("transcript");
    assert!(html.contains("GREET: Hello Ted!"));
}

/// A `model_registry.json` in the test's working directory with the test models.
fn write_test_registry(env: &TestEnv) {
    env.write(
        "model_registry.json",
        r#"[
  {"model_name": "echo-greeter", "backend": "echo", "model_config": {"reply": "GREET: Hello {name}, welcome!"}},
  {"model_name": "echo-rude", "backend": "echo", "model_config": {"reply": "Hi {name}"}},
  {"model_name": "slow-echo", "backend": "echo", "model_config": {"latency_ms": 400}},
  {"model_name": "flaky", "backend": "misbehave", "model_config": {"misbehave": "error", "error_kind": "unavailable"}},
  {"model_name": "nokey", "backend": "misbehave", "model_config": {"misbehave": "error", "error_kind": "auth"}},
  {"model_name": "stuck", "backend": "misbehave", "model_config": {"misbehave": "slow", "sleep_ms": 20000}}
]"#,
    );
}

fn plugin_dir() -> String {
    built_plugin("echo");
    built_plugin("misbehave");
    plugin_build_dir().display().to_string()
}

#[test]
fn echo_model_that_follows_the_rules_wins_every_episode() {
    let dir = plugin_dir();
    let env = TestEnv::new();
    write_test_registry(&env);
    let model = "echo-greeter";
    let out = env.run(&["--plugin-dir", &dir, "run", "-g", "hellogame", "-m", model]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "success"), 10);
    let req = read(
        &env.path()
            .join("results/echo-greeter/hellogame/greet_en/instance_00000/player_1.requests.json"),
    );
    let resp = &req["calls"][0]["call"]["raw_response_obj"];
    assert_eq!(
        resp["clem_player"]["response"],
        "GREET: Hello Peter, welcome!"
    );
    assert!(resp["clem_player"]["call_duration"].is_string());
    assert!(env.run(&["score"]).status.success());
    let out = env.run(&["eval"]);
    assert!(
        stdout(&out).contains("| echo-greeter | 100.0 | 100.0 | 100.0 |"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn retryable_errors_are_retried_and_every_attempt_is_recorded() {
    let dir = plugin_dir();
    let env = TestEnv::new();
    write_test_registry(&env);
    let model = "flaky";
    let out = env.run(&[
        "--plugin-dir",
        &dir,
        "run",
        "-g",
        "hellogame",
        "-m",
        model,
        "-e",
        "greet_en",
        "--retries",
        "3",
        "--retry-delay-ms",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let ep = env
        .path()
        .join("results/flaky/hellogame/greet_en/instance_00000");
    let err = read(&ep.join("error.json"));
    assert_eq!(err["error"], "UnavailableError");
    assert_eq!(err["kind"], "unavailable");
    assert!(!ep.join("completed.json").exists());
    let calls = read(&ep.join("player_1.requests.json"))["calls"].clone();
    let calls = calls.as_array().expect("calls list");
    assert_eq!(calls.len(), 3, "three attempts recorded");
    assert!(calls
        .iter()
        .all(|c| c["call"]["error"]["kind"] == "unavailable"));

    // Authentication errors are not retried.
    let model = "nokey";
    let out = env.run(&[
        "--plugin-dir",
        &dir,
        "run",
        "-g",
        "hellogame",
        "-m",
        model,
        "--retry-delay-ms",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let calls = read(
        &env.path()
            .join("results/nokey/hellogame/greet_en/instance_00000/player_1.requests.json"),
    );
    assert_eq!(calls["calls"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_call_past_the_timeout_fails_its_episode_with_a_timeout() {
    let dir = plugin_dir();
    let env = TestEnv::new();
    write_test_registry(&env);
    env.write(
        "one.json",
        r#"{"experiments": [{"name": "e", "game_instances": [{"game_id": 0, "prompt": "p", "target_name": "X"}]}]}"#,
    );
    let model = "stuck";
    let out = env.run(&[
        "--plugin-dir",
        &dir,
        "run",
        "-g",
        "hellogame",
        "-m",
        model,
        "-i",
        "one.json",
        "--timeout",
        "0.2",
        "--retries",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = read(
        &env.path()
            .join("results/stuck/hellogame/e/instance_00000/error.json"),
    );
    assert_eq!(err["kind"], "timeout");
}

#[test]
fn killed_run_leaves_whole_files_and_resume_finishes_the_rest() {
    let dir = plugin_dir();
    let env = TestEnv::new();
    write_test_registry(&env);
    let model = "slow-echo";
    let mut child = env
        .cmd()
        .args([
            "--plugin-dir",
            &dir,
            "run",
            "-g",
            "hellogame",
            "-m",
            model,
            "--parallel",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("clemhost starts");
    let exp = env.path().join("results/slow-echo/hellogame/greet_en");
    let completed = |exp: &Path| -> Vec<PathBuf> {
        tree(exp)
            .into_iter()
            .filter(|p| p.ends_with("completed.json"))
            .collect()
    };
    let start = std::time::Instant::now();
    while completed(&exp).len() < 2 {
        assert!(
            start.elapsed().as_secs() < 60,
            "the run never finished two episodes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let done_before = completed(&exp);
    assert!(done_before.len() < 10, "killed before the end");
    let before: BTreeMap<PathBuf, String> = done_before
        .iter()
        .map(|p| {
            (
                p.clone(),
                std::fs::read_to_string(exp.join(p)).expect("signal file"),
            )
        })
        .collect();
    for rel in tree(&env.path().join("results")) {
        if rel.extension().is_some_and(|e| e == "json") {
            read(&env.path().join("results").join(&rel)); // parses: no partial JSON
        }
    }

    let out = env.run(&[
        "--plugin-dir",
        &dir,
        "run",
        "-g",
        "hellogame",
        "-m",
        model,
        "--parallel",
        "4",
        "--resume",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(completed(&exp).len(), 10);
    assert_eq!(summary(&out, "skipped (complete)"), before.len() as u64);
    for (p, text) in before {
        assert_eq!(
            std::fs::read_to_string(exp.join(&p)).expect("signal file"),
            text,
            "{} replayed",
            p.display()
        );
    }
}

#[test]
fn human_player_answers_from_the_terminal() {
    let env = TestEnv::new();
    env.write(
        "one.json",
        r#"{"experiments": [{"name": "e", "game_instances": [{"game_id": 0, "prompt": "Greet Ada.", "target_name": "Ada"}]}]}"#,
    );
    let mut cmd = env.cmd();
    cmd.args(["run", "-g", "hellogame", "-m", "human", "-i", "one.json"]);
    let out = crate::util::typed_into(cmd, "GREET: Hello Ada, welcome!\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Greet Ada.\nYour response as Greeter:"),
        "{}",
        stderr(&out)
    );
    assert_eq!(summary(&out, "success"), 1);
    let req = read(
        &env.path()
            .join("results/human/hellogame/e/instance_00000/player_1.requests.json"),
    );
    assert_eq!(
        req["calls"][0]["call"]["raw_response_obj"],
        serde_json::json!({"clem_player": {"response": "GREET: Hello Ada, welcome!", "model_name": "human"}})
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_says_how_to_resume() {
    let dir = plugin_dir();
    let env = TestEnv::new();
    write_test_registry(&env);
    let child = env
        .cmd()
        .args([
            "--plugin-dir",
            &dir,
            "run",
            "-g",
            "hellogame",
            "-m",
            "slow-echo",
            "--parallel",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("clemhost starts");
    let exp = env.path().join("results/slow-echo/hellogame/greet_en");
    let start = std::time::Instant::now();
    while !tree(&exp).iter().any(|p| p.ends_with("completed.json")) {
        assert!(start.elapsed().as_secs() < 60, "no episode finished");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let out = child.wait_with_output().expect("finishes");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    let done = tree(&exp)
        .iter()
        .filter(|p| p.ends_with("completed.json"))
        .count();
    assert!((1..10).contains(&done), "{done} episodes completed");
    assert!(summary(&out, "interrupted") >= 1);
    assert!(
        !tree(&exp).iter().any(|p| p.ends_with("error.json")),
        "an interrupted episode is not an error"
    );
}

#[test]
fn aborted_episodes_score_nan_and_get_no_clemscore_as_in_clembench() {
    let dir = plugin_dir();
    let env = TestEnv::new();
    write_test_registry(&env);
    let out = env.run(&[
        "--plugin-dir",
        &dir,
        "run",
        "-g",
        "hellogame",
        "-m",
        "echo-rude",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "aborted"), 10);
    assert!(env.run(&["score"]).status.success());
    let text = std::fs::read_to_string(
        env.path()
            .join("results/echo-rude/hellogame/greet_en/instance_00000/scores.json"),
    )
    .expect("scores.json");
    // Python's json writes a float NaN as the bare token.
    assert!(text.contains("\"Main Score\": NaN"), "{text}");
    assert!(text.contains("\"Aborted\": 1,"), "{text}");
    assert!(env.run(&["eval"]).status.success());
    let csv = std::fs::read_to_string(env.path().join("results/results.csv")).expect("results.csv");
    assert_eq!(csv.lines().nth(1), Some("echo-rude,,0.0,,0.0,"));
}

#[test]
fn a_model_without_a_plugin_or_registry_entry_fails_before_playing() {
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "orphan", "backend": "nosuchbackend"}]"#,
    );
    let out = env.run(&["run", "-g", "hellogame", "-m", "orphan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no plugin serves backend 'nosuchbackend'"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["run", "-g", "hellogame", "-m", "not-registered-anywhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not-registered-anywhere"),
        "{}",
        stderr(&out)
    );
    assert!(!env.path().join("results").exists(), "nothing played");
}

/// The SmolLM2 GGUF that scripts/fetch-smollm2 caches, when it is there.
pub(crate) fn smollm2_gguf() -> Option<PathBuf> {
    let p = std::env::var_os("CLEMHOST_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::util::clemhost_cache()
                .join("models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "skipped: no SmolLM2 GGUF at {} (scripts/fetch-smollm2 fetches it)",
            p.display()
        );
        None
    }
}

/// A real llamacpp run: every episode is recorded, and, as in clemcore, the
/// llamacpp backend's responses carry no `clem_player` object while the
/// completion itself is kept under `response`.
#[test]
fn smollm2_on_llamacpp_plays_every_episode_and_is_recorded_as_clemcore() {
    let Some(gguf) = smollm2_gguf() else { return };
    let plugin = plugin_build_dir().join("libllamacpp_api.so");
    if !plugin.exists() {
        eprintln!("skipped: {} is not built", plugin.display());
        return;
    }
    let env = TestEnv::new();
    let registry = serde_json::json!([
        {"model_name": "smol-gguf", "backend": "llamacpp",
         "huggingface_id": gguf.to_string_lossy(),
         "model_config": {"premade_chat_template": true, "eos_to_cull": "<\\|im_end\\|>",
                          "threads": 2, "n_ctx": 1024}}
    ]);
    env.write("reg.json", &registry.to_string());
    let out = env.run(&[
        "--no-default-registry",
        "--registry",
        "reg.json",
        "--plugin-dir",
        &plugin_build_dir().display().to_string(),
        "run",
        "-g",
        "hellogame",
        "-m",
        "smol-gguf",
        "-l",
        "12",
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "errors"), 0);
    let episodes = env.path().join("results/smol-gguf/hellogame/greet_en");
    for i in 0..10 {
        let req = read(&episodes.join(format!("instance_{i:05}/player_1.requests.json")));
        let call = &req["calls"][0]["call"];
        let resp = &call["raw_response_obj"];
        assert!(resp.get("clem_player").is_none(), "instance {i}: {resp}");
        assert_eq!(resp["response"]["object"], "text_completion", "{resp}");
        assert_eq!(call["manipulated_prompt_obj"]["max_new_tokens"], 12);
        assert!(
            call["manipulated_prompt_obj"]["inputs"]
                .as_str()
                .is_some_and(|p| p.ends_with("<|im_start|>assistant\n")),
            "{call}"
        );
    }
}

/// A registry entry's chat template is code from others: one that doubles a
/// list beyond reason fails each call as an invalid request, recorded in
/// the episode, while clemhost (which renders in a worker process) and the
/// plugin go on.
#[test]
fn a_registry_template_that_explodes_fails_its_episodes_not_the_run() {
    let Some(gguf) = smollm2_gguf() else { return };
    let plugin = plugin_build_dir().join("libllamacpp_api.so");
    if !plugin.exists() {
        eprintln!("skipped: {} is not built", plugin.display());
        return;
    }
    let env = TestEnv::new();
    let template = "{% set s = namespace(v=[1]) %}{% for i in range(34) %}\
                    {% set s.v = s.v + s.v %}{% endfor %}{{ messages[0].content }}";
    let registry = serde_json::json!([
        {"model_name": "smol-hostile", "backend": "llamacpp",
         "huggingface_id": gguf.to_string_lossy(),
         "model_config": {"premade_chat_template": false, "custom_chat_template": template,
                          "threads": 2, "n_ctx": 512}}
    ]);
    env.write("reg.json", &registry.to_string());
    env.write(
        "inst.json",
        &format!(
            r#"{{"experiments": [{{"name": "few", "game_instances": {}}}]}}"#,
            r#"[{"game_id": 0, "prompt": "Greet $NAME$", "target_name": "X"},
            {"game_id": 1, "prompt": "Greet $NAME$", "target_name": "Y"}]"#
        ),
    );
    let out = env.run(&[
        "--no-default-registry",
        "--registry",
        "reg.json",
        "--plugin-dir",
        &plugin_build_dir().display().to_string(),
        "run",
        "-g",
        "hellogame",
        "-m",
        "smol-hostile",
        "-i",
        "inst.json",
        "--no-progress",
    ]);
    let err = stderr(&out);
    assert!(out.status.code().is_some(), "clemhost was killed: {err}");
    assert_eq!(summary(&out, "errors"), 2, "{err}");
    for i in 0..2 {
        let episode = env.path().join(format!(
            "results/smol-hostile/hellogame/few/instance_{i:05}"
        ));
        let error = std::fs::read_to_string(episode.join("error.json"))
            .unwrap_or_else(|e| panic!("instance {i}: {e}; {err}"));
        assert!(
            error.contains("chat template stopped") && error.contains("10 s"),
            "instance {i}: {error}"
        );
    }
}

/// Three shards of hellogame, each into its own folder, merged with
/// `cp -r`: the unsharded run's files (times aside) and its eval tables.
#[test]
fn shards_merged_by_copying_equal_an_unsharded_run_and_its_eval() {
    let env = TestEnv::new();
    let ok = |args: &[&str]| {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    ok(&["run", "-g", "hellogame", "-m", "mock", "-r", "whole"]);
    std::fs::create_dir(env.path().join("merged")).unwrap();
    let mut played = Vec::new();
    for k in 0..3 {
        let (dir, shard) = (format!("shard{k}"), format!("{k}/3"));
        let out = ok(&[
            "run",
            "-g",
            "hellogame",
            "-m",
            "mock",
            "-r",
            &dir,
            "--shard",
            &shard,
        ]);
        played.push(summary(&out, "episodes"));
        let copied = std::process::Command::new("cp")
            .arg("-r")
            .arg(env.path().join(&dir).join("."))
            .arg(env.path().join("merged"))
            .status()
            .unwrap();
        assert!(copied.success());
    }
    assert_eq!(played, [4, 3, 3], "10 episodes dealt out");
    let (whole, merged) = (
        crate::times::tree_without_times(&env.path().join("whole")),
        crate::times::tree_without_times(&env.path().join("merged")),
    );
    assert_eq!(
        whole.keys().collect::<Vec<_>>(),
        merged.keys().collect::<Vec<_>>()
    );
    for (p, v) in &whole {
        assert_eq!(&merged[p], v, "{} differs", p.display());
    }
    for dir in ["whole", "merged"] {
        ok(&["score", "-r", dir]);
        ok(&["eval", "-r", dir]);
    }
    for table in ["raw.csv", "results.csv"] {
        let read = |dir: &str| std::fs::read_to_string(env.path().join(dir).join(table)).unwrap();
        assert_eq!(read("whole"), read("merged"), "{table}");
    }
}

#[test]
fn shard_k_counts_from_zero_and_a_wrong_one_says_so() {
    let env = TestEnv::new();
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "--shard", "8/8"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("counts from 0") && err.contains("0 to 7"),
        "{err}"
    );
}

/// Shards on one -r are refused by the run folder's lock, so the help must
/// not suggest one -r for all of them (docs/running-games.md says the same).
#[test]
fn shard_help_gives_each_shard_its_own_results_dir() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // clap wraps the help text: compare it with the line breaks undone.
    let help = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        help.contains("Give each shard its own -r")
            && help.contains("copy the trees into one directory")
            && help.contains("-r shards/$SLURM_ARRAY_TASK_ID"),
        "{help}"
    );
    let doc = std::fs::read_to_string(crate::util::repo_root().join("docs/running-games.md"))
        .expect("docs/running-games.md");
    let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        doc.contains("Give every shard its own `-r` and merge afterwards by copying"),
        "the docs say it too"
    );
}
