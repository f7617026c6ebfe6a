//! Finding clembench game specs (`clemgame.json`) the way clemcore 3.x does,
//! and selecting among them with `-g` (a name, `all`, or a JSON selector).
//! The rules are written out in docs/clembench-games.md.

use crate::error::{json_error, Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// How deep below a search root `clemgame.json` files are looked for (the
/// root is depth 0), as clemcore does.
pub const MAX_DEPTH: usize = 3;

/// Folder names never searched (clemcore's list), besides names starting with `.`.
const SKIPPED: [&str; 8] = [
    "venv",
    "__pycache__",
    "docs",
    "in",
    "resources",
    "utils",
    "evaluation",
    "files",
];

/// The environment variable naming a clembench checkout, searched when
/// nothing else is found.
pub const CLEMBENCH_HOME: &str = "CLEMBENCH_HOME";

/// One clembench game spec: the object of a `clemgame.json` (or a
/// `game_registry.json` entry) with its `game_path` set.
#[derive(Clone, Debug, PartialEq)]
pub struct GameSpec {
    /// Every key of the spec, `game_path` included, in file order.
    pub spec: Map<String, Value>,
    /// Where the spec was read (shown by `games list`).
    pub source: PathBuf,
}

impl GameSpec {
    /// `game_name`.
    pub fn name(&self) -> &str {
        self.spec
            .get("game_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `players` (0 when missing or not a number; `games list` shows it).
    pub fn players(&self) -> u64 {
        self.spec
            .get("players")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// The game's folder (`game_path`).
    pub fn game_path(&self) -> PathBuf {
        PathBuf::from(
            self.spec
                .get("game_path")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
    }

    /// Whether `master.py` is there (clemcore plays only such specs).
    pub fn has_master(&self) -> bool {
        self.game_path().join("master.py").is_file()
    }

    /// The instances file clemcore reads: `in/<instances>.json`, default `instances`.
    pub fn instances_file(&self, instances: Option<&str>) -> PathBuf {
        let name = instances
            .or_else(|| self.spec.get("instances").and_then(Value::as_str))
            .unwrap_or("instances");
        let name = name.strip_suffix(".json").unwrap_or(name);
        self.game_path().join("in").join(format!("{name}.json"))
    }

    /// The number of game instances in its instances file, when it reads.
    pub fn instance_count(&self) -> Option<usize> {
        let text = std::fs::read_to_string(self.instances_file(None)).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        Some(
            v.get("experiments")?
                .as_array()?
                .iter()
                .filter_map(|e| e.get("game_instances").and_then(Value::as_array))
                .map(Vec::len)
                .sum(),
        )
    }
}

/// Where to look, in order.
#[derive(Clone, Debug, Default)]
pub struct SearchPaths {
    /// `--games-dir DIR`, searched first, each like the working directory.
    pub games_dirs: Vec<PathBuf>,
    /// The working directory (its `game_registry.json` and folders below it).
    pub cwd: PathBuf,
    /// `CLEMBENCH_HOME`, searched only when nothing else was found.
    pub clembench_home: Option<PathBuf>,
}

impl SearchPaths {
    /// The working directory and `CLEMBENCH_HOME` of this process, plus `games_dirs`.
    pub fn from_env(games_dirs: &[PathBuf]) -> Self {
        SearchPaths {
            games_dirs: games_dirs.to_vec(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            clembench_home: std::env::var_os(CLEMBENCH_HOME).map(PathBuf::from),
        }
    }
}

/// Every spec found, in clemcore's order of precedence (the first spec of a
/// name wins a plain-name `-g`). A `--games-dir` that is not a folder, and a
/// `game_registry.json` or `clemgame.json` that does not parse, are errors
/// naming the file (clemcore only logs them; a benchmark silently missing
/// games is worse).
pub fn discover(paths: &SearchPaths) -> Result<Vec<GameSpec>> {
    let mut found = Vec::new();
    for dir in &paths.games_dirs {
        if !dir.is_dir() {
            return Err(Error::msg(format!(
                "--games-dir {}: not a folder; pass a clembench checkout (a folder with game folders holding clemgame.json)",
                dir.display()
            )));
        }
        walk(dir, 0, &mut found)?;
    }
    let registry = paths.cwd.join("game_registry.json");
    if registry.is_file() {
        from_registry_file(&registry, &mut found)?;
    }
    walk(&paths.cwd, 0, &mut found)?;
    if found.is_empty() {
        if let Some(home) = paths.clembench_home.as_deref().filter(|h| h.is_dir()) {
            walk(home, 0, &mut found)?;
        }
    }
    // A `--games-dir` inside the working directory (or given twice, or as
    // a link) reaches the same files again: each spec of a file counts once.
    let mut seen = std::collections::HashSet::new();
    found.retain(|spec| {
        let file = spec
            .source
            .canonicalize()
            .unwrap_or_else(|_| spec.source.clone());
        seen.insert((file, spec.name().to_string()))
    });
    Ok(found)
}

fn from_registry_file(path: &Path, found: &mut Vec<GameSpec>) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::msg(format!("{}: cannot read: {e}", path.display())))?;
    let entries: Vec<Map<String, Value>> =
        serde_json::from_str(&text).map_err(|e| json_error(path, &e, "a list of game specs"))?;
    for (i, mut entry) in entries.into_iter().enumerate() {
        if let Some(bench) = entry.get("benchmark_path") {
            let dir = bench.as_str().map(PathBuf::from).ok_or_else(|| {
                Error::msg(format!(
                    "{}: entry {i}: \"benchmark_path\" must be a string (a folder)",
                    path.display()
                ))
            })?;
            walk(&dir, 0, found)?;
            continue;
        }
        for key in ["game_name", "game_path", "players"] {
            if !entry.contains_key(key) {
                return Err(Error::msg(format!(
                    "{}: entry {i}: \"{key}\" is missing (a game spec needs game_name, game_path and players, or a benchmark_path)",
                    path.display()
                )));
            }
        }
        check_game_name(&entry, path)?;
        entry
            .entry("lookup_source")
            .or_insert_with(|| path.display().to_string().into());
        found.push(GameSpec {
            spec: entry,
            source: path.to_path_buf(),
        });
    }
    Ok(())
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<GameSpec>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let file = dir.join("clemgame.json");
    if file.is_file() {
        return from_clemgame_file(dir, &file, found);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // unreadable folders are skipped, as clemcore does
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false) || e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !SKIPPED.contains(&n.as_str()))
        .collect();
    names.sort();
    for name in names {
        walk(&dir.join(name), depth + 1, found)?;
    }
    Ok(())
}

fn from_clemgame_file(dir: &Path, file: &Path, found: &mut Vec<GameSpec>) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::msg(format!("{}: cannot read: {e}", file.display())))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| json_error(file, &e, "a game spec object or a list of them"))?;
    let specs = match value {
        Value::Object(o) => vec![o],
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(o) => Ok(o),
                _ => Err(Error::msg(format!(
                    "{}: entry {i} is not an object; each game spec is a JSON object",
                    file.display()
                ))),
            })
            .collect::<Result<_>>()?,
        _ => {
            return Err(Error::msg(format!(
                "{}: expected a game spec object or a list of them",
                file.display()
            )))
        }
    };
    // clemcore records the folder as it was reached from the search root.
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    for mut spec in specs {
        spec.insert("game_path".into(), abs.display().to_string().into());
        for key in ["game_name", "players"] {
            if !spec.contains_key(key) {
                return Err(Error::msg(format!(
                    "{}: a game spec has no \"{key}\"; add it",
                    file.display()
                )));
            }
        }
        check_game_name(&spec, file)?;
        found.push(GameSpec {
            spec,
            source: file.to_path_buf(),
        });
    }
    Ok(())
}

