//! `clemhost score`, `transcribe` and `eval` over clembench results, next to
//! clemcore's `clem score`, `clem transcribe` and `clem eval` on copies of
//! the same results tree. The tests need the shared clembench snapshot and
//! the venvs of `scripts/clembench-venvs`; without them they say why and pass.

use crate::clembench::venv_python;
use crate::util::{shared_dir, stderr, stdout, TestEnv};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The files whose name is one of `names`.
fn named(tree: &BTreeMap<PathBuf, Vec<u8>>, names: &[&str]) -> BTreeMap<PathBuf, Vec<u8>> {
    tree.iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| names.iter().any(|w| n == *w)))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

fn assert_same_files(
    theirs: &BTreeMap<PathBuf, Vec<u8>>,
    ours: &BTreeMap<PathBuf, Vec<u8>>,
    what: &str,
) {
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "{what}: the same files"
    );
    for (p, bytes) in theirs {
        assert!(
            &ours[p] == bytes,
            "{what}: {} differs:\n--- clem\n{}\n--- clemhost\n{}",
            p.display(),
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&ours[p])
        );
    }
}

/// raw.csv's rows without the running index: clem lists the score files in
/// the order the file system returns them, so only the rows are compared.
fn raw_rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(",game,model,experiment,episode,metric,value")
    );
    let mut rows: Vec<String> = lines
        .map(|l| l.split_once(',').expect("an index").1.to_string())
        .collect();
    rows.sort();
    rows
}

