//! `clemhost transcribe`: a readable transcript for every episode. Episodes
//! of clembench games get clemcore's own `transcript.html` and
//! `transcript.tex` (its transcript builder, run in a Python worker, so
//! they are the files `clem transcribe` writes); native games get
//! clemhost's `transcript.html`.

use crate::clembench::{self, python};
use crate::cli::GlobalArgs;
use crate::commands::score::{game_of, selected_games};
use crate::error::{Error, Exit, Result};
use crate::games;
use crate::results::{self, files};
use crate::runner::StopToken;
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;

/// Options of this command.
#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// Only episodes of these games: a name, `all`, or clemcore's JSON
    /// selector, as for `run`. Repeatable.
    #[arg(short = 'g', long = "game", value_name = "GAME")]
    pub games: Vec<String>,
    /// The results directory.
    #[arg(
        short = 'r',
        long = "results-dir",
        value_name = "DIR",
        default_value = "results"
    )]
    pub results_dir: PathBuf,
    /// Look for clembench games in DIR first (repeatable); needed only for
    /// a JSON selector in -g.
    #[arg(long = "games-dir", value_name = "DIR")]
    pub games_dirs: Vec<PathBuf>,
    /// The Python interpreter with clemcore for clembench games (default
    /// $CLEMHOST_PYTHON, else python3 on PATH).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Python workers at once for clembench episodes.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,
}

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto}
.msg{border-radius:8px;padding:6px 10px;margin:6px 0;white-space:pre-wrap}
.gm-to-player{background:#e8eefc;margin-right:30%}
.player-to-gm{background:#e9f7e9;margin-left:30%}
.gm-to-gm{background:#f4f4f4;font-style:italic;text-align:center}
.head{font-size:80%;color:#555}
.round{border-top:1px solid #ccc;margin-top:1em;padding-top:.5em;color:#777}";

/// Renders one episode's interactions as HTML.
pub fn render(interactions: &Value) -> String {
    let meta = interactions.get("meta").cloned().unwrap_or(Value::Null);
    let get = |k: &str| {
        meta.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let title = format!(
        "{} / {} / instance {}",
        get("game_name").unwrap_or_default(),
        get("experiment_name").unwrap_or_default(),
        get("game_id").unwrap_or_default()
    );
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape_html(&title)
    );
    if let Some(players) = interactions.get("players").and_then(Value::as_object) {
        html.push_str("<ul>\n");
        for (name, p) in players {
            let role = p.get("game_role").and_then(Value::as_str).unwrap_or("");
            let model = p.get("model_name").and_then(Value::as_str).unwrap_or("");
            html.push_str(&format!(
                "<li><b>{}</b>: {} ({})</li>\n",
                escape_html(name),
                escape_html(role),
                escape_html(model)
            ));
        }
        html.push_str("</ul>\n");
    }
    let rounds = interactions
        .get("turns")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, round) in rounds.iter().enumerate() {
        html.push_str(&format!("<div class=\"round\">Round {i}</div>\n"));
        for e in round.as_array().into_iter().flatten() {
            let from = e.get("from").and_then(Value::as_str).unwrap_or("");
            let to = e.get("to").and_then(Value::as_str).unwrap_or("");
            let kind = e
                .pointer("/action/type")
                .and_then(Value::as_str)
                .unwrap_or("");
            let content = match e.pointer("/action/content") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let class = match (from, to) {
                ("GM", "GM") => "gm-to-gm",
                ("GM", _) => "gm-to-player",
                _ => "player-to-gm",
            };
            html.push_str(&format!(
                "<div class=\"msg {class}\"><div class=\"head\">{} → {} · {}</div>{}</div>\n",
                escape_html(from),
                escape_html(to),
                escape_html(kind),
                escape_html(&content)
            ));
        }
    }
    html.push_str("</body></html>\n");
    html
}

/// Runs the command.
pub fn run(_global: &GlobalArgs, args: &TranscribeArgs) -> Result<Exit> {
    let root = super::score::results_root(&args.results_dir, args.parallel)?;
    // A plain name filters without a search (transcripts need no game).
    let names: Option<Vec<String>> = if args
        .games
        .iter()
        .all(|g| g != "all" && !g.trim_start().starts_with('{'))
        && !args.games.is_empty()
    {
        Some(args.games.clone())
    } else {
        selected_games(&args.games, &args.games_dirs, &mut None)?.map(|m| m.into_keys().collect())
    };
    let mut written = 0usize;
    let mut failed = 0usize;
    let mut clembench_episodes = Vec::new();
    for dir in results::find_episodes(&root) {
        let game = game_of(&root, &dir);
        if let Some(names) = &names {
            if !game.as_ref().is_some_and(|g| names.contains(g)) {
                continue;
            }
        }
        if game
            .as_deref()
            .is_some_and(|g| games::find_game(g).is_none())
        {
            clembench_episodes.push(dir);
            continue;
        }
        let path = dir.join(files::INTERACTIONS);
        let interactions = match results::read_json(&path) {
            Ok(v) => v,
            Err(e) => {
                crate::say!("skipped: {e}");
                failed += 1;
                continue;
            }
        };
        results::write_atomic(
            &dir.join(files::TRANSCRIPT),
            render(&interactions).as_bytes(),
        )
        .map_err(Error::wrap)?;
        written += 1;
    }
    let mut interrupted = 0;
    if !clembench_episodes.is_empty() {
        let python = python::check(&python::choose(args.python.as_deref()))?;
        let stop = StopToken::ctrl_c();
        let s = clembench::records::transcribe(
            &python,
            &root,
            &clembench_episodes,
            args.parallel,
            &stop,
        )
        .map_err(Error::msg)?;
        written += s.written;
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
        "wrote {written} transcript(s) under {}",
        args.results_dir.display()
    );
    if interrupted > 0 {
        return Err(Error::msg(format!(
            "interrupted: {interrupted} episode(s) not transcribed; run clemhost transcribe again"
        )));
    }
    if failed > 0 {
        crate::say!("{failed} episode(s) could not be transcribed");
        return Ok(Exit::EpisodesFailed);
    }
    Ok(Exit::Success)
}
