//! clembench's own games, played by clemcore's code under `clemhost run`.
//! The tests that play need the shared clembench snapshot and the venvs of
//! `scripts/clembench-venvs` (CI's scripts/setup makes them); without
//! either they say why and pass.

use crate::times::tree_without_times;
use crate::util::{clemhost_cache, shared_dir, stderr, stdout, typed_into, TestEnv};
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
        if let Some((at, a, b)) = first_difference(value, &ours[path], String::new()) {
            panic!(
                "{} differs at {at}:\n  clem run: {a}\n  clemhost: {b}",
                path.display()
            );
        }
    }
}

/// Where two JSON values first differ (a JSON pointer), and the values there.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<(String, Value, Value)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
            x.iter().find_map(|(k, v)| match y.get(k) {
                Some(w) => first_difference(v, w, format!("{at}/{k}")),
                None => Some((format!("{at}/{k}"), v.clone(), Value::Null)),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some((at, a.clone(), b.clone())),
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

#[test]
fn a_human_player_types_into_clembench_games_as_into_clem_run() {
    let Some(shared) = shared_dir() else { return };
    for venv in ["clembench-3.3", "clembench-3.7"] {
        let Some(python) = venv_python(venv) else {
            return;
        };
        let games = tempfile::tempdir().unwrap();
        first_instances_of_the_snapshot(&shared, games.path(), 1);
        let env = TestEnv::new();
        // The person describes (taboo's first player), clemcore's mock guesses;
        // the last clue breaks the game's rule (no "CLUE:" prefix).
        let typed = "CLUE: a place to sleep\nCLUE: a hotel's room\nit is where you sleep\n";
        let args = ["-g", "taboo", "-e", "high_en", "-m", "human", "-m", "mock"];
        let mut clem = clem_command(&env, &python, games.path(), &[]);
        // clem's -m takes the models after one flag.
        clem.arg("run")
            .args(["-g", "taboo", "-e", "high_en", "-m", "human", "mock"])
            .args(["-r", "theirs"]);
        let theirs_out = typed_into(clem, typed);
        assert!(
            theirs_out.status.success(),
            "{venv}: clem run: {}",
            stderr(&theirs_out)
        );
        let mut ours = env.cmd();
        ours.env("NLTK_DATA", shared.join("reference/nltk_data"))
            .env("PYTHONHASHSEED", "0")
            .arg("run")
            .args(args)
            .args(["-r", "ours", "--parallel", "4", "--games-dir"])
            .arg(games.path())
            .arg("--python")
            .arg(&python);
        let out = typed_into(ours, typed);
        assert!(out.status.success(), "{venv}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("Your response as")
                && err.contains("You are playing a collaborative word guessing game"),
            "{venv}: the game's messages and clemcore's prompt reach the terminal: {err}"
        );
        assert!(
            err.contains("--parallel 1"),
            "{venv}: says it plays one at a time: {err}"
        );
        let theirs = tree_without_backend_objects(&env.path().join("theirs"));
        let ours = tree_without_backend_objects(&env.path().join("ours"));
        let interactions = ours
            .iter()
            .find(|(p, _)| p.ends_with("interactions.json"))
            .map(|(_, v)| v.to_string())
            .expect("an episode was played");
        assert!(
            interactions.contains("a hotel's room"),
            "{venv}: what was typed is recorded"
        );
        assert_same_trees(&theirs, &ours);
    }
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

/// Copies the snapshot's games into `into`, every experiment cut to its
/// first `n` instances (the instances file each spec names, rewritten): a
/// differential over every spec in a few minutes.
fn first_instances_of_the_snapshot(shared: &Path, into: &Path, n: usize) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if e.file_name() == "__pycache__" {
                continue;
            }
            if src.is_dir() {
                copy(&src, &dst);
            } else {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
    }
    fn specs(dir: &Path, out: &mut Vec<(PathBuf, Value)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                specs(&e.path(), out);
            } else if e.file_name() == "clemgame.json" {
                let text = std::fs::read_to_string(e.path()).unwrap();
                match serde_json::from_str(&text).unwrap() {
                    Value::Array(all) => out.extend(all.into_iter().map(|s| (dir.into(), s))),
                    one => out.push((dir.into(), one)),
                }
            }
        }
    }
    copy(&shared.join("reference/clembench"), into);
    let mut found = Vec::new();
    specs(into, &mut found);
    for (dir, spec) in found {
        let name = spec["instances"].as_str().unwrap_or("instances");
        let file = dir.join("in").join(format!("{name}.json"));
        let mut instances: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for e in instances["experiments"].as_array_mut().unwrap() {
            e["game_instances"].as_array_mut().unwrap().truncate(n);
        }
        std::fs::write(&file, instances.to_string()).unwrap();
    }
}