/// Files clemhost writes into a run folder, beside the games' folders
/// (and the names `eval` writes at a results tree's top).
const RUN_FOLDER_FILES: &[&str] = &["run.json", "raw.csv", "results.csv", "results.md"];

/// A game's name becomes a folder of the results tree: it must be a
/// string that is one normal path component, not a file name of the run
/// folder, and a name `-g` selects (not `all`, not JSON).
fn check_game_name(spec: &Map<String, Value>, file: &Path) -> Result<()> {
    let rule = match spec.get("game_name") {
        Some(Value::String(name)) => match crate::results::names::check_component(name) {
            Ok(()) if RUN_FOLDER_FILES.contains(&name.as_str()) => format!(
                "it must not be {name:?}, a file that clemhost writes in the run folder"
            ),
            Ok(()) if Selector::parse(name) != Selector::Name(name.clone()) => {
                "-g could not select it (\"all\" selects every game, and a value starting with '{' is read as a JSON selector)".to_string()
            }
            Ok(()) => return Ok(()),
            Err(rule) => rule.to_string(),
        },
        _ => "it must be a string".to_string(),
    };
    let shown = match spec.get("game_name") {
        Some(Value::String(name)) => format!("'{name}'"),
        other => other.map(Value::to_string).unwrap_or_default(),
    };
    Err(Error::msg(format!(
        "{}: \"game_name\" {shown} is not one folder name: {rule}; rename the game",
        file.display(),
    )))
}

