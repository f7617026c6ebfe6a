//! Hostile or careless input to `run`, `score` and `eval` (issue 12): names
//! that would become paths, two writers on one tree, what `--resume` trusts,
//! numbers at the edges, empty inputs and terminal escapes.

use crate::util::{built_plugin, plugin_build_dir, stderr, stdout, TestEnv};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn plugins() -> String {
    built_plugin("echo");
    built_plugin("misbehave");
    plugin_build_dir().display().to_string()
}

/// Every path under `dir` (files and folders), relative.
fn all_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("under dir").to_path_buf());
            if e.file_type().expect("type").is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn summary(out: &std::process::Output, row: &str) -> u64 {
    stdout(out)
        .lines()
        .find_map(|l| l.trim().strip_prefix(row).map(|r| r.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no '{row}' row in:\n{}", stdout(out)))
}

const ONE_INSTANCE: &str = r#"[{"game_id": 0, "prompt": "Greet $NAME$", "target_name": "X"}]"#;

#[test]
fn experiment_names_that_are_not_one_folder_are_refused_before_anything_is_written() {
    let env = TestEnv::new();
    for name in ["../../escaped", "/abs/victim", "a/b", ".", ""] {
        env.write(
            "inst.json",
            &format!(
                r#"{{"experiments": [{{"name": "{name}", "game_instances": {ONE_INSTANCE}}}]}}"#
            ),
        );
        let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "-i", "inst.json"]);
        assert_eq!(out.status.code(), Some(1), "{name:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("inst.json: experiments[0].name") && err.contains("it must"),
            "{name:?}: {err}"
        );
        assert!(
            !env.path().join("results").exists(),
            "{name:?} wrote results"
        );
    }
    assert_eq!(
        all_paths(env.path()),
        [PathBuf::from("home"), PathBuf::from("inst.json")]
    );
}

#[test]
fn two_experiments_with_one_name_are_refused() {
    let env = TestEnv::new();
    env.write(
        "inst.json",
        &format!(
            r#"{{"experiments": [{{"name": "e", "game_instances": {ONE_INSTANCE}}}, {{"name": "e", "game_instances": {ONE_INSTANCE}}}]}}"#
        ),
    );
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "-i", "inst.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("both named \"e\""),
        "{}",
        stderr(&out)
    );
    assert!(!env.path().join("results").exists());
}

