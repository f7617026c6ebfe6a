//! clembench's own games (Python, on clemcore's framework), played by
//! clemcore's code in a worker process whose model calls the host answers.
//!
//! - [`discover`]: finding `clemgame.json` specs as clemcore does, and `-g`
//!   selectors.
//! - [`python`]: the user's interpreter, its clemcore version, and the
//!   `clemhost_games` package the host ships.
//! - [`worker`]: one worker process and the pipe to it.
//! - [`play`]: a run over the selected specs; results in clemcore's layout.
//!
//! Why a pipe and not an HTTP endpoint: docs/adr/0008-clembench-games.md.

pub mod discover;
pub mod python;
pub mod worker;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::games::PlayerModel;
use crate::registry::Registry;
use crate::results::{self, schema::ErrorRecord, Timestamp};
use crate::runner::{open_models, GenSettings, ModelLimits, StopToken};
use clemhost_plugin_sdk::GenArgs;
use discover::GameSpec;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A clembench run, checked.
#[derive(Clone, Debug)]
pub struct ClembenchPlan {
    /// The selected specs, in order.
    pub specs: Vec<GameSpec>,
    /// `-i`: another instances file name (under each game's `in/`).
    pub instances: Option<String>,
    /// `-e`: only this experiment.
    pub experiment: Option<String>,
    /// `-m`, in order.
    pub models: Vec<String>,
    /// Generation arguments.
    pub gen: GenSettings,
    /// Limits on model calls.
    pub limits: ModelLimits,
    /// `-r`.
    pub results_dir: PathBuf,
    /// The interpreter to use.
    pub python: PathBuf,
    /// `--parallel`: worker processes per game (episodes played at once).
    pub parallel: usize,
}

/// What a clembench run did, per run folder and in total.
#[derive(Clone, Debug, Default)]
pub struct ClembenchSummary {
    /// Episodes planned.
    pub episodes: usize,
    /// Episodes that ended normally (clemcore wrote their interactions).
    pub completed: usize,
    /// Episodes that raised (error.json written).
    pub errors: usize,
    /// Model calls answered by the host.
    pub requests: u64,
    /// Tokens reported by the backends.
    pub tokens: u64,
    /// Wall time.
    pub wall: Duration,
    /// The run folders written.
    pub run_dirs: Vec<PathBuf>,
}

/// The episodes of a spec's instances file: (experiment, game_id), filtered by `-e`.
pub fn episodes_of(
    spec: &GameSpec,
    instances: Option<&str>,
    experiment: Option<&str>,
) -> Result<Vec<(String, u64)>> {
    let path = spec.instances_file(instances);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::msg(format!(
            "{}: cannot read the instances of {}: {e}; check the game's \"instances\" or pass -i NAME",
            path.display(),
            spec.name()
        ))
    })?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| crate::error::json_error(&path, &e, "an instances file"))?;
    let mut out = Vec::new();
    let mut names = Vec::new();
    let experiments = value
        .get("experiments")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::msg(format!(
                "{}: no \"experiments\" list; a clembench instances file has one",
                path.display()
            ))
        })?;
    for (i, e) in experiments.iter().enumerate() {
        let name = e.get("name").and_then(Value::as_str).ok_or_else(|| {
            Error::msg(format!(
                "{}: experiments[{i}] has no string \"name\"",
                path.display()
            ))
        })?;
        // clemcore joins the name into the results path as it is; an
        // instances file given with -i may come from others. (Duplicate
        // names are clembench's own: codenames has them, so they stay.)
        if let Err(rule) = crate::results::names::check_component(name) {
            return Err(Error::msg(format!(
                "{}: experiments[{i}].name {name:?} cannot name a results folder: {rule}; rename the experiment",
                path.display()
            )));
        }
        names.push(name.to_string());
        if experiment.is_some_and(|x| x != name) {
            continue;
        }
        for (j, inst) in e
            .get("game_instances")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let id = inst.get("game_id").and_then(Value::as_u64).ok_or_else(|| {
                Error::msg(format!(
                    "{}: experiments[{i}].game_instances[{j}] has no integer \"game_id\"",
                    path.display()
                ))
            })?;
            out.push((name.to_string(), id));
        }
    }
    if let Some(x) = experiment {
        if !names.iter().any(|n| n == x) {
            return Err(Error::msg(format!(
                "{} has no experiment '{x}'; its experiments are: {}",
                path.display(),
                names.join(", ")
            )));
        }
    }
    Ok(out)
}

