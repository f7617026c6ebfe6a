//! `clemhost plugins list | new`, and the hidden `clemhost __probe`.

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::plugins::{self, probe};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Subcommands of `clemhost plugins`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the plugin files on the search path, with their status.
    List(ListArgs),
    /// Create a new plugin crate that builds lib<NAME>_api.so against the SDK.
    New(NewArgs),
}

/// Options of `plugins list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `plugins new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The backend name (lowercase letters, digits and `_`), e.g. `mybackend`.
    pub name: String,
    /// Where to create the crate folder `<NAME>_api` (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// The clemhost-plugin-sdk folder to depend on (default: the SDK of the
    /// checkout clemhost was built from).
    #[arg(long, value_name = "DIR")]
    pub sdk_path: Option<PathBuf>,
}

/// Runs `clemhost plugins ...`.
pub fn run(global: &GlobalArgs, cmd: &PluginsCommand) -> Result<Exit> {
    match cmd {
        PluginsCommand::List(a) => list(global, a),
        PluginsCommand::New(a) => new(a),
    }
}

/// One row of `plugins list`.
#[derive(Debug, Serialize)]
pub struct PluginRow {
    /// Backend name from the file name.
    pub name: String,
    /// The file.
    pub file: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// ABI version from the manifest.
    pub abi: Option<u32>,
    /// SDK version from the manifest.
    pub sdk: Option<String>,
    /// The plugin's own version.
    pub version: Option<String>,
    /// Backends it serves.
    pub backends: Vec<String>,
    /// Capabilities as the manifest states them.
    pub capabilities: Option<clemhost_plugin_sdk::Capabilities>,
    /// `ok`, or a one-line reason.
    pub status: String,
    /// The file of the same backend name found earlier on the search path,
    /// which wins over this one.
    pub shadowed_by: Option<String>,
}