#[test]
fn model_names_with_separators_become_one_escaped_folder_inside_the_results() {
    let dir = plugins();
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "org/name", "backend": "echo"},
            {"model_name": "../../up", "backend": "echo"},
            {"model_name": "..", "backend": "echo"}]"#,
    );
    env.write(
        "inst.json",
        &format!(r#"{{"experiments": [{{"name": "e", "game_instances": {ONE_INSTANCE}}}]}}"#),
    );
    for (model, folder) in [
        ("org/name", "org%2Fname"),
        ("../../up", "..%2F..%2Fup"),
        ("..", "%2E%2E"),
    ] {
        let out = env.run(&[
            "--plugin-dir",
            &dir,
            "--no-default-registry",
            "run",
            "-g",
            "hellogame",
            "-m",
            model,
            "-i",
            "inst.json",
        ]);
        assert!(out.status.success(), "{model}: {}", stderr(&out));
        let ep = env
            .path()
            .join("results")
            .join(folder)
            .join("hellogame/e/instance_00000");
        assert!(
            ep.join("completed.json").is_file(),
            "{model}: {:?}",
            all_paths(env.path())
        );
        let meta = read(&ep.join("interactions.json"))["meta"].clone();
        assert_eq!(meta["results_folder"], folder);
        assert_eq!(
            read(&ep.join("player_1.requests.json"))["meta"]["model_name"],
            model
        );
    }
    // Nothing was written next to the results folder or above it.
    let top: Vec<PathBuf> = std::fs::read_dir(env.path())
        .expect("dir")
        .flatten()
        .map(|e| PathBuf::from(e.file_name()))
        .collect();
    assert_eq!(top.len(), 4, "{top:?}"); // home, model_registry.json, inst.json, results
    assert!(!env.path().parent().expect("parent").join("up").exists());

    // An empty name cannot be escaped into a folder: refused, naming the file and field.
    env.write(
        "model_registry.json",
        r#"[{"model_name": "", "backend": "echo"}]"#,
    );
    let out = env.run(&[
        "--plugin-dir",
        &dir,
        "--no-default-registry",
        "run",
        "-g",
        "hellogame",
        "-m",
        "",
        "-i",
        "inst.json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("model_registry.json") && err.contains("model_name"),
        "{err}"
    );
    assert!(!env.path().join("results/hellogame").exists());
}

#[test]
fn a_second_run_into_the_same_folder_is_refused_while_the_first_runs() {
    let dir = plugins();
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "slow", "backend": "echo", "model_config": {"latency_ms": 300}}]"#,
    );
    let mut first = env
        .cmd()
        .args([
            "--plugin-dir",
            &dir,
            "run",
            "-g",
            "hellogame",
            "-m",
            "slow",
            "--parallel",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("clemhost starts");
    let run_json = env.path().join("results/slow/run.json");
    let start = std::time::Instant::now();
    while !run_json.exists() {
        assert!(
            start.elapsed().as_secs() < 60,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = env.run(&["--plugin-dir", &dir, "run", "-g", "hellogame", "-m", "slow"]);
    let still_running = first.try_wait().expect("status").is_none();
    assert!(still_running, "the first run ended too soon for this test");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another clemhost run is writing into"),
        "{}",
        stderr(&out)
    );
    assert!(first.wait().expect("reaped").success());
    // The first run's files are whole and its run.json entry is there.
    let run = read(&run_json);
    assert_eq!(run["games"]["hellogame"]["num_instances"], 10);
}

#[test]
fn a_replay_removes_only_its_own_temp_files() {
    let env = TestEnv::new();
    assert!(env
        .run(&["run", "-g", "hellogame", "-m", "mock"])
        .status
        .success());
    let ep = env
        .path()
        .join("results/mock/hellogame/greet_en/instance_00000");
    // What another process's atomic write looks like while it is in flight.
    let other = ep.join(".interactions.json.4194999.00000000deadbeef.tmp");
    std::fs::write(&other, "{").expect("plant");
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(other.exists(), "another process's temp file was removed");
}

/// Plays hellogame with `mock` into ./results; the experiment's folder.
fn played_greet_en(env: &TestEnv) -> PathBuf {
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock"]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.path().join("results/mock/hellogame/greet_en")
}

#[test]
fn resume_plays_again_episodes_whose_files_are_empty_truncated_or_missing() {
    let env = TestEnv::new();
    let exp = played_greet_en(&env);
    std::fs::write(exp.join("instance_00000/completed.json"), "").expect("empty");
    let inter = exp.join("instance_00001/interactions.json");
    let text = std::fs::read_to_string(&inter).expect("read");
    std::fs::write(&inter, &text[..text.len() / 2]).expect("truncate");
    std::fs::remove_file(exp.join("instance_00002/interactions.json")).expect("remove");
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "skipped (complete)"), 7);
    assert_eq!(summary(&out, "completed"), 3);
    read(&inter); // whole again
    read(&exp.join("instance_00000/completed.json"));
    read(&exp.join("instance_00002/interactions.json"));
}

/// An episode folder whose `instance.json` is another game's (copied over,
/// or a tree put together by hand) is not that episode: `--resume` plays it.
#[test]
fn resume_plays_again_an_episode_whose_instance_is_another_games() {
    let env = TestEnv::new();
    let exp = played_greet_en(&env);
    std::fs::copy(
        exp.join("instance_00001/instance.json"),
        exp.join("instance_00003/instance.json"),
    )
    .expect("copy");
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "skipped (complete)"), 9);
    assert_eq!(summary(&out, "completed"), 1);
    assert_eq!(
        read(&exp.join("instance_00003/instance.json"))["game_id"],
        3
    );
}

