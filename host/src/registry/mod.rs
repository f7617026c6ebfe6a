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

pub mod locate;
pub mod pyjson;
pub mod unify;

use crate::cli::GlobalArgs;
use crate::error::Error;
use locate::{position_of, Position};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

/// Settings that clembench before clemcore 1.0 wrote at the top level of an
/// entry and that now live in `model_config`.
pub const LEGACY_MODEL_CONFIG_KEYS: &[&str] = &[
    "premade_chat_template",
    "custom_chat_template",
    "eos_to_cull",
    "output_split_prefix",
    "padding_side",
    "requires_api_key",
    "slow_tokenizer",
    "multimodal",
    "multimodality",
    "thinking_mode",
    "reasoning_model",
    "extra_body",
    "trust_remote_code",
    "do_sample",
    "load_in_8bit",
    "load_in_4bit",
    "attn_implementation",
    "peft_model",
    "chat_template_kwargs",
    "chat_template_language",
    "cot_output",
    "cot_start_tag",
    "cot_end_tag",
    "cot_bypass",
    "cot_effort",
    "filename",
    "additional_files",
    "bos_string",
    "eos_string",
    "execute_on",
    "gpu_layers_offloaded",
    "model_class",
    "processor_class",
    "processor_config",
    "mm_model_config",
    "number_gpus",
    "automodel_type",
    "use_bf16",
    "low_cpu_mem_usage",
];