/// Plays every selected spec, one after the other, each in a worker.
pub fn play(
    plan: &ClembenchPlan,
    registry: &Registry,
    plugins: &GlobalArgs,
    stop: &StopToken,
) -> Result<ClembenchSummary> {
    let wall = Instant::now();
    let python = python::check(&plan.python)?;
    tracing::info!(
        "clembench games with clemcore {} ({})",
        python.clemcore,
        python.interpreter.display()
    );
    // Everything is checked before anything is played.
    let mut work = Vec::new();
    for spec in &plan.specs {
        let episodes = episodes_of(spec, plan.instances.as_deref(), plan.experiment.as_deref())?;
        work.push((spec, episodes));
    }
    let gen_args = GenArgs {
        temperature: plan.gen.temperature,
        max_tokens: plan.gen.max_tokens,
        extra: Map::new(),
    };
    let results_dir = std::path::absolute(&plan.results_dir).map_err(|e| {
        Error::msg(format!(
            "-r {}: cannot resolve: {e}",
            plan.results_dir.display()
        ))
    })?;
    let mut summary = ClembenchSummary::default();
    for (spec, episodes) in work {
        let needed = usize::try_from(spec.players()).unwrap_or(0).max(1);
        let selectors = selectors_for(spec, needed, &plan.models)?;
        let models = open_models(registry, plugins, &selectors, &gen_args, &plan.limits, stop)?;
        let mut players = Vec::new();
        let mut handles = Vec::new();
        for m in &models.models {
            players.push(match &m.player {
                PlayerModel::Programmed(name) => json!({"kind": "programmatic", "name": name}),
                PlayerModel::Human(name) => {
                    return Err(Error::msg(format!(
                        "-m {name}: human players are not supported for clembench games yet; play {} with `clem run`",
                        spec.name()
                    )))
                }
                PlayerModel::Model(_) => json!({"kind": "host", "spec": m.spec}),
            });
            handles.push(m.player.clone());
        }
        let mut job = Map::new();
        job.insert("game_spec".into(), Value::Object(spec.spec.clone()));
        job.insert("instances".into(), json!(plan.instances));
        job.insert(
            "episodes".into(),
            episodes.iter().map(|(e, i)| json!([e, i])).collect(),
        );
        job.insert("players".into(), Value::Array(players));
        job.insert(
            "gen_args".into(),
            json!({"temperature": plan.gen.temperature, "max_tokens": plan.gen.max_tokens}),
        );
        job.insert(
            "results_dir".into(),
            results_dir.display().to_string().into(),
        );
        summary.episodes += episodes.len();
        let done = AtomicUsize::new(0);
        let total = episodes.len();
        let name = spec.name().to_string();
        let progress = |report: &worker::EpisodeReport| {
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            let status = match &report.error {
                None => "done".to_string(),
                Some(f) => format!("error: {}: {}", f.error_type, f.message),
            };
            tracing::info!(
                "[{n}/{total}] {name}/{}/instance_{:05} {status}",
                report.experiment,
                report.game_id
            );
        };
        let workers = plan.parallel.clamp(1, total.max(1));
        let outcomes = if workers == 1 {
            let o = worker::play(&python, &job, &handles, stop, &progress)
                .map_err(|e| Error::msg(format!("{}: {e}", spec.name())))?;
            vec![(None, o)]
        } else {
            play_staged(
                &python,
                &job,
                &episodes,
                workers,
                &results_dir,
                &handles,
                stop,
                &progress,
            )
            .map_err(|e| Error::msg(format!("{}: {e}", spec.name())))?
        };
        let mut staged = Vec::new();
        let mut final_run_dir = None;
        for (staging, outcome) in outcomes {
            let run_dir = outcome.run_dir.clone().ok_or_else(|| {
                Error::msg(format!(
                    "{}: the Python worker never said where it writes",
                    spec.name()
                ))
            })?;
            for report in &outcome.episodes {
                match &report.error {
                    None => summary.completed += 1,
                    Some(f) => {
                        summary.errors += 1;
                        write_error(&run_dir, spec.name(), report, f)?;
                    }
                }
            }
            summary.requests += outcome.requests;
            summary.tokens += outcome.tokens;
            final_run_dir = Some(match &staging {
                Some(_) => results_dir.join(run_dir.file_name().unwrap_or_default()),
                None => run_dir.clone(),
            });
            if let Some(root) = staging {
                staged.push((root, run_dir));
            }
        }
        if !staged.is_empty() {
            merge_staged(&results_dir, &staged, spec.name())?;
        }
        if let Some(d) = final_run_dir {
            if !summary.run_dirs.contains(&d) {
                summary.run_dirs.push(d);
            }
        }
    }
    summary.wall = wall.elapsed();
    Ok(summary)
}

