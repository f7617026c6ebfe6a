//! `clemhost score`: writes `scores.json` next to every episode's
//! `interactions.json`, in clemcore's GameScorer format. Native games are
//! scored by clemhost's own scorer; clembench games by the game's own
//! Python scorer, through clemcore, as `clem score` does
//! (docs/clembench-games.md).

use crate::clembench::{self, discover, python};
use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::games;
use crate::results::schema::ScoresRecord;
use crate::results::{self, files};
use crate::runner::StopToken;
use clap::Args;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of this command.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Score only these games: a name, `all`, or clemcore's JSON selector
    /// (`'{"benchmark": ["2.0"]}'`), as for `run`. Repeatable.
    #[arg(short = 'g', long = "game", value_name = "GAME")]
    pub games: Vec<String>,
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
    /// Look for clembench games (folders with clemgame.json) in DIR first
    /// (repeatable), as for `run`.
    #[arg(long = "games-dir", value_name = "DIR")]
    pub games_dirs: Vec<PathBuf>,
    /// The Python interpreter with clemcore for clembench games (default
    /// $CLEMHOST_PYTHON, else python3 on PATH).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Python workers at once for clembench games (each scores a
    /// contiguous share of a game's episodes).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,
}

/// The games `-g` asks for: `None` is every game. Native names are taken
/// as they are; other selectors are matched against the clembench games
/// found (`found` is filled on first need). A selector that picks nothing
/// is an error naming the games known.
pub(crate) fn selected_games(
    selectors: &[String],
    games_dirs: &[PathBuf],
    found: &mut Option<Vec<discover::GameSpec>>,
) -> Result<Option<BTreeMap<String, Option<discover::GameSpec>>>> {
    if selectors.is_empty() || selectors.iter().any(|s| s == "all") {
        return Ok(None);
    }
    let mut picked = BTreeMap::new();
    for g in selectors {
        if games::find_game(g).is_some() {
            picked.insert(g.clone(), None);
            continue;
        }
        let specs = discovered(games_dirs, found)?;
        let chosen = discover::select(specs, &discover::Selector::parse(g));
        if chosen.is_empty() {
            let mut known: Vec<&str> = games::all_games().iter().map(|g| g.name()).collect();
            known.extend(specs.iter().map(|s| s.name()));
            return Err(Error::msg(format!(
                "unknown game '{g}'; known games: {} (clembench games are searched as clemcore does, plus --games-dir DIR: see docs/clembench-games.md)",
                known.join(", ")
            )));
        }
        for s in chosen {
            picked.entry(s.name().to_string()).or_insert(Some(s));
        }
    }
    Ok(Some(picked))
}

/// The clembench games found, searched once.
pub(crate) fn discovered<'a>(
    games_dirs: &[PathBuf],
    found: &'a mut Option<Vec<discover::GameSpec>>,
) -> Result<&'a Vec<discover::GameSpec>> {
    if found.is_none() {
        *found = Some(discover::discover(&discover::SearchPaths::from_env(
            games_dirs,
        ))?);
    }
    Ok(found.as_ref().expect("just filled"))
}

/// The game an episode folder belongs to: the folder above its
/// experiment's (`<run>/<game>/<experiment>/<episode>`), as clemcore finds
/// it; `None` when the episode is not that deep under the results folder.
pub(crate) fn game_of(root: &Path, episode: &Path) -> Option<String> {
    let rel = episode.strip_prefix(root).ok()?;
    let parts: Vec<_> = rel.components().collect();
    if parts.len() < 4 {
        return None;
    }
    Some(
        parts[parts.len() - 3]
            .as_os_str()
            .to_string_lossy()
            .into_owned(),
    )
}

/// Whether the episode's run folder (the first folder under the results
/// folder) has `text` in its name.
fn in_run_named(root: &Path, episode: &Path, text: &str) -> bool {
    let rel = episode.strip_prefix(root).unwrap_or(episode);
    rel.components()
        .next()
        .is_some_and(|c| c.as_os_str().to_string_lossy().contains(text))
}

/// The absolute results directory of `score`/`transcribe`, once `-r` and
/// `--parallel` are checked.
pub(crate) fn results_root(dir: &Path, parallel: usize) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(Error::msg(format!(
            "no results directory {}; play a game first (clemhost run) or pass -r DIR",
            dir.display()
        )));
    }
    if parallel == 0 {
        return Err(Error::with_exit(
            Exit::Usage,
            "--parallel must be at least 1",
        ));
    }
    std::path::absolute(dir)
        .map_err(|e| Error::msg(format!("-r {}: cannot resolve: {e}", dir.display())))
}