fn list(global: &GlobalArgs, args: &ListArgs) -> Result<Exit> {
    let exe = std::env::current_exe().map_err(|e| {
        Error::msg(format!(
            "cannot find the clemhost executable to probe plugins: {e}"
        ))
    })?;
    let dirs = plugins::search_dirs(global);
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    let mut pending = Vec::new();
    {
        for c in plugins::scan_all(global) {
            let file = c.path.display().to_string();
            let shadowed_by = match first.get(&c.backend) {
                Some(f) => Some(f.clone()),
                None => {
                    first.insert(c.backend.clone(), file.clone());
                    None
                }
            };
            let sha256 = probe::sha256_file(&c.path).unwrap_or_else(|e| format!("unreadable: {e}"));
            let job = match plugins::check_trust(&c.path) {
                Err(reason) => Err(format!("refused: {reason}")),
                // Listing must not run code a cloned repository brought along.
                Ok(()) if !plugins::may_probe(&c) => Err(plugins::cwd_not_opened()),
                Ok(()) => probe::spawn_probe(&exe, &c.path)
                    .map_err(|e| format!("load error: cannot start the probe: {e}")),
            };
            pending.push((c, file, sha256, shadowed_by, job));
        }
    }
    let rows: Vec<PluginRow> = pending
        .into_iter()
        .map(|(c, file, sha256, shadowed_by, job)| {
            let outcome = match job {
                Ok(p) => p.finish(),
                Err(reason) => probe::ProbeOutcome {
                    manifest: None,
                    error: Some(reason),
                },
            };
            let m = outcome.manifest;
            PluginRow {
                name: c.backend,
                file,
                sha256,
                abi: m.as_ref().map(|m| m.abi_version),
                sdk: m.as_ref().map(|m| m.sdk_version.clone()),
                version: m.as_ref().map(|m| m.version.clone()),
                backends: m.as_ref().map(|m| m.backends.clone()).unwrap_or_default(),
                capabilities: m.as_ref().map(|m| m.capabilities.clone()),
                status: outcome.error.unwrap_or_else(|| "ok".to_string()),
                shadowed_by,
            }
        })
        .collect();
    if args.json {
        let out = serde_json::json!({
            "search_path": dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "plugins": rows,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("plain JSON values serialise")
        );
        return Ok(Exit::Success);
    }
    print_table(&dirs, &rows);
    Ok(Exit::Success)
}

fn print_table(dirs: &[PathBuf], rows: &[PluginRow]) {
    println!(
        "Search path: {}",
        if dirs.is_empty() {
            "(no existing directory)".to_string()
        } else {
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if rows.is_empty() {
        println!("No plugins found. Build them (cargo build --release) or pass --plugin-dir DIR.");
        return;
    }
    let header = [
        "NAME", "ABI", "SDK", "BACKENDS", "SHA-256", "STATUS", "FILE",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let status = match &r.shadowed_by {
                Some(f) if r.status == "ok" => format!("ok (shadowed by {f})"),
                _ => r.status.clone(),
            };
            [
                r.name.clone(),
                r.abi.map(|a| format!("v{a}")).unwrap_or_else(|| "-".into()),
                r.sdk.clone().unwrap_or_else(|| "-".into()),
                if r.backends.is_empty() {
                    "-".into()
                } else {
                    r.backends.join(",")
                },
                r.sha256.chars().take(12).collect(),
                status,
                r.file.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row.iter()).take(5) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: [&str; 7]| {
        let mut s = String::new();
        for (i, c) in row.iter().enumerate() {
            if i < 5 {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                s.push_str(c);
                s.push_str("  ");
            }
        }
        // File names in ./plugins are not the user's.
        println!("{}", crate::error::escape_for_terminal(s.trim_end()));
    };
    line(header);
    for row in &cells {
        line([
            &row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6],
        ]);
    }
}

/// `clemhost __probe FILE`: opens one plugin and prints the outcome as JSON.
pub fn probe(file: &Path) -> Result<Exit> {
    let outcome = probe::probe_here(file);
    println!(
        "{}",
        serde_json::to_string(&outcome).expect("plain JSON values serialise")
    );
    Ok(Exit::Success)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
}

fn default_sdk_path() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    p.join("Cargo.toml")
        .is_file()
        .then(|| p.canonicalize().unwrap_or(p))
}

fn new(args: &NewArgs) -> Result<Exit> {
    let name = args.name.strip_suffix("_api").unwrap_or(&args.name);
    if !valid_name(name) {
        return Err(Error::with_exit(
            Exit::Usage,
            format!(
                "'{}' is not a usable backend name: use lowercase letters, digits and '_', starting with a letter (e.g. mybackend)",
                args.name
            ),
        ));
    }
    let sdk = match &args.sdk_path {
        Some(p) => p.clone(),
        None => default_sdk_path().ok_or_else(|| {
            Error::msg(
                "cannot find the clemhost-plugin-sdk sources this clemhost was built from; pass --sdk-path DIR (the plugin-sdk folder of a clemhost checkout)",
            )
        })?,
    };
    if !sdk.join("Cargo.toml").is_file() {
        return Err(Error::msg(format!(
            "--sdk-path {}: no Cargo.toml there; point it at the plugin-sdk folder of a clemhost checkout",
            sdk.display()
        )));
    }
    let sdk = sdk.canonicalize().unwrap_or(sdk);
    let parent = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = parent.join(format!("{name}_api"));
    if dir.exists() {
        return Err(Error::msg(format!(
            "{} already exists; choose another name or --path, nothing was written",
            dir.display()
        )));
    }
    let files = crate::commands::plugin_template::files(name, &sdk);
    for (rel, contents) in &files {
        let p = dir.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::msg(format!("cannot create {}: {e}", d.display())))?;
        }
        std::fs::write(&p, contents)
            .map_err(|e| Error::msg(format!("cannot write {}: {e}", p.display())))?;
    }
    println!("Created {} (a plugin for backend '{name}').", dir.display());
    println!("Build it:   cd {} && cargo build --release", dir.display());
    println!("Install it: cp target/release/lib{name}_api.so <your clemhost folder>/plugins/");
    println!("Use it:     a registry entry with \"backend\": \"{name}\"; check with `clemhost plugins list`.");
    Ok(Exit::Success)
}
