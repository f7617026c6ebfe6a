//! `clemhost keys`: which key sections are available, secrets masked.

use crate::cli::GlobalArgs;
use crate::commands::models::Page;
use crate::error::{Exit, Result};
use crate::keys::{KeyStore, MaskedSection};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

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
pub fn run(_global: &GlobalArgs, cmd: &KeysCommand) -> Result<Exit> {
    match cmd {
        KeysCommand::List(args) => list(args),
    }
}

fn section_json(s: &MaskedSection) -> Value {
    json!({
        "name": s.name,
        "active": s.active,
        "fields": s.fields,
        "source": s.source.to_string(),
    })
}

fn list(args: &ListArgs) -> Result<Exit> {
    let mut page = Page::default();
    let keys = KeyStore::load()?;
    let sections = keys.masked();
    if args.json {
        let out = json!({
            "key_file": keys.file().map(|p| p.display().to_string()),
            "searched": keys.searched().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "keys": sections.iter().map(section_json).collect::<Vec<_>>(),
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
        page.line(format!(
            "{:<name_w$}  {status}  {}  (from {})",
            s.name,
            fields.join(" "),
            s.source
        ));
    }
    page.emit()
}