/// A folder where a results file belongs (`interactions.json/`) neither
/// passes for a finished episode nor stops the run: it is replaced.
#[test]
fn a_folder_named_like_a_results_file_is_replaced_not_fatal() {
    let env = TestEnv::new();
    let exp = played_greet_en(&env);
    let inter = exp.join("instance_00002/interactions.json");
    std::fs::remove_file(&inter).expect("remove");
    std::fs::create_dir_all(inter.join("inside")).expect("a folder in its place");
    let instance = exp.join("instance_00004/instance.json");
    std::fs::remove_file(&instance).expect("remove");
    std::fs::create_dir(&instance).expect("a folder in its place");
    for args in [&["--resume"][..], &[][..]] {
        let out = env
            .cmd()
            .args(["run", "-g", "hellogame", "-m", "mock"])
            .args(args)
            .output()
            .expect("clemhost runs");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        if !args.is_empty() {
            assert_eq!(summary(&out, "skipped (complete)"), 8);
            assert_eq!(summary(&out, "completed"), 2);
        }
        read(&inter);
        read(&instance);
    }
}

#[test]
fn experiment_json_follows_a_rerun_and_resume_refuses_other_settings() {
    let env = TestEnv::new();
    let exp_file = env
        .path()
        .join("results/mock/hellogame/greet_en/experiment.json");
    assert!(env
        .run(&["run", "-g", "hellogame", "-m", "mock"])
        .status
        .success());
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "-t", "0.7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read(&exp_file)["player_models"]["0"]["gen_args"]["temperature"],
        0.7
    );
    let out = env.run(&[
        "run",
        "-g",
        "hellogame",
        "-m",
        "mock",
        "-t",
        "0.0",
        "--resume",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("experiment.json") && err.contains("other settings"),
        "{err}"
    );
    assert_eq!(
        read(&exp_file)["player_models"]["0"]["gen_args"]["temperature"],
        0.7,
        "the refused run changed nothing"
    );
    // The same settings resume.
    let out = env.run(&[
        "run",
        "-g",
        "hellogame",
        "-m",
        "mock",
        "-t",
        "0.7",
        "--resume",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "skipped (complete)"), 10);
}

