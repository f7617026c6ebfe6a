//! clembench-format instance files: `{"experiments": [{"name": ..., ...,
//! "game_instances": [{"game_id": 0, ...}, ...]}, ...]}`.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One experiment: its own keys (everything but `game_instances`) and its instances.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    /// The experiment's name (directory name in the results).
    pub name: String,
    /// All keys of the experiment except `game_instances`, in file order.
    pub meta: Map<String, Value>,
    /// The instances, each with an integer `game_id`.
    pub instances: Vec<Map<String, Value>>,
}

/// Where instances came from and what they hold.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceFile {
    /// The file read, or `None` for the copy shipped inside clemhost.
    pub path: Option<PathBuf>,
    /// The experiments, in file order.
    pub experiments: Vec<Experiment>,
}

/// A problem with an instance file, naming the file, position and fix.
#[derive(Debug, thiserror::Error)]
pub enum InstancesError {
    /// The file could not be read.
    #[error("cannot read the instances file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}:{line}:{column}: the instances file is not valid JSON ({message}); fix the file and run again")]
    Json {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The JSON does not have the clembench shape.
    #[error("{path}: {message}")]
    Shape {
        /// The file.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Parses instance text; `origin` names it in errors.
/// A byte order mark (an editor on Windows) is skipped; duplicate keys are
/// warned about, naming both lines.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Experiment>, InstancesError> {
    let text = crate::registry::locate::strip_bom(text);
    let value: Value = serde_json::from_str(text).map_err(|e| InstancesError::Json {
        path: origin.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    crate::registry::locate::warn_duplicate_keys(origin, text);
    let shape = |message: String| InstancesError::Shape {
        path: origin.to_string(),
        message,
    };
    let experiments = value
        .get("experiments")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            shape("the top level needs an \"experiments\" list (clembench format: {\"experiments\": [{\"name\": ..., \"game_instances\": [...]}]})".into())
        })?;
    let mut out: Vec<Experiment> = Vec::new();
    for (i, exp) in experiments.iter().enumerate() {
        let obj = exp
            .as_object()
            .ok_or_else(|| shape(format!("experiments[{i}] is not an object")))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| shape(format!("experiments[{i}] has no string \"name\"")))?
            .to_string();
        // The name becomes the experiment's folder in the results tree.
        if let Err(rule) = crate::results::names::check_component(&name) {
            return Err(shape(format!(
                "experiments[{i}].name {name:?} cannot name a results folder: {rule}; rename the experiment"
            )));
        }
        if let Some(j) = out.iter().position(|e| e.name == name) {
            return Err(shape(format!(
                "experiments[{j}] and experiments[{i}] are both named {name:?}; their episodes would share one results folder, so give each experiment its own name"
            )));
        }
        let instances = obj
            .get("game_instances")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                shape(format!(
                    "experiments[{i}] (\"{name}\") has no \"game_instances\" list"
                ))
            })?;
        let mut list = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (j, inst) in instances.iter().enumerate() {
            let inst = inst.as_object().ok_or_else(|| {
                shape(format!(
                    "experiments[{i}].game_instances[{j}] is not an object"
                ))
            })?;
            let id = inst.get("game_id").and_then(Value::as_u64).ok_or_else(|| {
                shape(format!(
                    "experiments[{i}].game_instances[{j}] needs a non-negative integer \"game_id\""
                ))
            })?;
            if !seen.insert(id) {
                return Err(shape(format!(
                    "experiment \"{name}\" has game_id {id} twice; every instance needs its own game_id"
                )));
            }
            list.push(inst.clone());
        }
        let meta: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| k.as_str() != "game_instances")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.push(Experiment {
            name,
            meta,
            instances: list,
        });
    }
    Ok(out)
}

/// Reads the instances of a game: `file` if given (a path, or a name looked
/// up as `games/<game>/in/<name>.json`), else `games/<game>/in/instances.json`
/// under the working directory, else the copy shipped with clemhost.
pub fn load(game: &dyn super::Game, file: Option<&Path>) -> Result<InstanceFile, InstancesError> {
    let default_dir = Path::new("games").join(game.name()).join("in");
    let path = match file {
        Some(f) if f.exists() => Some(f.to_path_buf()),
        Some(f) => {
            let mut name = f.as_os_str().to_owned();
            if f.extension().is_none() {
                name.push(".json");
            }
            let candidate = default_dir.join(name);
            if candidate.exists() {
                Some(candidate)
            } else {
                return Err(InstancesError::Read {
                    path: f.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!(
                            "no such file (also looked for {}); pass an existing instances.json",
                            candidate.display()
                        ),
                    ),
                });
            }
        }
        None => {
            let p = default_dir.join("instances.json");
            p.exists().then_some(p)
        }
    };
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|source| InstancesError::Read {
                path: p.display().to_string(),
                source,
            })?;
            let experiments = parse(&text, &p.display().to_string())?;
            Ok(InstanceFile {
                path: Some(p),
                experiments,
            })
        }
        None => Ok(InstanceFile {
            path: None,
            experiments: parse(
                game.shipped_instances(),
                &format!("<instances shipped for {}>", game.name()),
            )?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_json_names_line_and_column() {
        let err = parse("{\n  \"experiments\": [\n    {,\n", "x.json").expect_err("broken");
        let msg = err.to_string();
        assert!(msg.starts_with("x.json:3:6:"), "{msg}");
    }

    #[test]
    fn experiments_keep_their_keys_without_instances() {
        let exps = parse(
            r#"{"experiments":[{"name":"e","language":"en","game_instances":[{"game_id":3,"x":1}]}]}"#,
            "x",
        )
        .expect("valid");
        assert_eq!(exps[0].name, "e");
        assert_eq!(
            exps[0].meta.keys().collect::<Vec<_>>(),
            vec!["name", "language"]
        );
        assert_eq!(exps[0].instances[0]["game_id"], 3);
    }

    #[test]
    fn experiment_names_that_are_not_one_folder_name_are_refused() {
        for (name, rule) in [
            ("/abs/victim", "'/'"),
            ("../../escaped", "'/'"),
            ("../../gpt-4o/hellogame/greet_en", "'/'"),
            ("", "empty"),
            (".", "\"..\""),
            ("a/b", "'/'"),
            ("a\\u0000b", "NUL"),
        ] {
            let text = format!(
                r#"{{"experiments":[{{"name":"{name}","game_instances":[{{"game_id":0}}]}}]}}"#
            );
            let err = parse(&text, "inst.json").expect_err(name).to_string();
            assert!(
                err.starts_with("inst.json: experiments[0].name") && err.contains(rule),
                "{name:?}: {err}"
            );
        }
    }

    #[test]
    fn two_experiments_with_one_name_are_refused() {
        let err = parse(
            r#"{"experiments":[{"name":"e","game_instances":[{"game_id":0}]},
                               {"name":"e","game_instances":[{"game_id":0}]}]}"#,
            "inst.json",
        )
        .expect_err("duplicate")
        .to_string();
        assert!(
            err.contains("experiments[0] and experiments[1] are both named \"e\""),
            "{err}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let exps = parse(
            "\u{feff}{\"experiments\":[{\"name\":\"e\",\"game_instances\":[{\"game_id\":0}]}]}",
            "bom.json",
        )
        .expect("a BOM is not an error");
        assert_eq!(exps[0].name, "e");
    }

    #[test]
    fn missing_game_id_is_explained() {
        let err = parse(
            r#"{"experiments":[{"name":"e","game_instances":[{}]}]}"#,
            "f",
        )
        .expect_err("no id");
        assert!(err.to_string().contains("game_id"), "{err}");
    }
}
