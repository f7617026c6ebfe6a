//! Reading registry files: lookup order, JSON parsing with positions,
//! per-entry checks, pre-1.0 entries.

use super::legacy::move_legacy_settings;
use super::locate::{self, position_of, Position};
use super::{
    str_field, Registry, RegistryEntry, RegistryError, CWD_REGISTRY_FILE, PACKAGED_LOOKUP_SOURCE,
    SHIPPED_REGISTRY, SHIPPED_SOURCE,
};
use crate::cli::GlobalArgs;
use serde_json::Value;
use std::path::{Path, PathBuf};

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

/// Parses a registry text into entries. `label` names the file in errors,
/// `lookup_source` is added to entries without one, `source` is recorded.
fn parse_entries(
    text: &str,
    label: &str,
    lookup_source: &str,
    source: &str,
) -> Result<Vec<RegistryEntry>, RegistryError> {
    let text = locate::strip_bom(text);
    let value: Value = serde_json::from_str(text).map_err(|e| RegistryError::Syntax {
        path: label.to_string(),
        line: e.line(),
        column: e.column(),
        message: without_position(&e),
    })?;
    let (items, positions): (Vec<Value>, Vec<Option<Position>>) = match value {
        Value::Array(items) => {
            let mut starts = locate::top_level_positions(text).into_iter();
            let positions = (0..items.len()).map(|_| starts.next()).collect();
            (items, positions)
        }
        Value::Object(_) => {
            let start = text.len() - text.trim_start().len();
            (vec![value], vec![Some(position_of(text, start))])
        }
        other => {
            return Err(RegistryError::NotEntries {
                path: label.to_string(),
                found: clemhost_pyfacts::json::kind_of(&other),
            })
        }
    };
    locate::warn_duplicate_keys(label, text);
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
                found: clemhost_pyfacts::json::kind_of(&item),
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
        for (field, fix) in [
            (
                "backend",
                "the name of the backend plugin, e.g. \"backend\": \"openai\"",
            ),
            (
                "model_name",
                "the name you select the model by, e.g. \"model_name\": \"gpt-4o\"",
            ),
        ] {
            match spec.get(field) {
                None | Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(RegistryError::FieldNotString {
                        location: located(position),
                        index,
                        field,
                        found: clemhost_pyfacts::json::kind_of(other),
                        fix,
                    })
                }
            }
        }
        match spec.get("model_config") {
            None | Some(Value::Object(_)) => {}
            Some(other) => {
                return Err(RegistryError::ModelConfigNotObject {
                    location: located(position),
                    index,
                    found: clemhost_pyfacts::json::kind_of(other),
                })
            }
        }
        if let Some(Value::String(name)) = spec.get("model_name") {
            if crate::runner::setup::BUILTIN_PLAYERS.contains(&name.as_str()) {
                return Err(RegistryError::ReservedName {
                    location: located(position),
                    index,
                    name: name.clone(),
                });
            }
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