/// Plays `episodes` on `workers` worker processes at once, each with a
/// contiguous share and its own staging results folder under
/// `results_dir` (so no two processes write one file). Returns each
/// worker's staging root and outcome, in order.
#[allow(clippy::too_many_arguments)]
fn play_staged(
    python: &python::Python,
    job: &Map<String, Value>,
    episodes: &[(String, u64)],
    workers: usize,
    results_dir: &Path,
    players: &[PlayerModel],
    stop: &StopToken,
    progress: &(dyn Fn(&worker::EpisodeReport) + Sync),
) -> std::result::Result<Vec<(Option<PathBuf>, worker::WorkerOutcome)>, String> {
    let n = episodes.len();
    let jobs: Vec<(PathBuf, Map<String, Value>)> = (0..workers)
        .map(|i| {
            let share = &episodes[i * n / workers..(i + 1) * n / workers];
            let root = results_dir.join(format!(".clemhost-staging-{}-{i}", std::process::id()));
            let mut job = job.clone();
            job.insert(
                "episodes".into(),
                share.iter().map(|(e, id)| json!([e, id])).collect(),
            );
            job.insert("results_dir".into(), root.display().to_string().into());
            (root, job)
        })
        .collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(root, job)| {
                s.spawn(move || {
                    let _ = std::fs::remove_dir_all(root);
                    worker::play(python, job, players, stop, progress)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(worker::WorkerError::Failed(
                        "a worker thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    let mut first_error = None;
    for ((root, _), r) in jobs.into_iter().zip(results) {
        match r {
            Ok(o) => out.push((Some(root), o)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    match first_error {
        Some(e) => {
            for (root, _) in &out {
                if let Some(r) = root {
                    let _ = std::fs::remove_dir_all(r);
                }
            }
            Err(e)
        }
        None => Ok(out),
    }
}

/// Moves the staged episodes into the run folder and writes the `run.json`
/// one worker would have written: the first start, the last end, every
/// instance counted; another game's entry and an existing `created` kept,
/// and an existing `experiment.json` kept, as clemcore keeps them.
fn merge_staged(results_dir: &Path, staged: &[(PathBuf, PathBuf)], game: &str) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Error::msg(format!("{}: {e}", p.display()));
    let name = staged[0].1.file_name().unwrap_or_default().to_owned();
    let target = results_dir.join(&name);
    let mut entries: Vec<Map<String, Value>> = Vec::new();
    let mut base: Option<Value> = results::read_json(&target.join("run.json")).ok();
    for (root, run_dir) in staged {
        let game_dir = run_dir.join(game);
        if let Ok(exps) = std::fs::read_dir(&game_dir) {
            for exp in exps.filter_map(|e| e.ok()) {
                let to_exp = target.join(game).join(exp.file_name());
                std::fs::create_dir_all(&to_exp).map_err(|e| io(&to_exp, e))?;
                let mut items: Vec<_> = std::fs::read_dir(exp.path())
                    .map_err(|e| io(&exp.path(), e))?
                    .filter_map(|e| e.ok())
                    .collect();
                items.sort_by_key(|e| e.file_name());
                for item in items {
                    let to = to_exp.join(item.file_name());
                    if item.file_name() == "experiment.json" && to.exists() {
                        continue;
                    }
                    if to.is_dir() {
                        std::fs::remove_dir_all(&to).map_err(|e| io(&to, e))?;
                    }
                    std::fs::rename(item.path(), &to).map_err(|e| io(&to, e))?;
                }
            }
        }
        let run =
            results::read_json(&run_dir.join("run.json")).map_err(|e| Error::msg(e.to_string()))?;
        if let Some(entry) = run["games"][game].as_object() {
            entries.push(entry.clone());
        }
        base.get_or_insert(run);
        std::fs::remove_dir_all(root).map_err(|e| io(root, e))?;
    }
    let mut run = base.unwrap_or_else(|| json!({}));
    if let Some(first) = entries.first() {
        let field = |e: &Map<String, Value>, k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let start = entries
            .iter()
            .map(|e| field(e, "benchmark_start"))
            .min()
            .unwrap_or_default();
        let end = entries
            .iter()
            .map(|e| field(e, "benchmark_end"))
            .max()
            .unwrap_or_default();
        let took = parse_iso(&end)
            .zip(parse_iso(&start))
            .and_then(|(e, s)| (e - s).to_std().ok())
            .unwrap_or_default();
        let count: u64 = entries
            .iter()
            .filter_map(|e| e.get("num_instances").and_then(Value::as_u64))
            .sum();
        let mut entry = Map::new();
        entry.insert(
            "game_path".into(),
            first.get("game_path").cloned().unwrap_or(Value::Null),
        );
        entry.insert("benchmark_start".into(), start.into());
        entry.insert("benchmark_end".into(), end.into());
        entry.insert(
            "duration".into(),
            clemhost_pyfacts::time::timedelta(took).into(),
        );
        entry.insert(
            "duration_seconds".into(),
            results::python_seconds(took).into(),
        );
        entry.insert("num_instances".into(), count.into());
        if let Some(games) = run.get_mut("games").and_then(Value::as_object_mut) {
            games.insert(game.into(), Value::Object(entry));
        }
    }
    results::write_json(&target.join("run.json"), &run).map_err(|e| Error::msg(e.to_string()))
}

fn parse_iso(s: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// The models as given: clemcore itself lets one model play every role of
/// a multi-player game (and names the run folder after the models given),
/// so the list is passed on unchanged once its length is checked.
fn selectors_for(spec: &GameSpec, needed: usize, given: &[String]) -> Result<Vec<String>> {
    if given.len() == 1 || given.len() == needed {
        Ok(given.to_vec())
    } else {
        Err(Error::msg(format!(
            "{} takes {needed} model(s) but {} were given; pass -m once (self-play) or {needed} times",
            spec.name(),
            given.len()
        )))
    }
}

fn write_error(
    run_dir: &Path,
    game: &str,
    report: &worker::EpisodeReport,
    failure: &worker::EpisodeFailure,
) -> Result<()> {
    let dir = run_dir
        .join(game)
        .join(&report.experiment)
        .join(format!("instance_{:05}", report.game_id));
    if dir.join("error.json").is_file() {
        return Ok(()); // clemcore 3.7 writes its own, in the same shape
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::msg(format!("{}: cannot create: {e}", dir.display())))?;
    let record = ErrorRecord {
        timestamp: Timestamp::now().iso(),
        error: failure.error_type.clone(),
        message: failure.message.clone(),
        kind: failure.kind.clone(),
    };
    results::write_record(&dir.join("error.json"), &record).map_err(|e| Error::msg(e.to_string()))
}
