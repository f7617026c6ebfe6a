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
        let outcome = worker::play(&python, &job, &handles, stop, &|report| {
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
        })
        .map_err(|e| Error::msg(format!("{}: {e}", spec.name())))?;
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
        if !summary.run_dirs.contains(&run_dir) {
            summary.run_dirs.push(run_dir);
        }
    }
    summary.wall = wall.elapsed();
    Ok(summary)
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