/// A working directory whose registry has `loop`, clemcore's and
/// clemhost's `openai_compatible` backend on `server`, for both tools.
fn loopback_env(server: &Loopback) -> TestEnv {
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
    env
}

/// `clem` of `python`'s venv (or `program` run by it) in `env`, games from
/// `games`; string hashing is fixed for both tools (adventuregame lists a
/// room's objects in set order).
fn clem_command(
    env: &TestEnv,
    python: &Path,
    games: &Path,
    program: &[&std::ffi::OsStr],
) -> Command {
    let mut c = match program {
        [] => Command::new(python.with_file_name("clem")),
        _ => {
            let mut c = Command::new(python);
            c.args(program);
            c
        }
    };
    c.current_dir(env.path())
        .env("HOME", env.home())
        .env("CLEMBENCH_HOME", games)
        .env(
            "NLTK_DATA",
            shared_dir().unwrap().join("reference/nltk_data"),
        )
        .env("PYTHONHASHSEED", "0");
    c
}

/// `clem run ARGS -r dir` (see [`clem_command`]); its exit code.
fn clem_run(mut clem: Command, dir: &str, args: &[&str]) -> i32 {
    let out = clem
        .arg("run")
        .args(args)
        .args(["-r", dir])
        .output()
        .expect("clem runs");
    out.status
        .code()
        .unwrap_or_else(|| panic!("clem run was killed: {}", stderr(&out)))
}

/// `clemhost run` into `-r dir`, games from `games`, workers as `clem_run`'s.
fn clemhost_run(env: &TestEnv, python: &Path, games: &Path, dir: &str, args: &[&str]) -> i32 {
    let out = env
        .cmd()
        .env(
            "NLTK_DATA",
            shared_dir().unwrap().join("reference/nltk_data"),
        )
        .env("PYTHONHASHSEED", "0")
        .arg("--plugin-dir")
        .arg(crate::util::plugin_build_dir())
        .arg("run")
        .args(args)
        .args(["-r", dir, "--no-progress", "--games-dir"])
        .arg(games)
        .arg("--python")
        .arg(python)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 4,
        "clemhost run failed: {}",
        stderr(&out)
    );
    code
}

/// The episode folders (experiment/instance) of `game`, those that hold
/// `file` when it is given.
fn episodes_with(tree: &BTreeMap<PathBuf, Value>, game: &str, file: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = tree
        .keys()
        .filter(|p| file.is_none_or(|f| p.ends_with(f)))
        .filter_map(|p| {
            let parts: Vec<_> = p.iter().map(|c| c.to_string_lossy()).collect();
            // <run folder>/<game>/<experiment>/<instance>/<file>
            (parts.len() == 5 && parts[1] == game).then(|| format!("{}/{}", parts[2], parts[3]))
        })
        .collect();
    out.dedup();
    out
}

/// The 15 specs of the snapshot.
const SPECS: [&str; 15] = [
    "adventuregame",
    "codenames",
    "guesswhat",
    "hellogame",
    "imagegame",
    "matchit_ascii",
    "privateshared",
    "referencegame",
    "taboo",
    "textmapworld",
    "textmapworld_graphreasoning",
    "textmapworld_specificroom",
    "wordle",
    "wordle_withclue",
    "wordle_withcritic",
];

/// The specs whose episodes draw from one random stream per process, seeded
/// once per benchmark, so that an episode depends on those played before
/// it in the same process.
const ONE_RANDOM_STREAM: [&str; 1] = ["codenames"];

/// The specs clemcore 3.7.2 cannot play (SNAPSHOT.md).
const FAIL_ON_3_7: [&str; 4] = [
    "privateshared",
    "wordle",
    "wordle_withclue",
    "wordle_withcritic",
];

