//! `clemhost score`: writes `scores.json` next to every episode's
//! `interactions.json`, in clemcore's GameScorer format.

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::games;
use crate::results::schema::ScoresRecord;
use crate::results::{self, files};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Options of this command.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Score only this game.
    #[arg(short = 'g', long = "game", value_name = "GAME")]
    pub game: Option<String>,
    /// Score only run directories whose name contains this text.
    #[arg(short = 'm', long = "model", value_name = "TEXT")]
    pub model: Option<String>,
    /// The results directory.
    #[arg(
        short = 'r',
        long = "results-dir",
        value_name = "DIR",
        default_value = "results"
    )]
    pub results_dir: PathBuf,
}

/// Runs the command.
pub fn run(_global: &GlobalArgs, args: &ScoreArgs) -> Result<Exit> {
    if !args.results_dir.is_dir() {
        return Err(Error::msg(format!(
            "no results directory {}; play a game first (clemhost run) or pass -r DIR",
            args.results_dir.display()
        )));
    }
    if let Some(g) = &args.game {
        if games::find_game(g).is_none() {
            return Err(Error::msg(format!("unknown game '{g}'")));
        }
    }
    let (mut scored, mut failed) = (0usize, 0usize);
    for dir in results::find_episodes(&args.results_dir) {
        if let Some(m) = &args.model {
            let rel = dir.strip_prefix(&args.results_dir).unwrap_or(&dir);
            let run_dir = rel.components().next();
            if !run_dir.is_some_and(|c| c.as_os_str().to_string_lossy().contains(m.as_str())) {
                continue;
            }
        }
        let path = dir.join(files::INTERACTIONS);
        let interactions = match results::read_json(&path) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("skipped: {e}");
                failed += 1;
                continue;
            }
        };
        let game_name = interactions
            .pointer("/meta/game_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if args.game.as_deref().is_some_and(|g| g != game_name) {
            continue;
        }
        let Some(game) = games::find_game(game_name) else {
            eprintln!(
                "skipped {}: no scorer for game '{game_name}'",
                path.display()
            );
            failed += 1;
            continue;
        };
        match game.score(&interactions) {
            Ok(s) => {
                let part = |k: &str| interactions.get(k).cloned().unwrap_or(json!({}));
                let scores = ScoresRecord {
                    meta: part("meta"),
                    player_models: part("player_models"),
                    players: part("players"),
                    round_scores: s.round_scores,
                    episode_scores: s.episode_scores,
                };
                results::write_record(&dir.join(files::SCORES), &scores).map_err(Error::wrap)?;
                scored += 1;
            }
            Err(e) => {
                eprintln!("skipped {}: {e}", path.display());
                failed += 1;
            }
        }
    }
    println!(
        "scored {scored} episode(s) under {}",
        args.results_dir.display()
    );
    if failed > 0 {
        eprintln!("{failed} episode(s) could not be scored");
        return Ok(Exit::EpisodesFailed);
    }
    Ok(Exit::Success)
}
