//! clembench's own games, played by clemcore's code under `clemhost run`.
//! The tests that play need the shared clembench snapshot and the venvs of
//! `scripts/clembench-venvs` (CI's scripts/setup makes them); without
//! either they say why and pass.

use crate::times::tree_without_times;
use crate::util::{clemhost_cache, shared_dir, stderr, stdout, TestEnv};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter of a venv made by scripts/clembench-venvs, if it is there.
pub(crate) fn venv_python(name: &str) -> Option<PathBuf> {
    let p = clemhost_cache().join("venvs").join(name).join("bin/python");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is missing; run scripts/clembench-venvs",
            p.display()
        );
        None
    }
}

/// A tool's exit code and results tree.
type Played = (i32, BTreeMap<PathBuf, Value>);

/// Plays `args` with clemcore's `clem run` and with `clemhost run` (with
/// `extra`) in two fresh folders; returns both exit codes and trees.
fn clem_and_clemhost(
    shared: &Path,
    python: &Path,
    args: &[&str],
    extra: &[&str],
) -> (Played, Played) {
    let clembench = shared.join("reference/clembench").canonicalize().unwrap();
    let nltk = shared.join("reference/nltk_data");
    let theirs = TestEnv::new();
    let out = Command::new(python.with_file_name("clem"))
        .arg("run")
        .args(args)
        .current_dir(theirs.path())
        .env("HOME", theirs.home())
        .env("CLEMBENCH_HOME", &clembench)
        .env("NLTK_DATA", &nltk)
        .output()
        .expect("clem runs");
    let their_code = out.status.code().unwrap_or(-1);
    let ours = TestEnv::new();
    let out = ours
        .cmd()
        .env("NLTK_DATA", &nltk)
        .arg("run")
        .args(args)
        .args(extra)
        .arg("--games-dir")
        .arg(&clembench)
        .arg("--python")
        .arg(python)
        .output()
        .unwrap();
    let our_code = out.status.code().unwrap_or(-1);
    if our_code != 0 && our_code != 4 {
        panic!("clemhost run failed: {}", stderr(&out));
    }
    (
        (
            their_code,
            tree_without_times(&theirs.path().join("results")),
        ),
        (our_code, tree_without_times(&ours.path().join("results"))),
    )
}

fn assert_same_trees(theirs: &BTreeMap<PathBuf, Value>, ours: &BTreeMap<PathBuf, Value>) {
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (path, value) in theirs {
        assert_eq!(&ours[path], value, "{} differs", path.display());
    }
}

#[test]
fn taboo_with_mock_players_writes_what_clem_run_writes_with_both_clemcore_lines() {
    let Some(shared) = shared_dir() else { return };
    for venv in ["clembench-3.3", "clembench-3.7"] {
        let Some(python) = venv_python(venv) else {
            continue;
        };
        let args = ["-g", "taboo", "-m", "mock", "-e", "high_en"];
        let ((_, theirs), (code, ours)) = clem_and_clemhost(&shared, &python, &args, &[]);
        assert_eq!(code, 0, "{venv}");
        // 20 episodes of high_en, at least three files each.
        assert!(ours.len() >= 2 + 20 * 3, "{venv}: {:?}", ours.keys());
        assert_same_trees(&theirs, &ours);
    }
}

/// clemcore 3.7.2 cannot play the snapshot's wordle: every episode raises.
/// clemhost plays every episode, writes what clem run writes (3.7 writes
/// its own error.json per failed episode) and exits with 4.
#[test]
fn episodes_clemcore_cannot_play_fail_one_by_one_with_error_json() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.7") else {
        return;
    };
    let args = [
        "-g",
        "wordle",
        "-m",
        "mock",
        "-e",
        "high_frequency_words_no_clue_no_critic",
    ];
    let ((_, theirs), (code, ours)) = clem_and_clemhost(&shared, &python, &args, &[]);
    assert_eq!(code, 4, "episodes failed");
    let errors: Vec<PathBuf> = ours
        .keys()
        .filter(|p| p.ends_with("error.json"))
        .cloned()
        .collect();
    assert_eq!(errors.len(), 10, "{errors:?}");
    for e in &errors {
        let record = &ours[e];
        assert_eq!(record["error"], "AttributeError", "{record}");
        assert!(
            record["message"].as_str().unwrap().contains("outcome"),
            "{record}"
        );
    }
    assert_same_trees(&theirs, &ours);
}

