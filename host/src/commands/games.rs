//! `clemhost games list`: every game `run -g` can play, native and clembench.

use crate::clembench::discover;
use crate::cli::GlobalArgs;
use crate::error::{Exit, Result};
use crate::games::{self, instances};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Subcommands of `clemhost games`.
#[derive(Debug, Subcommand)]
pub enum GamesCommand {
    /// List the native games and the clembench games found (as `run -g` finds them).
    List(ListArgs),
}

/// Options of `games list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Machine-readable output: one JSON array.
    #[arg(long)]
    pub json: bool,
    /// Look for clembench games in DIR first (repeatable), as `run --games-dir`.
    #[arg(long = "games-dir", value_name = "DIR")]
    pub games_dirs: Vec<PathBuf>,
}

/// Runs the command.
pub fn run(_global: &GlobalArgs, cmd: &GamesCommand) -> Result<Exit> {
    let GamesCommand::List(args) = cmd;
    let mut rows: Vec<Value> = Vec::new();
    for g in games::all_games() {
        let file = instances::load(g, None).ok();
        let count = file.as_ref().map(|f| {
            f.experiments
                .iter()
                .map(|e| e.instances.len())
                .sum::<usize>()
        });
        let place = file.and_then(|f| f.path).map_or_else(
            || "shipped with clemhost".to_string(),
            |p| p.display().to_string(),
        );
        rows.push(json!({
            "name": g.name(), "players": g.model_players(), "kind": "native",
            "path": place, "instances": count,
        }));
    }
    let found = discover::discover(&discover::SearchPaths::from_env(&args.games_dirs))?;
    for s in &found {
        let shadowed = games::find_game(s.name()).is_some();
        rows.push(json!({
            "name": s.name(), "players": s.players(), "kind": "clembench",
            "path": s.game_path().display().to_string(), "instances": s.instance_count(),
            "playable": s.has_master() && !shadowed,
            "note": if shadowed { "the native game of this name is played for -g NAME" }
                    else if !s.has_master() { "no master.py" } else { "" },
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON values serialise")
        );
        return Ok(Exit::Success);
    }
    println!(
        "{:<32} {:>7} {:<10} {:>9}  where",
        "game", "players", "kind", "instances"
    );
    for r in &rows {
        let count = r["instances"]
            .as_u64()
            .map_or_else(|| "?".to_string(), |n| n.to_string());
        let note = r
            .get("note")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        // Game names come from clemgame.json files of others.
        let line = format!(
            "{:<32} {:>7} {:<10} {:>9}  {}{note}",
            r["name"].as_str().unwrap_or_default(),
            r["players"],
            r["kind"].as_str().unwrap_or_default(),
            count,
            r["path"].as_str().unwrap_or_default(),
        );
        println!("{}", crate::error::escape_for_terminal(&line));
    }
    Ok(Exit::Success)
}