/// `clem run -g all` (clemcore's openai_compatible backend) and `clemhost
/// run --parallel 2` (the openai_compatible plugin; codenames on one
/// worker) against one loopback server that plays every game plausibly, on
/// the first instance of every experiment of all 15 specs: every file equal
/// but times and the backends' own recorded objects; with 3.7 the specs it
/// cannot play fail episode by episode in both.
fn every_spec_plays_as_clem_run_plays_it(venv: &str) {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python(venv) else {
        return;
    };
    crate::util::built_plugin("openai_compatible");
    let games = tempfile::tempdir().unwrap();
    first_instances_of_the_snapshot(&shared, games.path(), 1);
    let server = Loopback::start();
    let env = loopback_env(&server);
    let clem = clem_command(&env, &python, games.path(), &[]);
    let their_code = clem_run(clem, "theirs", &["-g", "all", "-m", "loop"]);
    // codenames' opponent draws from one random stream per process, seeded
    // once: its episodes equal clem run's when one worker plays them all
    // (docs/clembench-games.md). The second run adds to the first's run.json.
    // Five seats: on a machine with fewer cores, workers with several seats
    // (threads), and specs that overlap as workers move on.
    let mut ours_args = vec!["-m", "loop", "--parallel", "5"];
    for spec in SPECS.iter().filter(|s| !ONE_RANDOM_STREAM.contains(s)) {
        // The name alone is clemhost's native hellogame; a selector picks
        // the snapshot's (as `all` does).
        let selector = if *spec == "hellogame" {
            r#"{"game_name": "hellogame"}"#
        } else {
            spec
        };
        ours_args.extend(["-g", selector]);
    }
    let mut our_code = clemhost_run(&env, &python, games.path(), "ours", &ours_args);
    for spec in ONE_RANDOM_STREAM {
        let code = clemhost_run(
            &env,
            &python,
            games.path(),
            "ours",
            &["-g", spec, "-m", "loop"],
        );
        our_code = our_code.max(code);
    }
    // 3.7 records the backend's own request and response objects: clemcore's
    // come from its openai client, ours from the plugin.
    let theirs = tree_without_backend_objects(&env.path().join("theirs"));
    let ours = tree_without_backend_objects(&env.path().join("ours"));
    assert_eq!(
        their_code, 0,
        "{venv}: clem run exits 0, also when episodes fail"
    );
    let run_json = ours
        .iter()
        .find(|(p, _)| p.ends_with("run.json"))
        .map(|(_, v)| v.clone())
        .expect("run.json");
    let played: Vec<&String> = run_json["games"].as_object().unwrap().keys().collect();
    let mut played: Vec<&str> = played.iter().map(|s| s.as_str()).collect();
    played.sort();
    assert_eq!(played, SPECS, "{venv}: every spec played");
    let modern = venv.ends_with("3.7");
    for spec in SPECS {
        let failing = modern && FAIL_ON_3_7.contains(&spec);
        let episodes = episodes_with(&ours, spec, None);
        let errors = episodes_with(&ours, spec, Some("error.json"));
        assert!(!episodes.is_empty(), "{venv}: {spec} has episodes");
        if failing {
            assert_eq!(errors, episodes, "{venv}: every {spec} episode fails");
        } else {
            assert_eq!(errors, Vec::<String>::new(), "{venv}: {spec}");
            // The loopback server's answers carry the game on: past the
            // first round in some episode of every spec with more than one.
            let rounds = |p: &PathBuf| ours[p]["turns"].as_array().map_or(0, Vec::len);
            let longest = ours
                .keys()
                .filter(|p| {
                    p.ends_with("interactions.json") && p.iter().nth(1) == Some(spec.as_ref())
                })
                .map(rounds)
                .max()
                .unwrap_or(0);
            let one_round = ["hellogame", "referencegame"].contains(&spec);
            assert!(
                one_round || longest > 1,
                "{venv}: {spec} never got past round one"
            );
        }
    }
    assert_eq!(our_code, if modern { 4 } else { 0 }, "{venv}: exit code");
    assert_same_trees(&theirs, &ours);
}

#[test]
fn every_spec_of_the_snapshot_writes_what_clem_run_writes_with_clemcore_3_3() {
    every_spec_plays_as_clem_run_plays_it("clembench-3.3");
}

#[test]
fn every_spec_of_the_snapshot_writes_what_clem_run_writes_with_clemcore_3_7() {
    every_spec_plays_as_clem_run_plays_it("clembench-3.7");
}

/// The site-packages folder of scripts/llama-cpp-python-venv's venv, when
/// llama-cpp-python imports there.
fn llama_cpp_python_site() -> Option<PathBuf> {
    let venv = clemhost_cache().join("venv-llamacpp");
    let found = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import llama_cpp, sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success());
    match found {
        Some(o) => Some(PathBuf::from(stdout(&o).trim())),
        None => {
            eprintln!(
                "skipped: no llama-cpp-python in {}; scripts/llama-cpp-python-venv builds it (5-8 min on 2 cores)",
                venv.display()
            );
            None
        }
    }
}

