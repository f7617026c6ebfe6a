//! # The model registry
//!
//! A model registry is a JSON file that maps the names users type
//! (`-m gpt-4o`) to everything a backend plugin needs to serve the model.
//! This module reads registries and resolves model arguments the way
//! clemcore 3.7.2 does, so the same files and the same `-m` strings give the
//! same models, with clearer errors.
//!
//! Principal types:
//! - [`Registry`]: the entries of every registry file, in lookup order.
//!   [`Registry::load`] reads every `--registry FILE`, then
//!   `./model_registry.json`, then the registry shipped inside clemhost
//!   (left out with `--no-default-registry`).
//! - [`RegistryEntry`]: one entry as written (plus `lookup_source`), and the
//!   file it came from.
//! - [`ResolvedModel`]: the outcome of [`Registry::resolve`]: the unified
//!   spec that goes to the plugin and into `experiment.json`, and where it
//!   came from.
//! - [`parse_model_arg`]: a command-line model argument (a name or a JSON
//!   object) as a query.
//!
//! Resolution ([`Registry::resolve`]) tries the entries in order and takes
//! the first one that *unifies* with the query (see [`unify`]): keys that
//! only one side has are copied, shared keys must agree (nested objects
//! merge), and the query's values win. The names `mock`/`programmatic` and
//! `human`/`terminal` are built-in players that need no entry.
//!
//! ```
//! use clemhost::registry::{parse_model_arg, Registry};
//!
//! let registry = Registry::from_json_text(
//!     r#"[{"model_name": "m", "backend": "echo", "model_config": {"a": 1}}]"#,
//!     "example.json",
//!     "example.json",
//! )
//! .expect("valid registry");
//! let query = parse_model_arg("{'model_name':'m','model_config':{'b':2}}");
//! let model = registry.resolve(&query).expect("m is registered");
//! assert_eq!(model.backend(), "echo");
//! assert_eq!(model.spec["model_config"], serde_json::json!({"b": 2, "a": 1}));
//! ```
//!
//! Where clemhost differs from clemcore (all listed in `docs/registry.md`):
//! a query without `model_name` resolves to the first entry that unifies
//! (clemcore raises `AttributeError`); a malformed registry file is an error
//! with its path, line and column (clemcore silently ignores a broken
//! `./model_registry.json`); an unknown model's error lists the closest
//! registered names; entries in the pre-1.0 format (backend settings at the
//! top level instead of in `model_config`) are read, with a warning.

pub mod append;
mod error;
mod legacy;
mod load;
pub mod locate;
mod suggest;
pub mod unify;

pub use error::RegistryError;
pub use legacy::LEGACY_MODEL_CONFIG_KEYS;

use crate::error::Error;
use locate::Position;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The registry shipped with clemhost (the repository's `model_registry.json`,
/// compiled into the binary).
pub const SHIPPED_REGISTRY: &str = include_str!("../../../model_registry.json");

/// [`ResolvedModel::source`] / [`RegistryEntry::source`] of entries from the
/// registry shipped with clemhost.
pub const SHIPPED_SOURCE: &str = "builtin";

/// [`ResolvedModel::source`] of the built-in players (`mock`, `human`, ...).
pub const PLAYER_SOURCE: &str = "player";

/// The `lookup_source` the shipped entries get (clemcore's word for the
/// registry that comes with the package).
pub const PACKAGED_LOOKUP_SOURCE: &str = "packaged";

/// The name of the registry file read from the working directory.
pub const CWD_REGISTRY_FILE: &str = "model_registry.json";

/// Model names that stand for the programmed (mock) player.
pub const PROGRAMMED_NAMES: [&str; 2] = ["mock", "programmatic"];

/// Model names that stand for a human at the terminal.
pub const HUMAN_NAMES: [&str; 2] = ["human", "terminal"];

/// The backend of the programmed player (no plugin).
pub const PROGRAMMED_BACKEND: &str = "_player_programmed";

/// The backend of the human player (no plugin).
pub const HUMAN_BACKEND: &str = "_player_human";

/// One registry entry and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryEntry {
    /// The entry as written (every field kept), with `lookup_source` added
    /// when the file did not set it; pre-1.0 settings moved into
    /// `model_config`.
    pub spec: Map<String, Value>,
    /// The registry file's path, or [`SHIPPED_SOURCE`].
    pub source: String,
    /// Where the entry starts in its file.
    pub position: Option<Position>,
}

impl RegistryEntry {
    /// The entry's `model_name` (`""` when it has none or it is not a string).
    pub fn model_name(&self) -> &str {
        str_field(&self.spec, "model_name")
    }

    /// The entry's `backend` (`""` when it is not a string).
    pub fn backend(&self) -> &str {
        str_field(&self.spec, "backend")
    }