fn fake_python(env: &TestEnv, prints: &str) -> PathBuf {
    let p = env.write("fakepython", &format!("#!/bin/sh\necho '{prints}'\n"));
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).unwrap();
    p
}

fn clembench_game(env: &TestEnv) {
    env.write(
        "games/guess/clemgame.json",
        r#"{"game_name": "guess", "players": 1, "benchmark": ["2.0"]}"#,
    );
    env.write("games/guess/master.py", "");
    env.write(
        "games/guess/in/instances.json",
        r#"{"experiments": [{"name": "e", "game_instances": [{"game_id": 0}]}]}"#,
    );
}

/// A `csv.py` or a `clemhost_games/` folder in the working directory (a
/// cloned repository) is not imported by the Python clemhost starts:
/// `python -c` and `python -m` would put the working directory first on
/// `sys.path`, so its code would run with the keys in the environment.
#[test]
fn python_modules_in_the_working_directory_are_not_imported() {
    let env = TestEnv::new();
    clembench_game(&env);
    let marker = env.path().join("IMPORTED");
    let plant = format!(
        "open({:?}, 'a').write(__name__ + '\\n')\n",
        marker.display().to_string()
    );
    env.write("csv.py", &plant);
    env.write("clemhost_games/__init__.py", &plant);
    env.write("clemhost_games/__main__.py", &plant);
    // python3 checks clemcore's version (importlib.metadata imports csv);
    // a venv with clemcore also starts the worker.
    let mut pythons = vec![PathBuf::from("python3")];
    pythons.extend(venv_python("clembench-3.3"));
    for python in pythons {
        let out = env
            .cmd()
            .args(["run", "-g", "guess", "-m", "mock", "--python"])
            .arg(&python)
            .output()
            .unwrap();
        if stderr(&out).contains("cannot start the Python interpreter") {
            eprintln!("skipped {}: it does not start", python.display());
            continue;
        }
        assert!(
            !marker.exists(),
            "{} imported from the working directory: {:?}\n{}",
            python.display(),
            std::fs::read_to_string(&marker).unwrap_or_default(),
            stderr(&out)
        );
    }
}

/// An instances file given with -i may come from others; clemcore would
/// join its experiment names into the results path as they are.
#[test]
fn experiment_names_of_clembench_instances_that_are_not_one_folder_are_refused() {
    let env = TestEnv::new();
    clembench_game(&env);
    let python = fake_python(&env, "3.3.5");
    for name in ["../../escaped", "/abs/x", "a/b", ".."] {
        env.write(
            "games/guess/in/evil.json",
            &serde_json::json!({"experiments": [{"name": name, "game_instances": [{"game_id": 0}]}]})
                .to_string(),
        );
        let out = env
            .cmd()
            .args(["run", "-g", "guess", "-m", "mock", "-i", "evil", "--python"])
            .arg(&python)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("evil.json: experiments[0].name")
                && err.contains("cannot name a results folder"),
            "{name}: {err}"
        );
        assert!(!env.path().join("results").exists(), "{name}");
    }
}