/// Runs the command.
pub fn run(_global: &GlobalArgs, args: &ScoreArgs) -> Result<Exit> {
    let root = results_root(&args.results_dir, args.parallel)?;
    let mut found = None;
    let wanted = selected_games(&args.games, &args.games_dirs, &mut found)?;
    let mut native: Vec<PathBuf> = Vec::new();
    let mut by_game: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut failed = 0usize;
    for dir in results::find_episodes(&root) {
        if let Some(m) = &args.model {
            if !in_run_named(&root, &dir, m) {
                continue;
            }
        }
        let Some(game) = game_of(&root, &dir) else {
            crate::say!(
                "skipped {}: not an episode folder <model>/<game>/<experiment>/<episode> under {}",
                dir.display(),
                root.display()
            );
            failed += 1;
            continue;
        };
        if wanted.as_ref().is_some_and(|w| !w.contains_key(&game)) {
            continue;
        }
        if games::find_game(&game).is_some() {
            native.push(dir);
        } else {
            by_game.entry(game).or_default().push(dir);
        }
    }

    // Everything that can stop the command is checked before anything is written.
    let mut work = Vec::new();
    if !by_game.is_empty() {
        for (game, episodes) in by_game {
            let spec = match wanted
                .as_ref()
                .and_then(|w| w.get(&game).cloned().flatten())
            {
                Some(s) => Some(s),
                None => {
                    let specs = discovered(&args.games_dirs, &mut found)?;
                    discover::select(specs, &discover::Selector::Name(game.clone()))
                        .into_iter()
                        .next()
                }
            };
            match spec {
                Some(s) if s.has_master() => work.push((s, episodes)),
                Some(s) => {
                    crate::say!(
                        "skipped {} episode(s) of {game}: {} has no master.py, so no scorer",
                        episodes.len(),
                        s.source.display()
                    );
                    failed += episodes.len();
                }
                None => {
                    crate::say!(
                        "skipped {} episode(s) of {game}: no game '{game}' found to score them with (clembench games are searched as clemcore does, plus --games-dir DIR: see docs/clembench-games.md)",
                        episodes.len()
                    );
                    failed += episodes.len();
                }
            }
        }
    }
    let python = if work.is_empty() {
        None
    } else {
        Some(python::check(&python::choose(args.python.as_deref()))?)
    };

    let mut scored = 0usize;
    for dir in &native {
        match score_native(dir) {
            Ok(()) => scored += 1,
            Err(e) => {
                crate::say!("skipped {}: {e}", dir.display());
                failed += 1;
            }
        }
    }
    let mut interrupted = 0usize;
    if let Some(python) = &python {
        let stop = StopToken::ctrl_c();
        let s = clembench::records::score(python, &root, &work, args.parallel, &stop)
            .map_err(Error::msg)?;
        scored += s.written;
        for (dir, why) in &s.failed {
            crate::say!("skipped {}: {why}", dir.display());
        }
        for p in &s.problems {
            crate::say!("error: {p}");
        }
        failed += s.failed.len() + s.unreached;
        interrupted = s.interrupted;
    }
    println!(
        "scored {scored} episode(s) under {}",
        args.results_dir.display()
    );
    if interrupted > 0 {
        return Err(Error::msg(format!(
            "interrupted: {interrupted} episode(s) not scored; run clemhost score again"
        )));
    }
    if failed > 0 {
        crate::say!("{failed} episode(s) could not be scored");
        return Ok(Exit::EpisodesFailed);
    }
    Ok(Exit::Success)
}

/// Scores one episode of a native game with clemhost's own scorer.
fn score_native(dir: &Path) -> std::result::Result<(), String> {
    let path = dir.join(files::INTERACTIONS);
    let interactions = results::read_json(&path).map_err(|e| e.to_string())?;
    let game_name = interactions
        .pointer("/meta/game_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(game) = games::find_game(game_name) else {
        return Err(format!("no scorer for game '{game_name}'"));
    };
    let s = game.score(&interactions)?;
    let part = |k: &str| interactions.get(k).cloned().unwrap_or(json!({}));
    let scores = ScoresRecord {
        meta: part("meta"),
        player_models: part("player_models"),
        players: part("players"),
        round_scores: s.round_scores,
        episode_scores: s.episode_scores,
    };
    results::write_record(&dir.join(files::SCORES), &scores).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_game_is_the_folder_above_the_experiment() {
        let root = Path::new("/r");
        assert_eq!(
            game_of(root, Path::new("/r/mock/taboo/high_en/instance_00000")).as_deref(),
            Some("taboo")
        );
        assert_eq!(
            game_of(root, Path::new("/r/x/mock/wordle/e/instance_00001")).as_deref(),
            Some("wordle")
        );
        assert_eq!(game_of(root, Path::new("/r/taboo/e/instance_00000")), None);
    }

    #[test]
    fn native_names_and_all_need_no_search() {
        let mut found = None;
        assert_eq!(selected_games(&[], &[], &mut found).unwrap(), None);
        assert_eq!(
            selected_games(&["all".into()], &[], &mut found).unwrap(),
            None
        );
        let picked = selected_games(&["hellogame".into()], &[], &mut found)
            .unwrap()
            .unwrap();
        assert_eq!(picked.keys().collect::<Vec<_>>(), ["hellogame"]);
        assert!(found.is_none(), "no search for a native name");
    }
}