    /// `source:line:column` of the entry (or just the source); for the
    /// shipped registry `builtin (model_registry.json:line:column)`.
    pub fn location(&self) -> String {
        match (self.position, self.source == SHIPPED_SOURCE) {
            (Some(p), true) => format!("{SHIPPED_SOURCE} ({CWD_REGISTRY_FILE}:{p})"),
            (Some(p), false) => format!("{}:{p}", self.source),
            (None, _) => self.source.clone(),
        }
    }
}

/// A model argument resolved against the registry.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedModel {
    /// The unified spec, in clemcore's key order (the query's keys, then the
    /// entry's other keys sorted), including `lookup_source`. This exact
    /// object goes to the plugin (`ModelConfig::spec`) and into
    /// `experiment.json`.
    pub spec: Map<String, Value>,
    /// Where it came from: the registry file's path, [`SHIPPED_SOURCE`]
    /// (`"builtin"`) for the registry shipped with clemhost, or
    /// [`PLAYER_SOURCE`] (`"player"`) for the built-in players.
    pub source: String,
}

impl ResolvedModel {
    /// The resolved `model_name` (`""` when absent or not a string).
    pub fn model_name(&self) -> &str {
        str_field(&self.spec, "model_name")
    }

    /// The resolved `backend` (`""` when absent or not a string).
    pub fn backend(&self) -> &str {
        str_field(&self.spec, "backend")
    }

    /// A built-in player (`mock`/`programmatic` or `human`/`terminal`): no
    /// registry entry and no plugin behind it.
    pub fn is_builtin(&self) -> bool {
        self.is_programmed() || self.is_human()
    }

    /// The programmed player (backend `_player_programmed`).
    pub fn is_programmed(&self) -> bool {
        self.backend() == PROGRAMMED_BACKEND
    }

    /// The human player (backend `_player_human`).
    pub fn is_human(&self) -> bool {
        self.backend() == HUMAN_BACKEND
    }

    /// The entry's `model_config` object, if it has one.
    pub fn model_config(&self) -> Option<&Map<String, Value>> {
        self.spec.get("model_config").and_then(Value::as_object)
    }
}

fn str_field<'a>(spec: &'a Map<String, Value>, key: &str) -> &'a str {
    spec.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Every registry entry, in lookup order.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: Vec<RegistryEntry>,
    /// The registries read, in order (paths, or [`SHIPPED_SOURCE`]).
    files: Vec<String>,
}

/// Parses a command-line model argument as clemcore's
/// `ModelSpec.from_string` does: every `'` becomes `"`; if the result is a
/// JSON object it is the query, otherwise the (already replaced) text is the
/// `model_name`. No trimming, names are case-sensitive.
pub fn parse_model_arg(s: &str) -> Map<String, Value> {
    let replaced = s.replace('\'', "\"");
    match serde_json::from_str::<Value>(&replaced) {
        Ok(Value::Object(map)) => map,
        _ => {
            let mut map = Map::new();
            map.insert("model_name".into(), Value::String(replaced));
            map
        }
    }
}

/// The query for a plain model name.
pub fn name_query(name: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("model_name".into(), Value::String(name.to_string()));
    map
}

impl Registry {
    fn push_file(&mut self, source: String, entries: Vec<RegistryEntry>) {
        self.files.push(source);
        self.entries.extend(entries);
    }

    /// The entries in lookup order.
    pub fn entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    /// The registries that were read, in order (paths, or `"builtin"`).
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Resolves a query as clemcore's `get_first_model_spec_that_unify_with`
    /// does: built-in player names first, then the first entry that unifies.
    pub fn resolve(&self, query: &Map<String, Value>) -> crate::Result<ResolvedModel> {
        self.try_resolve(query).map_err(Error::from)
    }

    /// [`Registry::resolve`] with the typed error.
    pub fn try_resolve(&self, query: &Map<String, Value>) -> Result<ResolvedModel, RegistryError> {
        if let Some(player) = builtin_player(query) {
            return Ok(player);
        }
        if self.entries.is_empty() {
            return Err(RegistryError::Empty {
                read: self.files_read(),
            });
        }
        if let Some((entry, spec)) = self.first_unifying(query) {
            return Ok(ResolvedModel {
                spec,
                source: entry.source.clone(),
            });
        }
        Err(RegistryError::NoMatch {
            selector: clemhost_pyfacts::json::compact(&Value::Object(query.clone())),
            hint: self.no_match_hint(query),
        })
    }

    /// The first entry that unifies with `query` and the unified spec
    /// (built-in player names are not special here).
    pub fn first_unifying(
        &self,
        query: &Map<String, Value>,
    ) -> Option<(&RegistryEntry, Map<String, Value>)> {
        self.entries
            .iter()
            .find_map(|entry| unify::unify_maps(query, &entry.spec).map(|spec| (entry, spec)))
    }