#[cfg(unix)]
#[test]
fn symlink_loops_in_the_results_tree_neither_inflate_counts_nor_hang() {
    let env = TestEnv::new();
    assert!(env
        .run(&["run", "-g", "hellogame", "-m", "mock"])
        .status
        .success());
    let game = env.path().join("results/mock/hellogame");
    std::os::unix::fs::symlink(".", game.join("self")).expect("loop 1");
    std::os::unix::fs::symlink("..", game.join("greet_en/up")).expect("loop 2");
    let out = env.run(&["score"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("scored 10 episode(s)"),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["eval"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(env.path().join("results/results.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 2, "one model only:\n{csv}");
    let out = env.run(&["transcribe"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A results tree from elsewhere may hold links where `run` writes: an
/// episode, experiment or model folder that links out of the tree. Writing
/// through it would put episodes in the linked folder, and clearing a replay
/// would delete its `scores.json`, `error.json` and `transcript.html`.
#[cfg(unix)]
#[test]
fn run_neither_writes_nor_deletes_through_links_in_the_results_tree() {
    let env = TestEnv::new();
    assert!(env
        .run(&["run", "-g", "hellogame", "-m", "mock"])
        .status
        .success());
    let victim = env.path().join("victim");
    std::fs::create_dir_all(&victim).expect("victim");
    for f in ["scores.json", "error.json", "transcript.html"] {
        std::fs::write(victim.join(f), "precious").expect("plant");
    }
    let exp = env.path().join("results/mock/hellogame/greet_en");
    let links = [
        exp.join("instance_00001"),
        exp.clone(),
        env.path().join("results/mock"),
    ];
    for link in &links {
        let kept = link.with_extension("kept");
        std::fs::rename(link, &kept).expect("move aside");
        std::os::unix::fs::symlink(&victim, link).expect("plant link");
        for args in [&["--resume"][..], &[][..]] {
            let out = env.run(&[&["run", "-g", "hellogame", "-m", "mock"][..], args].concat());
            assert_eq!(out.status.code(), Some(1), "{link:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("is a symbolic link"),
                "{}",
                stderr(&out)
            );
            let mut left: Vec<String> = std::fs::read_dir(&victim)
                .expect("victim")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            assert_eq!(
                left,
                ["error.json", "scores.json", "transcript.html"],
                "{link:?}"
            );
        }
        std::fs::remove_file(link).expect("unlink");
        std::fs::rename(&kept, link).expect("move back");
    }
}

#[test]
fn timeouts_out_of_bounds_are_usage_errors_not_panics() {
    let env = TestEnv::new();
    for t in ["1e300", "1e19", "inf", "0"] {
        let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "--timeout", t]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--timeout {t}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("7 days"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn tiny_request_rates_are_refused_naming_the_model_and_the_field() {
    let dir = plugins();
    let env = TestEnv::new();
    for rpm in ["1e-300", "1e-17"] {
        env.write(
            "model_registry.json",
            &format!(
                r#"[{{"model_name": "slowpoke", "backend": "echo", "rate_limit": {{"requests_per_minute": {rpm}}}}}]"#
            ),
        );
        let out = env.run(&[
            "--plugin-dir",
            &dir,
            "run",
            "-g",
            "hellogame",
            "-m",
            "slowpoke",
        ]);
        assert_eq!(out.status.code(), Some(1), "{rpm}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("model_registry.json")
                && err.contains("'slowpoke'")
                && err.contains("rate_limit.requests_per_minute"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_retry_after_beyond_the_cap_fails_the_call_as_rate_limited() {
    let dir = plugins();
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "busy", "backend": "misbehave",
             "model_config": {"misbehave": "error", "error_kind": "rate_limited", "retry_after_ms": 18446744073709551615}}]"#,
    );
    env.write(
        "inst.json",
        &format!(r#"{{"experiments": [{{"name": "e", "game_instances": {ONE_INSTANCE}}}]}}"#),
    );
    let start = std::time::Instant::now();
    let out = env.run(&[
        "--plugin-dir",
        &dir,
        "run",
        "-g",
        "hellogame",
        "-m",
        "busy",
        "-i",
        "inst.json",
    ]);
    assert!(
        start.elapsed().as_secs() < 30,
        "the run waited for the server"
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = read(
        &env.path()
            .join("results/busy/hellogame/e/instance_00000/error.json"),
    );
    assert_eq!(err["kind"], "rate_limited");
    let message = err["message"].as_str().expect("message");
    assert!(
        message.contains("asks to wait 18446744073709552 s"),
        "{message}"
    );
    // The kind is said once, in error.json and on the terminal.
    assert!(!message.contains("rate_limited: rate_limited"), "{message}");
    assert!(
        !stderr(&out).contains("rate_limited: rate_limited"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn empty_instance_lists_are_an_error_not_a_silent_success() {
    let env = TestEnv::new();
    for text in [
        r#"{"experiments": []}"#,
        r#"{"experiments": [{"name": "e", "game_instances": []}]}"#,
    ] {
        env.write("inst.json", text);
        let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "-i", "inst.json"]);
        assert_eq!(out.status.code(), Some(1), "{text}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("inst.json has no game instances to play"),
            "{}",
            stderr(&out)
        );
        assert!(!env.path().join("results").exists());
    }
}

#[test]
fn control_characters_from_input_reach_the_terminal_escaped() {
    let env = TestEnv::new();
    let out = env.run(&[
        "run",
        "-g",
        "hellogame",
        "-m",
        "mock",
        "-e",
        "x\u{1b}]0;owned\u{7}\u{1b}[2J",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("x\\u{1b}]0;owned\\u{7}\\u{1b}[2J"), "{err}");
}

/// Listings print names from files of others (registries, key files,
/// clemgame.json, a results tree's folder names): their control characters
/// reach the terminal escaped, as in error messages.
#[test]
fn listings_escape_control_characters_from_files_of_others() {
    let env = TestEnv::new();
    let esc = "x\u{1b}]0;owned\u{7}\u{1b}[2J\r";
    env.write(
        "model_registry.json",
        &serde_json::json!([{"model_name": format!("m{esc}"), "backend": format!("b{esc}")}])
            .to_string(),
    );
    env.write(
        "key.json",
        &serde_json::json!({format!("s{esc}"): {"api_key": format!("k{esc}-0123456789abcdef")}})
            .to_string(),
    );
    env.write(
        "games/g/clemgame.json",
        &serde_json::json!({"game_name": format!("g{esc}"), "players": 1}).to_string(),
    );
    assert!(env
        .run(&["run", "-g", "hellogame", "-m", "mock"])
        .status
        .success());
    assert!(env.run(&["score"]).status.success());
    std::fs::rename(
        env.path().join("results/mock"),
        env.path().join(format!("results/mock{esc}")),
    )
    .expect("rename");
    for args in [
        &["models", "list"][..],
        &["keys", "list"],
        &["games", "list"],
        &["eval"],
    ] {
        let out = env.run(args);
        if args == ["games", "list"] {
            // Such a game name is refused (it becomes a folder), escaped.
            assert!(
                stderr(&out).contains("is not one folder name"),
                "{}",
                stderr(&out)
            );
        } else {
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\r'),
            "{args:?}: {text:?}"
        );
        assert!(text.contains("\\u{1b}]0;owned"), "{args:?}: {text}");
    }
}

/// Plays hellogame against a server that answers every call with 503 and
/// `body`, with two tries: the retry and the failed episode are logged.
fn run_against_a_failing_server(body: &'static str) -> (std::process::Output, String) {
    let server = crate::util::FakeServer::start(503, move |_| body.to_string());
    let env = TestEnv::new();
    env.write(
        "key.json",
        &format!(
            r#"{{"node": {{"api_key": "k", "base_url": "{}/v1"}}}}"#,
            server.base_url
        ),
    );
    env.write(
        "model_registry.json",
        r#"[{"model_name": "n", "backend": "openai_compatible", "key_name": "node", "model_id": "m"}]"#,
    );
    built_plugin("openai_compatible");
    let out = env
        .cmd()
        .arg("--plugin-dir")
        .arg(plugin_build_dir())
        .args(["run", "-g", "hellogame", "-m", "n", "-e", "greet_en"])
        .args(["--retries", "2", "--retry-delay-ms", "1"])
        .output()
        .expect("clemhost runs");
    let err = stderr(&out);
    (out, err)
}

/// A server's error body is quoted in the WARN lines of retries and failed
/// episodes: a `\r` (which would overwrite the line) and bidi controls
/// (which would show text reversed) are escaped there.
#[test]
fn server_error_text_in_log_lines_is_escaped() {
    let (out, err) = run_against_a_failing_server("down\r\u{202e}gnissim yek\u{2066}x");
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("trying again"), "a retry was logged: {err}");
    assert!(
        err.contains("failed"),
        "the failed episode was logged: {err}"
    );
    for c in ['\r', '\u{202e}', '\u{2066}'] {
        assert!(!err.contains(c), "{c:?} reached stderr: {err:?}");
    }
    assert!(
        err.contains("down\\u{d}\\u{202e}gnissim yek\\u{2066}x"),
        "{err}"
    );
}

/// A line break in a server's error body would start a line of its own in
/// the log, one that looks like clemhost's ("... INFO all good"). Inside a
/// log line it is written `\n`.
#[test]
fn server_text_cannot_forge_log_lines() {
    let (_out, err) =
        run_against_a_failing_server("down\n2026-12-03T00:00:00Z  INFO all good\r\nmore");
    assert!(err.contains("trying again"), "a retry was logged: {err}");
    assert!(
        !err.lines().any(|l| l.contains("2026-12-03T00:00:00Z")
            && !l.contains("down\\u{a}2026-12-03T00:00:00Z  INFO all good\\u{d}\\u{a}more")),
        "a forged line: {err}"
    );
    assert!(
        err.contains("down\\u{a}2026-12-03T00:00:00Z  INFO all good\\u{d}\\u{a}more"),
        "{err}"
    );
}

/// Duplicate keys in an instances file or a key file are warned about,
/// naming the file and both lines (as the registry does), and a byte order
/// mark in either is skipped.
#[test]
fn duplicate_keys_are_warned_about_and_byte_order_marks_skipped() {
    let env = TestEnv::new();
    env.write(
        "inst.json",
        "\u{feff}{\"experiments\": [{\"name\": \"e\", \"game_instances\": [\n  {\"game_id\": 0,\n   \"prompt\": \"Greet $NAME$\",\n   \"prompt\": \"Hi $NAME$\", \"target_name\": \"X\"}]}]}",
    );
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "-i", "inst.json"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("inst.json:4:") && err.contains("\"prompt\" appears again (first at line 3"),
        "{err}"
    );
    env.write(
        "key.json",
        "\u{feff}{\"openai\": {\"api_key\": \"sk-first-0000000000000\",\n  \"api_key\": \"sk-second-000000000000\"}}",
    );
    let out = env.run(&["keys", "list"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("key.json:2:") && err.contains("\"api_key\" appears again (first at line 1"),
        "{err}"
    );
    assert!(
        !err.contains("sk-first") && !err.contains("sk-second"),
        "{err}"
    );
    assert!(stdout(&out).contains("openai"), "{}", stdout(&out));
}

/// Without a readable `experiment.json`, `--resume` checks the settings the
/// finished episodes recorded themselves (`interactions.json`'s
/// `player_models`), so a run with other settings is refused, not mixed in.
#[test]
fn resume_without_readable_settings_checks_the_episodes_own_records() {
    let env = TestEnv::new();
    let exp = played_greet_en(&env);
    let exp_file = exp.join("experiment.json");
    for broken in [Some(""), Some("{"), Some("null"), Some("[]"), None] {
        match broken {
            Some(text) => std::fs::write(&exp_file, text).expect("write"),
            None => std::fs::remove_file(&exp_file).expect("remove"),
        }
        let out = env.run(&[
            "run",
            "-g",
            "hellogame",
            "-m",
            "mock",
            "-t",
            "0.9",
            "--resume",
        ]);
        assert_eq!(out.status.code(), Some(1), "{broken:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("interactions.json") && err.contains("other settings"),
            "{broken:?}: {err}"
        );
        let run = read(&env.path().join("results/mock/run.json"));
        assert_eq!(
            run["player_models"]["0"]["gen_args"]["temperature"], 0.0,
            "{broken:?}: the refused run changed run.json"
        );
    }
    // The episodes' own settings resume, and experiment.json is written again.
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "skipped (complete)"), 10);
    assert_eq!(
        read(&exp_file)["player_models"]["0"]["gen_args"]["temperature"],
        0.0
    );
}

/// An instances file whose instance content changed (same experiment keys
/// and game_ids) does not pass for the finished episodes: `--resume`
/// plays the changed instances again.
#[test]
fn resume_plays_again_episodes_whose_instance_changed() {
    let env = TestEnv::new();
    let exp = played_greet_en(&env);
    let shipped = crate::util::repo_root().join("games/hellogame/in/instances.json");
    let mut file = read(&shipped);
    let instances = file["experiments"][0]["game_instances"]
        .as_array_mut()
        .expect("instances");
    instances[2]["target_name"] = "Zoe".into();
    instances[5]["prompt"] = "Greet Zoe".into();
    env.write(
        "inst2.json",
        &serde_json::to_string_pretty(&file).expect("json"),
    );
    let out = env.run(&[
        "run",
        "-g",
        "hellogame",
        "-m",
        "mock",
        "-e",
        "greet_en",
        "-i",
        "inst2.json",
        "--resume",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "skipped (complete)"), 8);
    assert_eq!(summary(&out, "completed"), 2);
    assert_eq!(
        read(&exp.join("instance_00002/instance.json"))["target_name"],
        "Zoe"
    );
    assert_eq!(
        read(&exp.join("instance_00005/instance.json"))["prompt"],
        "Greet Zoe"
    );
}

/// A FIFO or a link to `/dev/zero` where a results file belongs neither
/// hangs `run` nor reads without end: it is not a finished episode
/// (`completed.json`) or not a readable record (`run.json`).
#[cfg(unix)]
#[test]
fn fifos_and_devices_in_a_results_tree_neither_block_nor_read_forever() {
    use std::time::{Duration, Instant};
    let env = TestEnv::new();
    let exp = played_greet_en(&env);
    let fifo = |p: &Path| {
        std::fs::remove_file(p).expect("remove");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    };
    let run_file = env.path().join("results/mock/run.json");
    for (case, plant) in [
        ("fifo", &fifo as &dyn Fn(&Path)),
        ("/dev/zero", &|p: &Path| {
            std::fs::remove_file(p).expect("remove");
            std::os::unix::fs::symlink("/dev/zero", p).expect("link");
        }),
    ] {
        plant(&exp.join("instance_00000/completed.json"));
        plant(&run_file);
        let mut child = env
            .cmd()
            .args(["run", "-g", "hellogame", "-m", "mock", "--resume"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("clemhost starts");
        let start = Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("{case}: run hangs");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("output");
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        assert_eq!(summary(&out, "skipped (complete)"), 9, "{case}");
        assert!(
            stderr(&out).contains("not a regular file"),
            "{case}: {}",
            stderr(&out)
        );
        read(&exp.join("instance_00000/completed.json"));
        read(&run_file);
    }
}

/// A `run.json` that does not parse is kept aside (`run.json.bad-<time>`),
/// never simply replaced: the other games' entries stay on disk.
#[test]
fn an_unreadable_run_json_is_kept_aside_not_lost() {
    let env = TestEnv::new();
    played_greet_en(&env);
    let run_dir = env.path().join("results/mock");
    let mut run = read(&run_dir.join("run.json"));
    run["games"]["othergame"] = run["games"]["hellogame"].clone();
    run["games"]["othergame"]["num_instances"] = "30".into();
    let text = serde_json::to_string_pretty(&run).expect("json");
    std::fs::write(run_dir.join("run.json"), &text).expect("write");
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kept: Vec<PathBuf> = std::fs::read_dir(&run_dir)
        .expect("run dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("run.json.bad-"))
        })
        .collect();
    assert_eq!(kept.len(), 1, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&kept[0]).expect("kept"), text);
    let err = stderr(&out);
    assert!(err.contains("run.json.bad-"), "{err}");
}

/// A file where an episode's folder belongs is moved aside and the episode
/// played; `run.json` as a folder stops the run before any episode, naming it.
#[test]
fn files_where_folders_belong_and_a_folder_for_run_json() {
    let env = TestEnv::new();
    let exp = played_greet_en(&env);
    let ep = exp.join("instance_00003");
    std::fs::remove_dir_all(&ep).expect("remove");
    std::fs::write(&ep, "not a folder").expect("a file in its place");
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out, "skipped (complete)"), 9);
    assert_eq!(summary(&out, "completed"), 1);
    read(&ep.join("instance.json"));
    let aside: Vec<PathBuf> = std::fs::read_dir(&exp)
        .expect("exp")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("instance_00003.bad-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&aside[0]).expect("kept"),
        "not a folder"
    );

    let run_file = env.path().join("results/mock/run.json");
    std::fs::remove_file(&run_file).expect("remove");
    std::fs::create_dir(&run_file).expect("a folder in its place");
    std::fs::remove_file(exp.join("instance_00001/completed.json")).expect("remove");
    let out = env.run(&["run", "-g", "hellogame", "-m", "mock", "--resume"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("run.json") && err.contains("is a folder"),
        "{err}"
    );
    assert!(
        !exp.join("instance_00001/completed.json").exists(),
        "an episode ran"
    );
}

/// A one-model name holding `--` and the pair it looks like get two run
/// folders; a registry entry named like a built-in player is refused; a
/// model name that is not NFC says so, not "shorter names".
#[test]
fn model_lists_get_their_own_folders_and_built_in_names_stay_built_in() {
    let dir = plugins();
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "a--b", "backend": "echo"},
            {"model_name": "a", "backend": "echo"},
            {"model_name": "b", "backend": "echo"},
            {"model_name": "cafe\u0301", "backend": "echo"}]"#,
    );
    env.write(
        "inst.json",
        &format!(r#"{{"experiments": [{{"name": "e", "game_instances": {ONE_INSTANCE}}}]}}"#),
    );
    let run = |models: &[&str]| {
        let mut cmd = env.cmd();
        cmd.args([
            "--plugin-dir",
            &dir,
            "--no-default-registry",
            "run",
            "-g",
            "hellogame",
        ]);
        for m in models {
            cmd.args(["-m", m]);
        }
        cmd.args(["-i", "inst.json"])
            .output()
            .expect("clemhost runs")
    };
    let out = run(&["a--b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env
        .path()
        .join("results/a%2D%2Db/hellogame/e/instance_00000/completed.json")
        .is_file());
    assert!(!env.path().join("results/a--b").exists());
    let out = run(&["cafe\u{301}"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("NFC") && !err.contains("shorter"), "{err}");

    env.write(
        "model_registry.json",
        r#"[{"model_name": "gpt-x", "backend": "echo"}, {"model_name": "mock", "backend": "echo"}]"#,
    );
    let out = run(&["mock"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("model_registry.json") && err.contains("entry 1") && err.contains("built-in"),
        "{err}"
    );
}