/// Every JSON file under `dir`, times and the backend's own recorded
/// prompt and response objects left out (clemcore's come from its backend's
/// client library, ours from the plugin).
fn tree_without_backend_objects(dir: &Path) -> BTreeMap<PathBuf, Value> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("manipulated_prompt_obj");
                m.remove("raw_response_obj");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Value>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // clemcore's scorers write Python's NaN (not JSON) for undefined scores.
            let mut v: Value = serde_json::from_str(&text)
                .or_else(|_| serde_json::from_str(&text.replace("NaN", "null")))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            v = crate::times::without_times(&v);
            strip(&mut v);
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), v);
        }
    }
    let mut tree = BTreeMap::new();
    walk(dir, dir, &mut tree);
    tree
}

/// A real model: SmolLM2 (greedy, 40 tokens an answer) on taboo and
/// wordle, clemcore 3.3.5 with its llamacpp backend (llama-cpp-python) and
/// clemhost with its llamacpp plugin, on the first two instances of every
/// experiment: the same answers, the same files, the same scores from
/// clemcore's scorers (`clem score` on both trees).
#[test]
fn smollm2_plays_taboo_and_wordle_as_clemcores_llamacpp_backend_does() {
    let Some(shared) = shared_dir() else { return };
    let Some(python) = venv_python("clembench-3.3") else {
        return;
    };
    let Some(site) = llama_cpp_python_site() else {
        return;
    };
    let Some(gguf) = crate::run::smollm2_gguf() else {
        return;
    };
    if !crate::util::plugin_build_dir()
        .join("libllamacpp_api.so")
        .exists()
    {
        eprintln!("skipped: the llamacpp plugin is not built");
        return;
    }
    let games = tempfile::tempdir().unwrap();
    first_instances_of_the_snapshot(&shared, games.path(), 2);
    let env = TestEnv::new();
    // The entry scripts/fetch-smollm2 writes, for both tools.
    let registry = serde_json::json!([{
        "model_name": "smol", "backend": "llamacpp",
        "huggingface_id": gguf.parent().unwrap().to_string_lossy(),
        "model_config": {"premade_chat_template": true, "eos_to_cull": "<\\|im_end\\|>",
                         "filename": gguf.file_name().unwrap().to_string_lossy()}
    }]);
    env.write("model_registry.json", &registry.to_string());
    let shim = crate::util::repo_root().join("host/tests/python/clem_llamacpp_local.py");
    for game in ["taboo", "wordle"] {
        let args = ["-g", game, "-m", "smol", "-l", "40"];
        let clem = clem_command(
            &env,
            &python,
            games.path(),
            &[shim.as_os_str(), site.as_os_str()],
        );
        assert_eq!(clem_run(clem, "theirs", &args), 0, "clem run {game}");
        let mut ours = args.to_vec();
        ours.extend(["--parallel", "2"]);
        assert_eq!(
            clemhost_run(&env, &python, games.path(), "ours", &ours),
            0,
            "{game}"
        );
    }
    for dir in ["theirs", "ours"] {
        let out = clem_command(&env, &python, games.path(), &[])
            .args(["score", "-r", dir])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "clem score -r {dir}: {}",
            stderr(&out)
        );
    }
    let theirs = tree_without_backend_objects(&env.path().join("theirs"));
    let ours = tree_without_backend_objects(&env.path().join("ours"));
    let scores = ours.keys().filter(|p| p.ends_with("scores.json")).count();
    assert_eq!(
        scores,
        2 * (3 + 2),
        "every episode scored: {:?}",
        ours.keys()
    );
    // The model answered: some player message is not empty.
    let answered = ours
        .iter()
        .filter(|(p, _)| p.ends_with("interactions.json"))
        .flat_map(|(_, v)| v["turns"].as_array().cloned().unwrap_or_default())
        .flat_map(|turn| turn.as_array().cloned().unwrap_or_default())
        .any(|e| {
            e["from"] != "GM"
                && e["action"]["type"] == "get message"
                && e["action"]["content"]
                    .as_str()
                    .is_some_and(|c| !c.trim().is_empty())
        });
    assert!(answered, "SmolLM2's answers are in the transcripts");
    assert_same_trees(&theirs, &ours);
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