/// A parsed `-g` value.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// A game name (the first spec of that name).
    Name(String),
    /// `all`: every spec found.
    All,
    /// A JSON object: with `benchmark`, every spec listing one of its
    /// versions; otherwise every spec that unifies with it.
    Json(Map<String, Value>),
}

impl Selector {
    /// Parses `-g`: JSON when it parses as an object (single quotes read as
    /// double ones, as clemcore does), else a name.
    pub fn parse(text: &str) -> Self {
        if text == "all" {
            return Selector::All;
        }
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            if let Ok(Value::Object(o)) = serde_json::from_str(&trimmed.replace('\'', "\"")) {
                return Selector::Json(o);
            }
        }
        Selector::Name(text.to_string())
    }
}

/// The specs `selector` picks, in discovery order (each once). Specs
/// without `master.py` are not played by `all` or a JSON selector.
pub fn select(found: &[GameSpec], selector: &Selector) -> Vec<GameSpec> {
    match selector {
        Selector::Name(n) => found
            .iter()
            .find(|s| s.name() == n)
            .cloned()
            .into_iter()
            .collect(),
        Selector::All => found.to_vec(),
        Selector::Json(sel) => {
            if let Some(versions) = sel.get("benchmark") {
                let wanted: Vec<&Value> = match versions {
                    Value::Array(a) => a.iter().collect(),
                    v => vec![v],
                };
                found
                    .iter()
                    .filter(|s| {
                        s.spec
                            .get("benchmark")
                            .and_then(Value::as_array)
                            .is_some_and(|have| wanted.iter().any(|w| have.contains(w)))
                            && s.has_master()
                    })
                    .cloned()
                    .collect()
            } else {
                found
                    .iter()
                    .filter_map(|s| unify(&s.spec, sel).map(|spec| GameSpec { spec, ..s.clone() }))
                    .filter(GameSpec::has_master)
                    .collect()
            }
        }
    }
}