/// The venv's `clem` with `args` in `dir`, the snapshot as CLEMBENCH_HOME.
fn clem(python: &Path, shared: &Path, dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(python.with_file_name("clem"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env(
            "CLEMBENCH_HOME",
            shared.join("reference/clembench").canonicalize().unwrap(),
        )
        .env("NLTK_DATA", shared.join("reference/nltk_data"))
        .output()
        .expect("clem runs");
    assert!(out.status.success(), "clem {args:?}: {}", stderr(&out));
    out
}

/// `clemhost` with `args` plus the snapshot and the venv's interpreter.
fn clemhost(env: &TestEnv, shared: &Path, python: &Path, args: &[&str]) -> Output {
    env.cmd()
        .env("NLTK_DATA", shared.join("reference/nltk_data"))
        .args(args)
        .arg("--games-dir")
        .arg(shared.join("reference/clembench").canonicalize().unwrap())
        .arg("--python")
        .arg(python)
        .output()
        .expect("clemhost runs")
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// taboo and referencegame played once with mock players, then scored,
/// transcribed and evaluated by clem and by clemhost on two copies: the
/// same scores.json, transcript.html and transcript.tex byte for byte, the
/// same results.csv and raw.csv rows; with both clemcore lines. One
/// episode lacks its instance.json in both copies: both leave it unscored
/// and go on (clemhost exits with 4 and names it).
#[test]
fn clem_and_clemhost_score_transcribe_and_eval_to_the_same_files() {
    let Some(shared) = shared_dir() else { return };
    for (venv, parallel) in [("clembench-3.3", "2"), ("clembench-3.7", "1")] {
        let Some(python) = venv_python(venv) else {
            continue;
        };
        let env = TestEnv::new();
        for (game, experiment) in [("taboo", "high_en"), ("referencegame", "letter_grids")] {
            let out = env
                .cmd()
                .env("NLTK_DATA", shared.join("reference/nltk_data"))
                .args([
                    "run",
                    "-g",
                    game,
                    "-m",
                    "mock",
                    "-e",
                    experiment,
                    "--no-progress",
                    "--games-dir",
                ])
                .arg(shared.join("reference/clembench").canonicalize().unwrap())
                .arg("--python")
                .arg(&python)
                .output()
                .unwrap();
            assert!(out.status.success(), "{venv} {game}: {}", stderr(&out));
        }
        let theirs = env.path().join("theirs");
        let ours = env.path().join("ours");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::create_dir_all(&ours).unwrap();
        copy_tree(&env.path().join("results"), &theirs);
        copy_tree(&env.path().join("results"), &ours);
        let run_dir = files(&env.path().join("results"))
            .keys()
            .find(|p| p.ends_with("run.json"))
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .expect("a run folder");
        let broken = run_dir.join("taboo/high_en/instance_00004/instance.json");
        for side in [&theirs, &ours] {
            std::fs::remove_file(side.join("results").join(&broken)).unwrap();
        }

        for game in ["taboo", "referencegame"] {
            clem(&python, &shared, &theirs, &["score", "-g", game]);
        }
        let ours_env = TestEnv::new();
        let results = ours.join("results");
        let results = results.to_str().unwrap();
        let out = clemhost(
            &ours_env,
            &shared,
            &python,
            &["score", "-r", results, "--parallel", parallel],
        );
        assert_eq!(out.status.code(), Some(4), "{venv}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("scored 37 episode(s)"),
            "{venv}: {}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("instance_00004") && stderr(&out).contains("instance.json"),
            "{venv}: {}",
            stderr(&out)
        );
        let (t, o) = (files(&theirs), files(&ours));
        let scores = named(&t, &["scores.json"]);
        assert_eq!(scores.len(), 20 + 18 - 1, "{venv}");
        assert_same_files(&scores, &named(&o, &["scores.json"]), venv);

        clem(&python, &shared, &theirs, &["transcribe"]);
        let out = clemhost(
            &ours_env,
            &shared,
            &python,
            &["transcribe", "-r", results, "--parallel", parallel],
        );
        assert!(out.status.success(), "{venv}: {}", stderr(&out));
        let (t, o) = (files(&theirs), files(&ours));
        let transcripts = named(&t, &["transcript.html", "transcript.tex"]);
        assert_eq!(transcripts.len(), 2 * (20 + 18), "{venv}");
        assert_same_files(
            &transcripts,
            &named(&o, &["transcript.html", "transcript.tex"]),
            venv,
        );

        // clemcore 3.3 always adds the std columns; 3.7 with --std.
        let variants: &[(&[&str], &[&str])] = if venv == "clembench-3.3" {
            &[(&["eval"], &["eval", "--std"])]
        } else {
            &[
                (&["eval"], &["eval"]),
                (&["eval", "--std"], &["eval", "--std"]),
            ]
        };
        for (their_args, our_args) in variants {
            clem(&python, &shared, &theirs, their_args);
            let mut args = our_args.to_vec();
            args.extend(["-r", results]);
            let out = ours_env.run(&args);
            assert!(out.status.success(), "{venv}: {}", stderr(&out));
            let csv =
                |side: &Path| std::fs::read_to_string(side.join("results/results.csv")).unwrap();
            assert_eq!(csv(&ours), csv(&theirs), "{venv} {our_args:?}: results.csv");
            assert_eq!(
                raw_rows(&ours.join("results/raw.csv")),
                raw_rows(&theirs.join("results/raw.csv")),
                "{venv}: raw.csv"
            );
            // The printed table holds the file's numbers.
            let line = csv(&ours).lines().nth(1).unwrap().to_string();
            let cells: Vec<&str> = line.split(',').skip(1).filter(|c| !c.is_empty()).collect();
            for c in cells {
                assert!(
                    stdout(&out).contains(&format!("| {c} |")),
                    "{c}: {}",
                    stdout(&out)
                );
            }
        }
    }
}

/// A game whose master.py does not load fails once, with the reason, and
/// its episodes count as not scored (exit 4); nothing is written.
#[test]
fn a_game_that_does_not_load_is_reported_once_and_its_episodes_not_scored() {
    let Some(python) = venv_python("clembench-3.3") else {
        return;
    };
    let env = TestEnv::new();
    env.write(
        "games/broken/clemgame.json",
        r#"{"game_name": "broken", "players": 1}"#,
    );
    env.write(
        "games/broken/master.py",
        "raise RuntimeError('this game is broken on purpose')\n",
    );
    for i in 0..3 {
        let ep = format!("results/mock/broken/e/instance_0000{i}");
        env.write(&format!("{ep}/interactions.json"), r#"{"meta": {}}"#);
        env.write(&format!("{ep}/instance.json"), r#"{"game_id": 0}"#);
    }
    env.write("results/mock/broken/e/experiment.json", r#"{"name": "e"}"#);
    let out = env
        .cmd()
        .args(["score", "--parallel", "2", "--python"])
        .arg(&python)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("this game is broken on purpose").count(),
        1,
        "one line for both workers: {err}"
    );
    assert!(err.contains("broken:"), "{err}");
    assert!(err.contains("3 episode(s) could not be scored"), "{err}");
    assert!(
        crate::util::files_containing(&env.path().join("results"), "episode scores").is_empty()
    );
    let left: Vec<_> = std::fs::read_dir(env.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["mock"], "no staging folder left");
}

/// scores.json files written by hand with awkward numbers (ties at the
/// second decimal, NaN, several models, a game sorted before "all"):
/// `clemhost eval` writes clem eval's results.csv, with both lines, sorted
/// by name and by clemscore.
#[test]
fn eval_tables_equal_clem_evals_on_awkward_numbers() {
    let Some(shared) = shared_dir() else { return };
    let env = TestEnv::new();
    let episode = |model: &str, game: &str, i: usize, aborted: u8, main: &str| {
        env.write(
            &format!("results/{model}/{game}/exp/instance_{i:05}/scores.json"),
            &format!(
                "{{\"meta\": {{}}, \"players\": {{}}, \"round scores\": {{}}, \"episode scores\": {{\"Request Count\": 3, \"Aborted\": {aborted}, \"Lose\": 0, \"Success\": 1, \"Main Score\": {main}, \"Request Success Ratio\": 0.6666666666666666}}}}"
            ),
        );
    };
    // 1/8 and 3/8 are ties after scaling; 2.675 is one in binary; 1/3s repeat.
    for (i, main) in ["12.5", "0.125", "NaN", "37.5"].iter().enumerate() {
        episode(
            "model-a",
            "adventuregame",
            i,
            u8::from(*main == "NaN"),
            main,
        );
    }
    for (i, main) in ["2.675", "100", "0", "33.333333333333336"]
        .iter()
        .enumerate()
    {
        episode("model-a", "taboo", i, 0, main);
        episode("model-b", "taboo", i, u8::from(i == 0), main);
    }
    for i in 0..3 {
        episode("model-c", "wordle", i, 1, "NaN");
    }
    episode("model-b", "adventuregame", 0, 0, "1.005");
    for venv in ["clembench-3.3", "clembench-3.7"] {
        let Some(python) = venv_python(venv) else {
            continue;
        };
        let mut variants: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
        if venv == "clembench-3.3" {
            variants.push((vec!["eval"], vec!["eval", "--std"]));
        } else {
            variants.push((vec!["eval"], vec!["eval"]));
            variants.push((vec!["eval", "--std"], vec!["eval", "--std"]));
            variants.push((
                vec!["eval", "--sort", "clemscore"],
                vec!["eval", "--sort", "clemscore"],
            ));
        }
        for (theirs, ours) in variants {
            clem(&python, &shared, env.path(), &theirs);
            let clem_csv = std::fs::read_to_string(env.path().join("results/results.csv")).unwrap();
            let clem_raw = raw_rows(&env.path().join("results/raw.csv"));
            let out = env.run(&ours);
            assert!(out.status.success(), "{}", stderr(&out));
            let csv = std::fs::read_to_string(env.path().join("results/results.csv")).unwrap();
            assert_eq!(csv, clem_csv, "{venv} {ours:?}");
            assert_eq!(
                raw_rows(&env.path().join("results/raw.csv")),
                clem_raw,
                "{venv}"
            );
            assert_eq!(csv.lines().count(), 4, "{csv}");
        }
    }
}