    fn files_read(&self) -> String {
        if self.files.is_empty() {
            "no registry was read: pass --registry FILE, add ./model_registry.json, or drop --no-default-registry".into()
        } else {
            let files: Vec<String> = self
                .files
                .iter()
                .map(|f| {
                    if f == SHIPPED_SOURCE {
                        format!("{SHIPPED_SOURCE} (shipped with clemhost)")
                    } else {
                        f.clone()
                    }
                })
                .collect();
            format!("registries read: {}", files.join(", "))
        }
    }

    /// The distinct model names, in lookup order.
    pub fn model_names(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.entries
            .iter()
            .map(RegistryEntry::model_name)
            .filter(|n| !n.is_empty() && seen.insert(*n))
            .collect()
    }
}

/// The built-in player a query names, if any (only `model_name` is read;
/// every other key is dropped, as clemcore does).
fn builtin_player(query: &Map<String, Value>) -> Option<ResolvedModel> {
    let name = query.get("model_name")?.as_str()?;
    let backend = if PROGRAMMED_NAMES.contains(&name) {
        PROGRAMMED_BACKEND
    } else if HUMAN_NAMES.contains(&name) {
        HUMAN_BACKEND
    } else {
        return None;
    };
    let mut spec = Map::new();
    spec.insert("model_name".into(), Value::String(name.to_string()));
    spec.insert("backend".into(), Value::String(backend.to_string()));
    Some(ResolvedModel {
        spec,
        source: PLAYER_SOURCE.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::suggest::edit_distance;
    use super::*;
    use serde_json::json;

    fn registry(v: Value) -> Registry {
        Registry::from_json_text(&v.to_string(), "test.json", "test.json").expect("valid registry")
    }

    fn query(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("query fixture is not an object: {other}"),
        }
    }

    #[test]
    fn entries_named_like_built_in_players_are_refused() {
        for name in ["mock", "programmatic", "human", "terminal"] {
            let text = json!([{"model_name": name, "backend": "openai"}]).to_string();
            let err = Registry::from_json_text(&text, "reg.json", "reg.json")
                .expect_err(name)
                .to_string();
            assert!(err.contains("reg.json") && err.contains(name), "{err}");
        }
    }

    #[test]
    fn model_args_parse_like_clemcore() {
        assert_eq!(
            parse_model_arg("gpt-4o"),
            query(json!({"model_name": "gpt-4o"}))
        );
        assert_eq!(
            parse_model_arg("{'model_name':'m','model_config':{'extra_body':{'top_k':20}}}"),
            query(json!({"model_name": "m", "model_config": {"extra_body": {"top_k": 20}}}))
        );
        assert_eq!(
            parse_model_arg("o'model"),
            query(json!({"model_name": "o\"model"}))
        );
        assert_eq!(
            parse_model_arg("'gpt-4o'"),
            query(json!({"model_name": "\"gpt-4o\""}))
        );
        assert_eq!(
            parse_model_arg("[\"gpt-4o\"]"),
            query(json!({"model_name": "[\"gpt-4o\"]"}))
        );
        assert_eq!(parse_model_arg("123"), query(json!({"model_name": "123"})));
        assert_eq!(
            parse_model_arg("gpt-4o "),
            query(json!({"model_name": "gpt-4o "}))
        );
        let keys: Vec<String> = parse_model_arg("{'z':1,'a':2}").keys().cloned().collect();
        assert_eq!(keys, ["z", "a"]);
    }

    #[test]
    fn players_short_circuit() {
        let r = Registry::default();
        let m = r
            .resolve(&query(json!({"model_name": "mock", "backend": "openai"})))
            .expect("mock");
        assert_eq!(
            Value::Object(m.spec.clone()),
            json!({"model_name": "mock", "backend": "_player_programmed"})
        );
        assert!(m.is_builtin() && m.is_programmed());
        let h = r.resolve(&name_query("terminal")).expect("terminal");
        assert_eq!(h.backend(), HUMAN_BACKEND);
        assert!(h.is_human());
    }

    #[test]
    fn empty_registry_says_so() {
        let e = Registry::default()
            .try_resolve(&name_query("m"))
            .expect_err("empty");
        assert!(e
            .to_string()
            .starts_with("Model registry is empty. Load a model registry and try again."));
    }

    #[test]
    fn first_unifying_entry_wins() {
        let r = registry(json!([
            {"model_name": "m", "backend": "x", "tier": "small"},
            {"model_name": "m", "backend": "y", "tier": "large"}
        ]));
        assert_eq!(r.resolve(&name_query("m")).expect("m").backend(), "x");
        let m = r
            .resolve(&query(json!({"model_name": "m", "tier": "large"})))
            .expect("large");
        assert_eq!(m.backend(), "y");
        // No model_name: clemcore crashes; we take the first entry that unifies.
        let m = r
            .resolve(&query(json!({"tier": "large"})))
            .expect("large without name");
        assert_eq!(m.model_name(), "m");
        assert_eq!(m.backend(), "y");
    }

    #[test]
    fn lookup_source_is_added_and_sorted_in() {
        let r = registry(json!([{"model_name": "m", "zeta": 1, "backend": "b", "alpha": 2}]));
        let m = r
            .resolve(&query(json!({"model_name": "m", "temperature": 0.5})))
            .expect("m");
        let keys: Vec<&str> = m.spec.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "model_name",
                "temperature",
                "alpha",
                "backend",
                "lookup_source",
                "zeta"
            ]
        );
        assert_eq!(m.spec["lookup_source"], json!("test.json"));
    }

    #[test]
    fn existing_lookup_source_is_kept() {
        let r = registry(json!({"model_name": "m", "backend": "b", "lookup_source": "elsewhere"}));
        let m = r.resolve(&name_query("m")).expect("m");
        assert_eq!(m.spec["lookup_source"], json!("elsewhere"));
    }

    #[test]
    fn no_match_message_matches_clemcore_and_helps() {
        let r = registry(json!([
            {"model_name": "gpt-4o", "backend": "openai", "context_size": "128k"},
            {"model_name": "gpt-4o-mini", "backend": "openai"}
        ]));
        let e = r.try_resolve(&name_query("gpt-5")).expect_err("unknown");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "No model spec unifies with model selector={\"model_name\":\"gpt-5\"}\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("closest registered names: gpt-4o, gpt-4o-mini"),
            "{text}"
        );
        let e = r
            .try_resolve(&query(
                json!({"model_name": "gpt-4o", "context_size": "200k"}),
            ))
            .expect_err("conflict");
        let text = e.to_string();
        assert!(
            text.contains("differs in: context_size (asked \"200k\", registered \"128k\")"),
            "{text}"
        );
    }

    #[test]
    fn entries_need_a_backend_and_must_be_objects() {
        let e = Registry::from_json_text(
            "[\n {\"model_name\": \"a\", \"backend\": \"b\"},\n {\"model_name\": \"c\"}\n]",
            "r.json",
            "r.json",
        )
        .expect_err("no backend");
        assert!(
            e.to_string()
                .starts_with("r.json:3:2: entry 1 (model_name \"c\") has no \"backend\""),
            "{e}"
        );
        let e = Registry::from_json_text("[\"x\"]", "r.json", "r.json").expect_err("not an object");
        assert!(
            e.to_string()
                .starts_with("r.json:1:2: entry 0 of the model registry is a string"),
            "{e}"
        );
        let e = Registry::from_json_text("42", "r.json", "r.json").expect_err("a number");
        assert!(e.to_string().contains("holds a number"), "{e}");
        let e = Registry::from_json_text("[{\"a\": 1,}]", "r.json", "r.json").expect_err("syntax");
        assert!(e.to_string().starts_with("r.json:1:10: "), "{e}");
    }

    #[test]
    fn legacy_entries_are_read_into_model_config() {
        let r = registry(json!([{
            "model_name": "old", "backend": "huggingface_local", "huggingface_id": "x/y",
            "premade_chat_template": false, "eos_to_cull": "</s>", "model_config": {"eos_to_cull": "<eos>"}
        }]));
        let m = r.resolve(&name_query("old")).expect("old");
        assert_eq!(
            m.model_config().expect("model_config")["premade_chat_template"],
            json!(false)
        );
        // model_config's own value stays; the conflicting top-level one is kept as written.
        assert_eq!(
            m.model_config().expect("model_config")["eos_to_cull"],
            json!("<eos>")
        );
        assert_eq!(m.spec["eos_to_cull"], json!("</s>"));
    }

    #[test]
    fn shipped_registry_is_valid() {
        let r = Registry::from_json_text(SHIPPED_REGISTRY, "model_registry.json", "packaged")
            .expect("shipped registry parses");
        assert!(!r.entries().is_empty());
        let mut seen = BTreeSet::new();
        for e in r.entries() {
            assert!(
                !e.model_name().is_empty(),
                "entry at {} has a model_name",
                e.location()
            );
            assert!(
                !e.backend().is_empty(),
                "entry at {} has a backend",
                e.location()
            );
            assert!(
                seen.insert(e.model_name().to_string()),
                "{} appears once",
                e.model_name()
            );
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("gpt-5", "gpt-4o"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