#[test]
fn missing_or_unsupported_clemcore_is_one_line_naming_interpreter_and_fix() {
    let env = TestEnv::new();
    clembench_game(&env);
    for (prints, expected) in [
        ("", "clemcore is not installed for"),
        ("3.1.0", "clemcore 3.1.0 (for"),
    ] {
        let python = fake_python(&env, prints);
        let out = env
            .cmd()
            .args(["run", "-g", "guess", "-m", "mock", "--python"])
            .arg(&python)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(err.contains(expected), "{err}");
        assert!(err.contains(&python.display().to_string()), "{err}");
        assert!(
            err.contains("-m pip install clemcore==3.3.5 pettingzoo"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // CLEMHOST_PYTHON is the interpreter when --python is not given.
    let python = fake_python(&env, "");
    let out = env
        .cmd()
        .env("CLEMHOST_PYTHON", &python)
        .args(["run", "-g", "guess", "-m", "mock"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains(&python.display().to_string()),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_game_lists_native_and_clembench_games() {
    let env = TestEnv::new();
    clembench_game(&env);
    let out = env.run(&["run", "-g", "nosuchgame", "-m", "mock"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("unknown game 'nosuchgame'"), "{err}");
    assert!(err.contains("hellogame") && err.contains("guess"), "{err}");
}

#[test]
fn a_plugin_model_answers_the_players_of_a_clembench_game() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.3") else {
        return;
    };
    crate::util::built_plugin("echo");
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "echo-clue", "backend": "echo", "model_config": {"reply": "CLUE: a cold season"}}]"#,
    );
    let out = env
        .cmd()
        .env("NLTK_DATA", shared.join("reference/nltk_data"))
        .arg("--plugin-dir")
        .arg(crate::util::plugin_build_dir())
        .args([
            "run",
            "-g",
            "taboo",
            "-m",
            "echo-clue",
            "-e",
            "high_en",
            "--games-dir",
        ])
        .arg(shared.join("reference/clembench"))
        .arg("--python")
        .arg(&python)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let episode = env
        .path()
        .join("results/echo-clue-t0.0/taboo/high_en/instance_00000");
    let interactions: Value =
        serde_json::from_str(&std::fs::read_to_string(episode.join("interactions.json")).unwrap())
            .unwrap();
    let first_answer = interactions["turns"][0]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == "Player 1" && e["action"]["type"] == "get message")
        .expect("the describer answered");
    assert_eq!(first_answer["action"]["content"], "CLUE: a cold season");
    assert_eq!(
        interactions["player_models"]["0"]["model_name"], "echo-clue",
        "the host's registry entry is recorded"
    );
    // Every episode asked the model at least once (the guesser's answer,
    // the same clue, breaks taboo's format rule and ends the episode).
    let requests: u64 = stdout(&out)
        .lines()
        .find_map(|l| l.trim().strip_prefix("requests"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a requests row");
    assert!(requests >= 20, "{}", stdout(&out));
}

#[test]
fn games_list_shows_native_and_clembench_games_with_their_instances() {
    let env = TestEnv::new();
    clembench_game(&env);
    env.write(
        "elsewhere/hellogame/clemgame.json",
        r#"{"game_name": "hellogame", "players": 1}"#,
    );
    env.write("elsewhere/hellogame/master.py", "");
    let out = env.run(&["games", "list", "--json", "--games-dir", "elsewhere"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let row = |name: &str, kind: &str| {
        rows.iter()
            .find(|r| r["name"] == name && r["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} {name} in {rows:?}"))
            .clone()
    };
    assert_eq!(row("hellogame", "native")["instances"], 10);
    let guess = row("guess", "clembench");
    assert_eq!(guess["players"], 1);
    assert_eq!(guess["instances"], 1);
    assert_eq!(guess["playable"], true);
    assert!(guess["path"].as_str().unwrap().ends_with("games/guess"));
    // A clembench game with a native game's name is listed, not played.
    assert_eq!(row("hellogame", "clembench")["playable"], false);
    let text = stdout(&env.run(&["games", "list"]));
    assert!(
        text.contains("guess") && text.contains("clembench"),
        "{text}"
    );
}

#[test]
fn parallel_workers_write_what_one_worker_writes() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.3") else {
        return;
    };
    let env = TestEnv::new();
    let run = |dir: &str, extra: &[&str]| {
        let out = env
            .cmd()
            .env("NLTK_DATA", shared.join("reference/nltk_data"))
            .args([
                "run", "-g", "taboo", "-m", "mock", "-e", "high_en", "-r", dir,
            ])
            .args(extra)
            .arg("--games-dir")
            .arg(shared.join("reference/clembench").canonicalize().unwrap())
            .arg("--python")
            .arg(&python)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        tree_without_times(&env.path().join(dir))
    };
    let one = run("one", &[]);
    let three = run("three", &["--parallel", "3"]);
    assert_eq!(one.len(), 2 + 20 * 3);
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        three.keys().collect::<Vec<_>>(),
        "the same files, no staging folder left"
    );
    for (path, value) in &one {
        assert_eq!(&three[path], value, "{} differs", path.display());
    }
    let entries: Vec<_> = std::fs::read_dir(env.path().join("three"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["mock-t0.0"], "only the run folder is left");
}

/// `scripts/loopback_openai.py` on a free port; killed when dropped.
struct Loopback {
    child: std::process::Child,
    port: u16,
}

impl Loopback {
    fn start() -> Self {
        Self::with_latency_ms(0)
    }

    fn with_latency_ms(latency: u32) -> Self {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .arg(crate::util::repo_root().join("scripts/loopback_openai.py"))
            .args(["--max-seconds", "600", "--latency-ms", &latency.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the loopback server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        Loopback { child, port }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clem run` (clemcore's openai_compatible backend) and `clemhost run`
/// (the openai_compatible plugin) against one deterministic server, in one
/// folder with one registry and key.json: every file equal but times.
#[test]
fn clem_run_and_clemhost_run_write_the_same_files_for_the_same_answers() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.3") else {
        return;
    };
    crate::util::built_plugin("openai_compatible");
    let server = Loopback::start();
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "loop", "backend": "openai_compatible", "model_id": "loopback"}]"#,
    );
    env.write(
        "key.json",
        &format!(
            r#"{{"openai_compatible": {{"api_key": "sk-test", "base_url": "http://127.0.0.1:{}/v1"}}}}"#,
            server.port
        ),
    );
    let clembench = shared.join("reference/clembench").canonicalize().unwrap();
    let nltk = shared.join("reference/nltk_data");
    // taboo (two players) and wordle (one), one experiment each.
    for (game, experiment) in [
        ("taboo", "high_en"),
        ("wordle", "high_frequency_words_no_clue_no_critic"),
    ] {
        let out = Command::new(python.with_file_name("clem"))
            .args([
                "run", "-g", game, "-m", "loop", "-e", experiment, "-r", "theirs",
            ])
            .current_dir(env.path())
            .env("HOME", env.home())
            .env("CLEMBENCH_HOME", &clembench)
            .env("NLTK_DATA", &nltk)
            .output()
            .expect("clem runs");
        assert!(out.status.success(), "clem run failed: {}", stderr(&out));
        let out = env
            .cmd()
            .env("NLTK_DATA", &nltk)
            .arg("--plugin-dir")
            .arg(crate::util::plugin_build_dir())
            .args([
                "run",
                "-g",
                game,
                "-m",
                "loop",
                "-e",
                experiment,
                "-r",
                "ours",
                "--parallel",
                "2",
            ])
            .arg("--games-dir")
            .arg(&clembench)
            .arg("--python")
            .arg(&python)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let theirs = tree_without_times(&env.path().join("theirs"));
    let ours = tree_without_times(&env.path().join("ours"));
    assert!(theirs.len() > 2 * 3, "{:?}", theirs.keys());
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (path, value) in &theirs {
        assert_eq!(&ours[path], value, "{} differs", path.display());
    }
    // The model did answer: some turn holds a clue from the server.
    let any_clue = ours
        .iter()
        .filter(|(p, _)| p.ends_with("interactions.json"))
        .any(|(_, v)| v.to_string().contains("CLUE: something like"));
    assert!(
        any_clue,
        "the loopback server's answers are in the transcripts"
    );
}

/// The games' folder of the shared snapshot and NLTK's data, for `run`.
fn snapshot(shared: &Path) -> (PathBuf, PathBuf) {
    (
        shared.join("reference/clembench").canonicalize().unwrap(),
        shared.join("reference/nltk_data"),
    )
}

/// `clemhost run` of clembench games with `python`, in `env`.
fn clembench_run(env: &TestEnv, shared: &Path, python: &Path, args: &[&str]) -> Command {
    let (games, nltk) = snapshot(shared);
    let mut c = env.cmd();
    c.env("NLTK_DATA", nltk)
        .arg("--plugin-dir")
        .arg(crate::util::plugin_build_dir())
        .arg("run")
        .args(args)
        .arg("--games-dir")
        .arg(games)
        .arg("--python")
        .arg(python);
    c
}

/// A summary row's number.
fn row(out: &std::process::Output, name: &str) -> u64 {
    stdout(out)
        .lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} row in {}", stdout(out)))
}

/// The instance folders under an experiment folder.
fn instance_dirs(exp: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(exp)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed().as_secs() < 120, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `kill -9` and Ctrl-C mid-run leave only whole episodes in the run
/// folder (clemcore 3.3 writes no signal file, so a half-written episode
/// would otherwise look like a finished one); `--resume` plays only the
/// rest, removes the killed run's staging folder, and the tree equals an
/// uninterrupted run's.
#[test]
fn killed_and_interrupted_runs_resume_to_an_uninterrupted_runs_files() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.3") else {
        return;
    };
    crate::util::built_plugin("openai_compatible");
    let server = Loopback::with_latency_ms(60);
    let env = TestEnv::new();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "loop", "backend": "openai_compatible", "model_id": "loopback"}]"#,
    );
    env.write(
        "key.json",
        &format!(
            r#"{{"openai_compatible": {{"api_key": "sk-test", "base_url": "http://127.0.0.1:{}/v1"}}}}"#,
            server.port
        ),
    );
    let args = |dir: &'static str, more: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec![
            "-g",
            "taboo",
            "-m",
            "loop",
            "-e",
            "high_en",
            "-r",
            dir,
            "--parallel",
            "2",
        ];
        v.extend_from_slice(more);
        v
    };
    let exp = env.path().join("cut/loop-t0.0/taboo/high_en");
    let whole_episodes = |exp: &Path| {
        for d in instance_dirs(exp) {
            for f in ["instance.json", "interactions.json", "requests.json"] {
                let text = std::fs::read_to_string(d.join(f))
                    .unwrap_or_else(|e| panic!("{}/{f}: {e}", d.display()));
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{}/{f}: {e}", d.display()));
            }
        }
        instance_dirs(exp).len()
    };

    // kill -9 after two episodes.
    let mut child = clembench_run(&env, &shared, &python, &args("cut", &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("two episodes", || instance_dirs(&exp).len() >= 2);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500)); // the workers end with it
    let after_kill = whole_episodes(&exp);
    assert!(after_kill < 20, "killed before the end");
    assert_eq!(
        whole_episodes(&exp),
        after_kill,
        "nothing writes after the kill"
    );
    let staging: Vec<_> = std::fs::read_dir(env.path().join("cut"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".clemhost-staging-")
        })
        .collect();
    assert!(!staging.is_empty(), "the killed run's staging folders stay");

    // Ctrl-C during the resumed run.
    let child = clembench_run(&env, &shared, &python, &args("cut", &["--resume"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("one more episode", || {
        instance_dirs(&exp).len() > after_kill
    });
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    assert_eq!(row(&out, "skipped (complete)"), after_kill as u64);
    let after_interrupt = whole_episodes(&exp);
    assert!(row(&out, "interrupted") >= 1, "{}", stdout(&out));

    // The last resume plays only what is missing.
    let out = clembench_run(&env, &shared, &python, &args("cut", &["--resume"]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(row(&out, "skipped (complete)"), after_interrupt as u64);
    assert_eq!(row(&out, "completed"), 20 - after_interrupt as u64);
    let left: Vec<_> = std::fs::read_dir(env.path().join("cut"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["loop-t0.0"], "the stale staging folders are gone");

    let out = clembench_run(&env, &shared, &python, &args("whole", &[]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (cut, whole) = (
        tree_without_times(&env.path().join("cut")),
        tree_without_times(&env.path().join("whole")),
    );
    assert_eq!(cut.len(), 2 + 20 * 3);
    assert_same_trees(&whole, &cut);
}

/// clemcore 3.7 records the generation arguments: `--resume` with another
/// `-l` is refused before anything in the run folder changes.
#[test]
fn resume_with_other_settings_is_refused_and_changes_nothing() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.7") else {
        return;
    };
    let env = TestEnv::new();
    let base = [
        "-g",
        "taboo",
        "-m",
        "mock",
        "-e",
        "high_en",
        "--no-progress",
    ];
    let out = clembench_run(&env, &shared, &python, &base)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = env.path().join("results/mock");
    // One episode to play again, so that the resumed run reaches a worker.
    std::fs::remove_dir_all(run_dir.join("taboo/high_en/instance_00003")).unwrap();
    let snapshot = |dir: &Path| -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.insert(e.path(), std::fs::read_to_string(e.path()).unwrap());
                }
            }
        }
        out
    };
    let before = snapshot(&env.path().join("results"));
    let mut args = base.to_vec();
    args.extend(["--resume", "-l", "100"]);
    let out = clembench_run(&env, &shared, &python, &args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("other settings") && err.contains("player_models"),
        "{err}"
    );
    assert_eq!(
        snapshot(&env.path().join("results")),
        before,
        "nothing changed, no staging folder left"
    );
    // The same settings resume.
    let mut args = base.to_vec();
    args.push("--resume");
    let out = clembench_run(&env, &shared, &python, &args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(row(&out, "skipped (complete)"), 19);
    assert_eq!(row(&out, "completed"), 1);
}

/// `-g taboo -g wordle` plays both into one run folder; run.json has both.
#[test]
fn several_games_play_into_one_results_dir() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.3") else {
        return;
    };
    let env = TestEnv::new();
    let out = clembench_run(
        &env,
        &shared,
        &python,
        &[
            "-g",
            "taboo",
            "-g",
            "wordle",
            "-m",
            "mock",
            "--parallel",
            "2",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = env.path().join("results/mock-t0.0");
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    let games: Vec<&String> = run["games"].as_object().unwrap().keys().collect();
    assert_eq!(games, ["taboo", "wordle"]);
    let mut total = 0;
    for game in ["taboo", "wordle"] {
        let episodes: usize = std::fs::read_dir(run_dir.join(game))
            .unwrap()
            .flatten()
            .map(|e| instance_dirs(&e.path()).len())
            .sum();
        assert!(episodes > 0, "{game}");
        assert_eq!(
            run["games"][game]["num_instances"], episodes as u64,
            "{game}"
        );
        total += episodes;
    }
    assert_eq!(row(&out, "episodes"), total as u64);
    assert_eq!(row(&out, "completed"), total as u64);
}

/// Three shards, each into its own folder, merged with `cp -r`, give the
/// unsharded run's files (times aside; every shard's run.json counts all
/// episodes, so whichever is copied last is the right one).
#[test]
fn shards_of_a_clembench_game_merged_by_copying_equal_an_unsharded_run() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.3") else {
        return;
    };
    let env = TestEnv::new();
    let play = |dir: &str, extra: &[&str]| {
        let mut args = vec!["-g", "taboo", "-m", "mock", "-e", "high_en", "-r", dir];
        args.extend_from_slice(extra);
        let out = clembench_run(&env, &shared, &python, &args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out
    };
    play("whole", &[]);
    std::fs::create_dir(env.path().join("merged")).unwrap();
    let mut played = Vec::new();
    for k in 0..3 {
        let dir = format!("shard{k}");
        let shard = format!("{k}/3");
        played.push(row(&play(&dir, &["--shard", &shard]), "episodes"));
        let copied = Command::new("cp")
            .arg("-r")
            .arg(env.path().join(&dir).join("."))
            .arg(env.path().join("merged"))
            .status()
            .unwrap();
        assert!(copied.success());
    }
    assert_eq!(played, [7, 7, 6], "20 episodes dealt out");
    assert_same_trees(
        &tree_without_times(&env.path().join("whole")),
        &tree_without_times(&env.path().join("merged")),
    );
}
