//! `clemhost keys`: which key sections are available, secrets masked.

use crate::cli::GlobalArgs;
use crate::commands::models::Page;
use crate::error::{Exit, Result};
use crate::keys::{KeyNeed, KeyStore, MaskedSection};
use crate::plugins::{self, probe::probe_manifests};
use crate::registry::Registry;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the key sections of the key file in use and the environment
    /// variables that stand in for missing ones (secrets masked as clemcore
    /// masks them).
    List(ListArgs),
}

/// Options of `keys list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(global: &GlobalArgs, cmd: &KeysCommand) -> Result<Exit> {
    match cmd {
        KeysCommand::List(args) => list(global, args),
    }
}

fn section_json(s: &MaskedSection, named_by: &[String]) -> Value {
    json!({
        "name": s.name,
        "active": s.active,
        "fields": s.fields,
        "source": s.source.to_string(),
        "named_by": named_by,
    })
}

/// The registry entries that name each section with `"key_name"`. A
/// registry that cannot be read names none (`models list` reports why).
fn named_by(global: &GlobalArgs) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(registry) = Registry::load(global) {
        for e in registry.entries() {
            if let Some(k) = e.spec.get("key_name").and_then(Value::as_str) {
                out.entry(k.to_string())
                    .or_default()
                    .push(e.model_name().to_string());
            }
        }
    }
    out
}

fn list(global: &GlobalArgs, args: &ListArgs) -> Result<Exit> {
    let mut page = Page::default();
    let keys = KeyStore::load()?;
    // Which variables stand in for which section is the plugins' to say.
    let fallbacks: Vec<KeyNeed> = probe_manifests(&plugins::discover(global), None)
        .values()
        .filter_map(|m| KeyNeed::env_fallback(&m.capabilities))
        .collect();
    let sections = keys.masked(&fallbacks);
    let named = named_by(global);
    let none = Vec::new();
    let named_for = |name: &str| named.get(name).unwrap_or(&none);
    if args.json {
        let out = json!({
            "key_file": keys.file().map(|p| p.display().to_string()),
            "searched": keys.searched().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "keys": sections.iter().map(|s| section_json(s, named_for(&s.name))).collect::<Vec<_>>(),
        });
        page.line(serde_json::to_string_pretty(&out).expect("plain JSON values serialise"));
        return page.emit();
    }
    match keys.file() {
        Some(f) => page.line(format!("key file: {}", f.display())),
        None => {
            let searched: Vec<String> = keys
                .searched()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            page.line(format!(
                "key file: none found (searched {})",
                searched.join(", ")
            ));
        }
    }
    if sections.is_empty() {
        page.line(
            "no keys: add sections to a key file (see key.json.example) or set e.g. OPENAI_API_KEY",
        );
        return page.emit();
    }
    let name_w = sections
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    for s in &sections {
        let status = if s.active { "[ active ]" } else { "[MISSING] " };
        let fields: Vec<String> = s
            .fields
            .iter()
            .map(|(k, v)| match v {
                Value::String(text) => format!("{k}={text}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let users = match named_for(&s.name).as_slice() {
            [] => String::new(),
            models => format!("  (key_name of {})", models.join(", ")),
        };
        page.line(format!(
            "{:<name_w$}  {status}  {}  (from {}){users}",
            s.name,
            fields.join(" "),
            s.source
        ));
    }
    page.emit()
}