/// Feature-structure unification of two JSON objects, as clemcore uses it
/// for selectors: keys in both must unify (objects recursively, anything
/// else equal); keys in one only are kept.
fn unify(spec: &Map<String, Value>, sel: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut out = spec.clone();
    for (k, v) in sel {
        match (spec.get(k), v) {
            (None, v) => {
                out.insert(k.clone(), v.clone());
            }
            (Some(Value::Object(a)), Value::Object(b)) => {
                out.insert(k.clone(), Value::Object(unify(a, b)?));
            }
            (Some(a), b) if a == b => {}
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn spec(name: &str, bench: &[&str]) -> String {
        serde_json::json!({"game_name": name, "players": 1, "benchmark": bench}).to_string()
    }

    #[test]
    fn game_names_that_dash_g_cannot_select_or_the_run_folder_uses_are_refused() {
        for name in [
            "all",
            "run.json",
            ".clemhost-staging-x",
            "{\"benchmark\":1}",
            " {'a': 1}",
        ] {
            let mut spec = Map::new();
            spec.insert("game_name".into(), name.into());
            let err = check_game_name(&spec, Path::new("g/clemgame.json"))
                .expect_err(name)
                .to_string();
            assert!(err.contains("g/clemgame.json"), "{name}: {err}");
        }
        let mut spec = Map::new();
        spec.insert("game_name".into(), "taboo".into());
        assert!(check_game_name(&spec, Path::new("g/clemgame.json")).is_ok());
    }

    #[test]
    fn walks_three_levels_sorted_and_skips_clemcore_folders() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "b/clemgame.json", &spec("b", &["2.0"]));
        write(d.path(), "a/x/y/clemgame.json", &spec("deep3", &[]));
        write(d.path(), "a/x/y/z/clemgame.json", &spec("deep4", &[]));
        write(d.path(), "resources/clemgame.json", &spec("skipped", &[]));
        write(d.path(), ".hidden/clemgame.json", &spec("hidden", &[]));
        // Below a clemgame.json nothing more is searched.
        write(d.path(), "b/sub/clemgame.json", &spec("inner", &[]));
        let paths = SearchPaths {
            cwd: d.path().into(),
            ..SearchPaths::default()
        };
        let names: Vec<String> = discover(&paths)
            .unwrap()
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        assert_eq!(names, ["deep3", "b"]);
    }

    #[test]
    fn clembench_home_only_when_nothing_else() {
        let names = |paths: &SearchPaths| -> Vec<String> {
            discover(paths)
                .unwrap()
                .iter()
                .map(|s| s.name().into())
                .collect()
        };
        let cwd = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        write(home.path(), "h/clemgame.json", &spec("fromhome", &[]));
        let mut paths = SearchPaths {
            cwd: cwd.path().into(),
            clembench_home: Some(home.path().into()),
            ..SearchPaths::default()
        };
        assert_eq!(discover(&paths).unwrap()[0].name(), "fromhome");
        write(cwd.path(), "c/clemgame.json", &spec("here", &[]));
        assert_eq!(names(&paths), ["here"]);
        paths.games_dirs = vec![home.path().into()];
        assert_eq!(names(&paths), ["fromhome", "here"]);
        // A --games-dir that the working directory's walk reaches too, or
        // one given twice: each game once.
        paths.games_dirs = vec![cwd.path().join("c"), cwd.path().join("c/../c")];
        assert_eq!(names(&paths), ["here"]);
    }

    #[test]
    fn selectors_pick_by_name_benchmark_and_unification() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "w/clemgame.json",
            &format!(
                "[{}, {{\"game_name\": \"w2\", \"players\": 2, \"main_game\": \"w\", \"benchmark\": [\"1.0\"]}}]",
                spec("w", &["2.0"])
            ),
        );
        write(d.path(), "w/master.py", "");
        write(
            d.path(),
            "nomaster/clemgame.json",
            &spec("nomaster", &["2.0"]),
        );
        let found = discover(&SearchPaths {
            cwd: d.path().into(),
            ..SearchPaths::default()
        })
        .unwrap();
        let names = |sel: &str| -> Vec<String> {
            select(&found, &Selector::parse(sel))
                .iter()
                .map(|s| s.name().into())
                .collect()
        };
        assert_eq!(names("w2"), ["w2"]);
        assert_eq!(names("nomaster"), ["nomaster"]);
        assert_eq!(names("{'benchmark': ['2.0']}"), ["w"]);
        // Unification: a spec without the key unifies too, as in clemcore.
        assert_eq!(names(r#"{"main_game": "w"}"#), ["w", "w2"]);
        assert_eq!(names(r#"{"main_game": "v"}"#), ["w"]);
        assert_eq!(names(r#"{"players": 2}"#), ["w2"]);
        assert!(names("unknown").is_empty());
        assert_eq!(names("all").len(), 3);
    }

    #[test]
    fn a_broken_clemgame_json_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "g/clemgame.json", "{\"game_name\": ");
        let e = discover(&SearchPaths {
            cwd: d.path().into(),
            ..SearchPaths::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("clemgame.json:1:"), "{e}");
    }

    #[test]
    fn game_names_that_are_not_one_folder_are_refused_naming_the_file() {
        for (name, rule) in [
            ("\"../../escape\"", "'/'"),
            ("\"/abs/x\"", "'/'"),
            ("\"..\"", "\"..\""),
            ("\"\"", "empty"),
            ("7", "a string"),
        ] {
            let d = tempfile::tempdir().unwrap();
            write(
                d.path(),
                "g/clemgame.json",
                &format!("{{\"game_name\": {name}, \"players\": 1}}"),
            );
            let e = discover(&SearchPaths {
                cwd: d.path().into(),
                ..SearchPaths::default()
            })
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("clemgame.json") && e.contains("game_name") && e.contains(rule),
                "{name}: {e}"
            );
        }
    }
}
