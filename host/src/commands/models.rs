//! `clemhost models`: list the registered models and resolve model arguments.
//!
//! `models list` shows every registry entry in lookup order with its
//! backend, whether that backend's plugin is installed and whether the key
//! it needs is present. `models show SPEC` resolves a `-m` argument exactly
//! as `clemhost run` does; with `--json` it prints the very object that goes
//! to the plugin and into `experiment.json`.

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::keys::{KeyNeed, KeyStore};
use crate::plugins::{self, probe::probe_manifests};
use crate::registry::{self, parse_model_arg, Registry, RegistryEntry, SHIPPED_SOURCE};
use clap::{Args, Subcommand};
use clemhost_plugin_sdk::Manifest;
use serde::Serialize;
use serde_json::{Map, Value};

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the registered models: name, backend, whether its plugin is
    /// installed and whether its key is present.
    List(ListArgs),
    /// Resolve a model argument (a name, or a JSON object in which ' may
    /// stand for ") and show the entry and where it came from.
    Show(ShowArgs),
}

/// Options of `models list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only models of this backend.
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `models show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The model argument, as for `clemhost run -m`: `gpt-4o`, or
    /// `{'model_name':'gpt-4o','model_config':{'extra_body':{'top_k':20}}}`.
    pub spec: String,
    /// Print only the resolved spec as JSON (what the plugin receives).
    #[arg(long)]
    pub json: bool,
}

/// Text a command prints on stdout, written in one go at the end, so that a
/// closed pipe (`clemhost models list | head`) ends the command quietly.
#[derive(Debug, Default)]
pub(crate) struct Page {
    text: String,
}

impl Page {
    /// Adds one line, its control characters escaped: registry and key
    /// files from others name the models and sections shown
    /// ([`crate::error::escape_for_terminal`]).
    pub(crate) fn line(&mut self, s: impl AsRef<str>) {
        self.text
            .push_str(&crate::error::escape_for_terminal(s.as_ref()));
        self.text.push('\n');
    }

    /// Writes the page to stdout.
    pub(crate) fn emit(self) -> Result<Exit> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        match out
            .write_all(self.text.as_bytes())
            .and_then(|()| out.flush())
        {
            Ok(()) => Ok(Exit::Success),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
            Err(e) => Err(Error::msg(format!("cannot write to stdout: {e}"))),
        }
    }
}

/// Runs the command.
pub fn run(global: &GlobalArgs, cmd: &ModelsCommand) -> Result<Exit> {
    match cmd {
        ModelsCommand::List(args) => list(global, args),
        ModelsCommand::Show(args) => show(global, args),
    }
}

/// What an entry needs from the key files: from its plugin's manifest when
/// the plugin is installed (and may be opened), otherwise only what the
/// entry says itself (its `"key_name"`); `Ok(None)` means nothing is known
/// to be needed.
fn key_need(manifest: Option<&Manifest>, spec: &Map<String, Value>) -> Result<Option<KeyNeed>> {
    Ok(match manifest {
        Some(m) => KeyNeed::of(&m.capabilities, spec)?,
        None => KeyNeed::from_entry_alone(spec)?,
    })
}

/// The key state of one entry, for the listing.
#[derive(Clone, Debug, Serialize)]
struct KeyState {
    /// The key.json section.
    name: String,
    /// Whether the section (or an environment variable) is there.
    present: bool,
    /// Whether it holds a non-blank `api_key`.
    api_key: bool,
    /// Whether the model cannot run without it.
    required: bool,
    /// Where it comes from (a file path or `$VAR`), never the secret.
    source: Option<String>,
}

fn key_state(need: Option<&KeyNeed>, keys: &KeyStore) -> Option<KeyState> {
    let need = need?;
    Some(KeyState {
        name: need.key_name.clone(),
        present: keys.has_key(need),
        api_key: keys.has_api_key(need),
        required: need.required,
        source: keys.source(need).map(|s| s.to_string()),
    })
}

fn key_column(state: Option<&KeyState>, row: &ListedModel) -> String {
    match state {
        // Without its manifest the host cannot say what the entry needs.
        None if !row.plugin_installed => "? (no plugin)".into(),
        None if !row.plugin_read => "? (plugin not opened)".into(),
        None => "-".into(),
        Some(k) if k.present && k.api_key => format!("yes ({})", k.name),
        Some(k) if k.present => format!("yes ({}, no api_key)", k.name),
        Some(k) if k.required => format!("MISSING ({})", k.name),
        Some(k) => format!("no ({}, optional)", k.name),
    }
}

fn source_label(source: &str) -> String {
    if source == SHIPPED_SOURCE {
        "builtin (shipped with clemhost)".into()
    } else if source == registry::PLAYER_SOURCE {
        "built-in player".into()
    } else {
        source.to_string()
    }
}

#[derive(Serialize)]
struct ListedModel {
    model_name: String,
    backend: String,
    plugin_installed: bool,
    plugin: Option<String>,
    /// The plugin's manifest was read, so `key` is what it declares.
    plugin_read: bool,
    /// The entry's own `"key_name"`, if it names one.
    key_name: Value,
    key: Option<KeyState>,
    source: String,
    lookup_source: Value,
}

fn list(global: &GlobalArgs, args: &ListArgs) -> Result<Exit> {
    let mut page = Page::default();
    let registry = Registry::load(global)?;
    let keys = KeyStore::load()?;
    let entries: Vec<&RegistryEntry> = registry
        .entries()
        .iter()
        .filter(|e| args.backend.as_deref().is_none_or(|b| e.backend() == b))
        .collect();
    let candidates = plugins::discover(global);
    let mut backends: Vec<&str> = entries.iter().map(|e| e.backend()).collect();
    backends.sort_unstable();
    backends.dedup();
    let probed = probe_manifests(&candidates, Some(&backends));
    let rows = entries
        .iter()
        .map(|e| {
            let plugin = candidates.iter().find(|c| c.backend == e.backend());
            let manifest = probed.get(e.backend());
            let need = key_need(manifest, &e.spec)?;
            Ok(ListedModel {
                model_name: e.model_name().to_string(),
                backend: e.backend().to_string(),
                plugin_installed: plugin.is_some(),
                plugin: plugin.map(|c| c.path.display().to_string()),
                plugin_read: manifest.is_some(),
                key_name: e.spec.get("key_name").cloned().unwrap_or(Value::Null),
                key: key_state(need.as_ref(), &keys),
                source: if e.source == SHIPPED_SOURCE {
                    e.source.clone()
                } else {
                    e.location()
                },
                lookup_source: e.spec.get("lookup_source").cloned().unwrap_or(Value::Null),
            })
        })
        .collect::<Result<Vec<ListedModel>>>()?;
    if args.json {
        let out = serde_json::json!({
            "registries": registry.files(),
            "key_file": keys.file().map(|p| p.display().to_string()),
            "models": rows,
        });
        page.line(serde_json::to_string_pretty(&out).expect("plain JSON values serialise"));
        return page.emit();
    }
    if rows.is_empty() {
        match &args.backend {
            Some(b) => page.line(format!("no registered model uses backend '{b}'")),
            None => page.line("no registered models"),
        }
    } else {
        let table: Vec<[String; 5]> = rows
            .iter()
            .map(|r| {
                [
                    r.model_name.clone(),
                    r.backend.clone(),
                    if r.plugin_installed {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    key_column(r.key.as_ref(), r),
                    source_label(&r.source),
                ]
            })
            .collect();
        print_table(
            &mut page,
            &["MODEL", "BACKEND", "PLUGIN", "KEY", "FROM"],
            &table,
        );
    }
    page.line("");
    page.line(format!(
        "registries: {}",
        if registry.files().is_empty() {
            "none".to_string()
        } else {
            registry
                .files()
                .iter()
                .map(|f| source_label(f))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    page.line(format!(
        "key file: {}",
        keys.file().map_or_else(
            || "none found (environment variables only)".to_string(),
            |p| p.display().to_string()
        )
    ));
    page.emit()
}

fn print_table<const N: usize>(page: &mut Page, header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        page.line(out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn show(global: &GlobalArgs, args: &ShowArgs) -> Result<Exit> {
    let mut page = Page::default();
    let registry = Registry::load(global)?;
    let query = parse_model_arg(&args.spec);
    let resolved = registry.resolve(&query)?;
    if args.json {
        page.line(
            serde_json::to_string_pretty(&Value::Object(resolved.spec.clone()))
                .expect("plain JSON values serialise"),
        );
        return page.emit();
    }
    page.line(format!("model_name: {}", resolved.model_name()));
    if resolved.is_builtin() {
        page.line(format!(
            "backend:    {} (built into clemhost, no plugin)",
            resolved.backend()
        ));
        page.line("from:       built-in player (no registry entry is read)");
    } else {
        let plugin = plugins::discover(global)
            .into_iter()
            .find(|c| c.backend == resolved.backend());
        match &plugin {
            Some(c) => page.line(format!("backend:    {} (plugin {})", resolved.backend(), c.path.display())),
            None => page.line(format!(
                "backend:    {} (no plugin installed; `clemhost plugins list` shows the search path)",
                resolved.backend()
            )),
        }
        let location = registry
            .first_unifying(&query)
            .map(|(e, _)| e.location())
            .unwrap_or_else(|| resolved.source.clone());
        page.line(format!(
            "from:       {}",
            source_label_with_location(&resolved.source, &location)
        ));
        let keys = KeyStore::load()?;
        let manifest = plugin.as_ref().and_then(|c| {
            probe_manifests(std::slice::from_ref(c), None).remove(resolved.backend())
        });
        let need = key_need(manifest.as_ref(), &resolved.spec)?;
        match key_state(need.as_ref(), &keys) {
            None if manifest.is_none() => page.line(
                "key:        unknown until the plugin can be read (it says which key section it needs)",
            ),
            None => page.line("key:        none needed"),
            Some(k) if k.present => page.line(format!(
                "key:        \"{}\" present ({})",
                k.name,
                k.source.as_deref().unwrap_or("?")
            )),
            Some(k) if k.required => {
                let hint = need
                    .as_ref()
                    .map(|n| keys.missing(resolved.backend(), n).to_string())
                    .unwrap_or_default();
                page.line(format!("key:        \"{}\" MISSING: {hint}", k.name));
            }
            Some(k) => page.line(format!("key:        \"{}\" not set (optional)", k.name)),
        }
    }
    page.line("spec (sent to the plugin and written to experiment.json):");
    page.line(
        serde_json::to_string_pretty(&Value::Object(resolved.spec))
            .expect("plain JSON values serialise"),
    );
    page.emit()
}

fn source_label_with_location(source: &str, location: &str) -> String {
    if source == SHIPPED_SOURCE {
        format!("{location}, the registry shipped with clemhost")
    } else {
        location.to_string()
    }
}