/// What can go wrong reading a registry or resolving a model.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A registry file could not be read.
    #[error("{path}: cannot read the model registry: {source}; check the path (or leave the --registry option out)")]
    Read {
        /// The file as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A registry file is not valid JSON.
    #[error("{path}:{line}:{column}: the model registry is not valid JSON: {message}; fix the file and run again")]
    Syntax {
        /// The file as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The top level is neither an array nor an object.
    #[error("{path}: a model registry is a JSON array of entries (or one entry object), but this file holds {found}; wrap the entries in [ ... ]")]
    NotEntries {
        /// The file as given.
        path: String,
        /// What it holds instead.
        found: &'static str,
    },
    /// An array element is not an object.
    #[error("{location}: entry {index} of the model registry is {found}, not an object; every entry looks like {{\"model_name\": \"...\", \"backend\": \"...\"}}")]
    EntryNotObject {
        /// `path:line:column` of the element.
        location: String,
        /// 0-based index of the entry.
        index: usize,
        /// What it is instead.
        found: &'static str,
    },
    /// An entry has no `backend`.
    #[error("{location}: entry {index} ({name}) has no \"backend\"; add \"backend\": \"<plugin name>\" (e.g. \"openai\"), as every entry needs one")]
    MissingBackend {
        /// `path:line:column` of the entry.
        location: String,
        /// 0-based index of the entry.
        index: usize,
        /// Its `model_name`, or a placeholder.
        name: String,
    },
    /// No entry at all to resolve against.
    #[error("Model registry is empty. Load a model registry and try again. ({read})")]
    Empty {
        /// Which files were read.
        read: String,
    },
    /// No entry unifies with the query.
    #[error("No model spec unifies with model selector={selector}{hint}")]
    NoMatch {
        /// The query as compact JSON (as clemcore prints it).
        selector: String,
        /// Closest names, conflicting fields, files read (starts with a newline).
        hint: String,
    },
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::msg(e.to_string())
    }
}

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
    /// Reads the registries in lookup order: every `--registry FILE`, then
    /// `./model_registry.json` if it exists, then the registry shipped with
    /// clemhost unless `--no-default-registry`.
    ///
    /// A file that cannot be read or parsed is an error naming the file, the
    /// line and the column. One exception, for clemcore compatibility: when
    /// an entry of `./model_registry.json` has no `backend`, that whole file
    /// is left out with a warning (clemcore drops it silently).
    pub fn load(global: &GlobalArgs) -> crate::Result<Registry> {
        let mut registry = Registry::default();
        for path in &global.registries {
            let text = read_file(path)?;
            let lookup = absolute_string(path);
            let entries = parse_entries(&text, &path.display().to_string(), &lookup, &lookup)?;
            registry.push_file(lookup, entries);
        }
        let cwd_file = Path::new(CWD_REGISTRY_FILE);
        if cwd_file.is_file() {
            let text = read_file(cwd_file)?;
            let lookup = absolute_string(cwd_file);
            match parse_entries(&text, &lookup, &lookup, &lookup) {
                Ok(entries) => registry.push_file(lookup, entries),
                Err(e @ RegistryError::MissingBackend { .. }) => {
                    tracing::warn!("{e}. The whole file {lookup} is ignored until then, as clemcore does; its models are not available");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !global.no_default_registry {
            let entries = parse_entries(
                SHIPPED_REGISTRY,
                "the registry shipped with clemhost",
                PACKAGED_LOOKUP_SOURCE,
                SHIPPED_SOURCE,
            )?;
            registry.push_file(SHIPPED_SOURCE.to_string(), entries);
        }
        tracing::debug!(
            "model registries read: {} ({} entries)",
            registry.files.join(", "),
            registry.entries.len()
        );
        Ok(registry)
    }

    /// A registry from one JSON text (an array of entries or one entry).
    /// `label` names the text in errors; entries without `lookup_source` get
    /// `lookup_source`, and `source` is what [`RegistryEntry::source`] says.
    pub fn from_json_text(
        text: &str,
        label: &str,
        lookup_source: &str,
    ) -> Result<Registry, RegistryError> {
        let entries = parse_entries(text, label, lookup_source, label)?;
        let mut registry = Registry::default();
        registry.push_file(label.to_string(), entries);
        Ok(registry)
    }

    /// A registry from entries already in memory (no `lookup_source` added).
    pub fn from_entries(entries: Vec<RegistryEntry>) -> Registry {
        let mut files: Vec<String> = Vec::new();
        for e in &entries {
            if !files.contains(&e.source) {
                files.push(e.source.clone());
            }
        }
        Registry { entries, files }
    }

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
            selector: pyjson::compact(&Value::Object(query.clone())),
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

    /// Up to `max` registered names closest to `name` (closest first).
    pub fn closest_names(&self, name: &str, max: usize) -> Vec<&str> {
        let wanted = name.to_lowercase();
        let mut scored: Vec<(usize, usize, usize, &str)> = self
            .model_names()
            .into_iter()
            .enumerate()
            .filter_map(|(order, candidate)| {
                let c = candidate.to_lowercase();
                // A name is also close when its start is (gpt-5 ~ gpt-4o-mini).
                let start: String = c.chars().take(wanted.chars().count()).collect();
                let distance = edit_distance(&wanted, &c).min(edit_distance(&wanted, &start) + 1);
                let near = distance <= (wanted.chars().count() / 3).max(2);
                let contains =
                    !wanted.trim().is_empty() && (c.contains(wanted.trim()) || wanted.contains(&c));
                let whole = edit_distance(&wanted, &c);
                (near || contains).then_some((distance, whole, order, candidate))
            })
            .collect();
        scored.sort();
        scored.into_iter().take(max).map(|(_, _, _, n)| n).collect()
    }

    fn no_match_hint(&self, query: &Map<String, Value>) -> String {
        let mut hint = String::new();
        let name = query.get("model_name").and_then(Value::as_str);
        if let Some(name) = name {
            let same_name: Vec<&RegistryEntry> = self
                .entries
                .iter()
                .filter(|e| e.model_name() == name)
                .collect();
            if same_name.is_empty() {
                let close = self.closest_names(name, 5);
                if close.is_empty() {
                    hint.push_str(&format!(
                        "\n  no registered model is named '{name}' or anything close; `clemhost models list` shows them all"
                    ));
                } else {
                    hint.push_str(&format!(
                        "\n  no registered model is named '{name}'; closest registered names: {}",
                        close.join(", ")
                    ));
                }
            } else {
                for entry in same_name.iter().take(3) {
                    let fields = conflicting_fields(query, &entry.spec);
                    hint.push_str(&format!(
                        "\n  '{name}' at {} (backend {}) differs in: {}",
                        entry.location(),
                        entry.backend(),
                        fields.join(", ")
                    ));
                }
            }
        }
        hint.push_str(&format!("\n  {}", self.files_read()));
        hint
    }
}

/// The top-level fields where `query` and `entry` disagree.
fn conflicting_fields(query: &Map<String, Value>, entry: &Map<String, Value>) -> Vec<String> {
    query
        .iter()
        .filter(|(k, v)| entry.get(*k).is_some_and(|e| unify::unify(v, e).is_none()))
        .map(|(k, v)| {
            let theirs = entry.get(k).map(pyjson::compact).unwrap_or_default();
            format!("{k} (asked {}, registered {theirs})", pyjson::compact(v))
        })
        .collect()
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

fn read_file(path: &Path) -> Result<String, RegistryError> {
    std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The absolute form of `path` (relative to the working directory, symlinks
/// not resolved), as clemcore writes `lookup_source`.
fn absolute_string(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| PathBuf::from(path))
        .display()
        .to_string()
}

/// A JSON value's kind in words (`a string`, `an array`, ...), for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a registry text into entries. `label` names the file in errors,
/// `lookup_source` is added to entries without one, `source` is recorded.
fn parse_entries(
    text: &str,
    label: &str,
    lookup_source: &str,
    source: &str,
) -> Result<Vec<RegistryEntry>, RegistryError> {
    let value: Value = serde_json::from_str(text).map_err(|e| RegistryError::Syntax {
        path: label.to_string(),
        line: e.line(),
        column: e.column(),
        message: without_position(&e),
    })?;
    let (items, positions): (Vec<Value>, Vec<Option<Position>>) = match value {
        Value::Array(items) => {
            let starts = locate::top_level_starts(text);
            let positions = (0..items.len())
                .map(|i| starts.get(i).map(|&at| position_of(text, at)))
                .collect();
            (items, positions)
        }
        Value::Object(_) => {
            let start = text.len() - text.trim_start().len();
            (vec![value], vec![Some(position_of(text, start))])
        }
        other => {
            return Err(RegistryError::NotEntries {
                path: label.to_string(),
                found: json_kind(&other),
            })
        }
    };
    let located = |position: Option<Position>| match position {
        Some(p) => format!("{label}:{p}"),
        None => label.to_string(),
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut legacy = Vec::new();
    for (index, (item, position)) in items.into_iter().zip(positions).enumerate() {
        let Value::Object(mut spec) = item else {
            return Err(RegistryError::EntryNotObject {
                location: located(position),
                index,
                found: json_kind(&item),
            });
        };
        if !spec.contains_key("backend") {
            let name = spec
                .get("model_name")
                .map(|n| match n {
                    Value::String(s) => format!("model_name \"{s}\""),
                    other => format!("model_name {other}"),
                })
                .unwrap_or_else(|| "no model_name either".into());
            return Err(RegistryError::MissingBackend {
                location: located(position),
                index,
                name,
            });
        }
        if !spec.contains_key("lookup_source") {
            spec.insert(
                "lookup_source".into(),
                Value::String(lookup_source.to_string()),
            );
        }
        let moved = move_legacy_settings(&mut spec);
        if !moved.is_empty() {
            let name = str_field(&spec, "model_name").to_string();
            legacy.push(format!("{name} ({})", moved.join(", ")));
        }
        entries.push(RegistryEntry {
            spec,
            source: source.to_string(),
            position,
        });
    }
    if !legacy.is_empty() {
        tracing::warn!(
                "{label}: {} entr{} in the old clembench format (backend settings at the top level): {}. They are read as if they were inside \"model_config\"; move them there, e.g. {{\"model_name\": ..., \"backend\": ..., \"model_config\": {{\"premade_chat_template\": true}}}}",
                legacy.len(),
                if legacy.len() == 1 { "y is" } else { "ies are" },
                legacy.join("; ")
        );
    }
    Ok(entries)
}

/// serde_json's message without its trailing "at line L column C" (the
/// position is already in front of the message).
fn without_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(cut) => full[..cut].to_string(),
        None => full,
    }
}

/// Moves pre-1.0 top-level settings into `model_config` (a setting that
/// `model_config` already has stays where it is). Returns the moved keys.
fn move_legacy_settings(spec: &mut Map<String, Value>) -> Vec<String> {
    let legacy: Vec<String> = spec
        .keys()
        .filter(|k| LEGACY_MODEL_CONFIG_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if legacy.is_empty() {
        return legacy;
    }
    if !matches!(spec.get("model_config"), None | Some(Value::Object(_))) {
        return Vec::new();
    }
    let mut config = match spec.remove("model_config") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut moved = Vec::new();
    for key in legacy {
        if config.contains_key(&key) {
            continue;
        }
        if let Some(v) = spec.remove(&key) {
            config.insert(key.clone(), v);
            moved.push(key);
        }
    }
    spec.insert("model_config".into(), Value::Object(config));
    moved
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
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
