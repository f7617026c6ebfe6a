//! Scores and transcripts of played clembench episodes, written by
//! clemcore's own code: each game's scorer (`clemhost score`) and
//! clemcore's transcript builder (`clemhost transcribe`), in workers.
//!
//! The episodes are dealt out in contiguous shares, at most `parallel`
//! workers at once over all games. Each worker writes every file into its
//! own staging folder (as for `run`, see [`super::staging`]) and moves it
//! over the episode's old one with one rename, so an interrupted command
//! leaves old or new files, never half of one. Episodes are named to the
//! worker by absolute path and reported back the same way.

use super::discover::GameSpec;
use super::python::Python;
use super::staging;
use super::worker::{self, EpisodeFailure, WorkerHost, WrittenReport};
use crate::runner::StopToken;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// What a `score` or `transcribe` over clembench episodes did.
#[derive(Debug, Default)]
pub struct RecordsSummary {
    /// Episodes whose files were written.
    pub written: usize,
    /// Episodes whose files could not be written, with why (in the order of
    /// the episodes given).
    pub failed: Vec<(PathBuf, String)>,
    /// Episodes no worker got to because their worker stopped (a game
    /// whose `master.py` does not load, a worker that died).
    pub unreached: usize,
    /// Why workers stopped, each message once (prefixed with the game): a
    /// game that does not load fails in every worker the same way.
    pub problems: Vec<String>,
    /// Episodes left alone because the command was interrupted.
    pub interrupted: usize,
}

/// One worker's job: the task's fields and its share of the episodes.
struct Share {
    /// The game, for messages (empty for transcripts).
    game: String,
    job: Map<String, Value>,
    episodes: Vec<PathBuf>,
}

/// Scores every `(spec, episodes)` with the game's own scorer.
pub fn score(
    python: &Python,
    results_dir: &Path,
    work: &[(GameSpec, Vec<PathBuf>)],
    parallel: usize,
    stop: &StopToken,
) -> Result<RecordsSummary, String> {
    let mut shares = Vec::new();
    for (spec, episodes) in work {
        let mut job = Map::new();
        job.insert("task".into(), json!("score"));
        job.insert("game_spec".into(), Value::Object(spec.spec.clone()));
        shares.extend(deal(spec.name(), &job, episodes, parallel));
    }
    run(python, results_dir, shares, parallel, stop)
}

/// Writes `transcript.html` and `transcript.tex` of every episode with
/// clemcore's transcript builder (it needs no game).
pub fn transcribe(
    python: &Python,
    results_dir: &Path,
    episodes: &[PathBuf],
    parallel: usize,
    stop: &StopToken,
) -> Result<RecordsSummary, String> {
    let mut job = Map::new();
    job.insert("task".into(), json!("transcribe"));
    let shares = deal("", &job, episodes, parallel);
    run(python, results_dir, shares, parallel, stop)
}

/// `episodes` in at most `parallel` contiguous shares of (nearly) equal size.
fn deal(game: &str, job: &Map<String, Value>, episodes: &[PathBuf], parallel: usize) -> Vec<Share> {
    let n = episodes.len();
    let k = parallel.clamp(1, n.max(1));
    (0..k)
        .map(|i| Share {
            game: game.to_string(),
            job: job.clone(),
            episodes: episodes[i * n / k..(i + 1) * n / k].to_vec(),
        })
        .filter(|s| !s.episodes.is_empty())
        .collect()
}

/// A share's number, its reports, and why its worker stopped early.
type ShareOutcome = (usize, Vec<WrittenReport>, Option<String>);

/// One worker's reports.
struct Collector<'a> {
    reports: Mutex<Vec<WrittenReport>>,
    stop: &'a StopToken,
}

impl WorkerHost for Collector<'_> {
    fn written(&self, report: &WrittenReport) -> Result<(), String> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(report.clone());
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.stop.is_stopped()
    }
}

fn run(
    python: &Python,
    results_dir: &Path,
    shares: Vec<Share>,
    parallel: usize,
    stop: &StopToken,
) -> Result<RecordsSummary, String> {
    staging::remove_stale(results_dir);
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<ShareOutcome>> = Mutex::default();
    let threads = parallel.clamp(1, shares.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(share) = shares.get(i) else { break };
                if stop.is_stopped() {
                    break;
                }
                let (reports, failure) = run_share(python, results_dir, i, share, stop);
                outcomes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, reports, failure));
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    outcomes.sort_by_key(|(i, _, _)| *i);
    let mut summary = RecordsSummary::default();
    let mut seen = vec![false; shares.len()];
    for (i, reports, failure) in outcomes {
        seen[i] = true;
        let share = &shares[i];
        let mut reported = std::collections::HashSet::new();
        for r in reports {
            reported.insert(r.episode.clone());
            match r.error {
                None => summary.written += 1,
                Some(f) => summary.failed.push((r.episode, describe(&f))),
            }
        }
        let missing: Vec<&PathBuf> = share
            .episodes
            .iter()
            .filter(|e| !reported.contains(*e))
            .collect();
        match failure {
            Some(message) if !stop.is_stopped() => {
                let problem = if share.game.is_empty() {
                    message
                } else {
                    format!("{}: {message}", share.game)
                };
                // The same failure in several workers differs only in how
                // the worker ended and in its log's times: said once.
                let gist = |m: &str| {
                    m.split(" (the Python worker")
                        .next()
                        .unwrap_or("")
                        .to_string()
                };
                if !summary.problems.iter().any(|p| gist(p) == gist(&problem)) {
                    summary.problems.push(problem);
                }
                summary.unreached += missing.len();
            }
            _ if stop.is_stopped() => summary.interrupted += missing.len(),
            _ => summary.unreached += missing.len(),
        }
    }
    for (i, share) in shares.iter().enumerate() {
        if !seen[i] {
            summary.interrupted += share.episodes.len();
        }
    }
    Ok(summary)
}

fn describe(f: &EpisodeFailure) -> String {
    format!("{}: {}", f.error_type, f.message)
}

/// Runs one share in a worker with its own staging folder: the reports,
/// and why the worker stopped early, if it did.
fn run_share(
    python: &Python,
    results_dir: &Path,
    k: usize,
    share: &Share,
    stop: &StopToken,
) -> (Vec<WrittenReport>, Option<String>) {
    let (root, lock) = match staging::create(results_dir, k) {
        Ok(x) => x,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut job = share.job.clone();
    job.insert("staging".into(), json!(root.display().to_string()));
    job.insert(
        "episodes".into(),
        Value::Array(
            share
                .episodes
                .iter()
                .map(|e| json!(e.display().to_string()))
                .collect(),
        ),
    );
    let host = Collector {
        reports: Mutex::default(),
        stop,
    };
    let outcome = worker::records(python, &job, stop, &host);
    let _ = std::fs::remove_dir_all(&root);
    drop(lock);
    let reports = host.reports.into_inner().unwrap_or_else(|p| p.into_inner());
    match outcome {
        Ok(_) => (reports, None),
        Err(e) => (reports, Some(e.to_string())),
    }
}
