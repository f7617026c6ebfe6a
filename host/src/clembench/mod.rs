//! clembench's own games (Python, on clemcore's framework), played by
//! clemcore's code in a worker process whose model calls the host answers.
//!
//! - [`discover`]: finding `clemgame.json` specs as clemcore does, and `-g`
//!   selectors.
//! - [`python`]: the user's interpreter, its clemcore version, and the
//!   `clemhost_games` package the host ships.
//! - [`worker`]: one worker process and the pipe to it.
//! - [`records`]: scores and transcripts of played episodes, by clemcore's code.
//! - [`play`]: a run over the selected specs; results in clemcore's layout.
//!
//! Why a pipe and not an HTTP endpoint: docs/adr/0008-clembench-games.md.

pub mod discover;
mod no_sigpipe;
pub mod python;
pub mod records;
pub mod worker;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::games::PlayerModel;
use crate::registry::Registry;
use crate::results::{self, schema::ErrorRecord, Timestamp};
use crate::runner::progress::{self, Progress};
use crate::runner::{open_models, GenSettings, ModelLimits, Shard, StopToken};
use clemhost_plugin_sdk::GenArgs;
use discover::GameSpec;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
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
    /// `--resume`: skip the episodes complete in the run folder.
    pub resume: bool,
    /// `--shard K/N`: only this shard's episodes.
    pub shard: Option<Shard>,
    /// A progress bar (terminal) or lines (otherwise) on stderr.
    pub show_progress: bool,
}

/// What a clembench run did, over every game.
#[derive(Clone, Debug, Default)]
pub struct ClembenchSummary {
    /// Episodes planned (this shard's, with `--shard`).
    pub episodes: usize,
    /// Skipped because they were complete (`--resume`).
    pub skipped: usize,
    /// Episodes that ended normally (clemcore wrote their interactions).
    pub completed: usize,
    /// Episodes that raised (error.json written).
    pub errors: usize,
    /// Not played because the run was interrupted.
    pub interrupted: usize,
    /// Model calls answered by the host.
    pub requests: u64,
    /// Failed model calls that were tried again.
    pub retries: u64,
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
    // clemcore reads the file itself, with Python's `json`, which refuses a
    // byte order mark: say so rather than "expected value at 1:1".
    if text.starts_with('\u{feff}') {
        return Err(Error::msg(format!(
            "{}: the instances file starts with a UTF-8 byte order mark, which clemcore's Python cannot read; save it as UTF-8 without one",
            path.display()
        )));
    }
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| crate::error::json_error(&path, &e, "an instances file"))?;
    crate::registry::locate::warn_duplicate_keys(&path.display().to_string(), &text);
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

/// Plays every selected spec, one after the other, each on up to
/// `--parallel` workers.
///
/// Workers never write into the run folder: each writes into its own
/// staging folder ([`staging`]), and the host moves an episode's folder
/// into the run folder, with one rename, once the worker reports that
/// clemcore has written all its files. So the run folder holds whole
/// episodes only, whenever the run ends (Ctrl-C, `kill -9`, a crash), and
/// `--resume` plays what is missing (see [`episode_is_complete`]).
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
    let keep = plan.shard.map(|shard| {
        let keys: Vec<(&str, &str, u64)> = work
            .iter()
            .flat_map(|(spec, eps)| eps.iter().map(|(e, i)| (spec.name(), e.as_str(), *i)))
            .collect();
        shard.picks(&keys)
    });
    let mut keep = keep.into_iter().flatten();
    let work: Vec<_> = work
        .into_iter()
        .map(|(spec, all)| {
            let total = all.len();
            let mine: Vec<_> = all
                .into_iter()
                .filter(|_| keep.next().unwrap_or(true))
                .collect();
            (spec, total, mine)
        })
        .collect();
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
    std::fs::create_dir_all(&results_dir)
        .map_err(|e| Error::msg(format!("{}: cannot create: {e}", results_dir.display())))?;
    staging::remove_stale(&results_dir);
    let mut summary = ClembenchSummary {
        episodes: work.iter().map(|(_, _, mine)| mine.len()).sum(),
        ..ClembenchSummary::default()
    };
    let progress = Progress::new(summary.episodes, plan.show_progress);
    for (spec, total, episodes) in work {
        let needed = usize::try_from(spec.players()).unwrap_or(0).max(1);
        let selectors = selectors_for(spec, needed, &plan.models)?;
        let workers = plan.parallel.clamp(1, episodes.len().max(1));
        let limits = ModelLimits {
            concurrency: Some(workers),
            ..plan.limits.clone()
        };
        let models = open_models(registry, plugins, &selectors, &gen_args, &limits, stop)?;
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
        job.insert("players".into(), Value::Array(players));
        job.insert(
            "gen_args".into(),
            json!({"temperature": plan.gen.temperature, "max_tokens": plan.gen.max_tokens}),
        );
        let run = SpecRun {
            spec,
            results_dir: &results_dir,
            resume: plan.resume,
            planned: &episodes,
            total,
            workers,
            deal: OnceLock::new(),
            settled: Mutex::new(HashSet::new()),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            stop,
            progress: &progress,
        };
        let played = run.play(&python, &job, &handles);
        summary.retries += models.stats.retries.load(Ordering::Relaxed);
        let played = match played {
            Ok(p) => p,
            Err(e) => {
                progress.done();
                return Err(Error::msg(format!("{}: {e}", spec.name())));
            }
        };
        summary.skipped += played.skipped;
        summary.completed += played.completed;
        summary.errors += played.errors;
        summary.interrupted += played.interrupted;
        summary.requests += played.requests;
        summary.tokens += played.tokens;
        if !summary.run_dirs.contains(&played.run_dir) {
            summary.run_dirs.push(played.run_dir);
        }
        if stop.is_stopped() {
            break;
        }
    }
    progress.done();
    if stop.is_stopped() {
        let played = summary.skipped + summary.completed + summary.errors;
        summary.interrupted = summary.episodes.saturating_sub(played);
    }
    summary.wall = wall.elapsed();
    Ok(summary)
}

/// Whether a clembench episode's folder holds a complete episode:
/// `instance.json` and `interactions.json` parse, so does the file clemcore
/// writes last (3.7: `completed.json`; 3.3, which writes no signal file:
/// `requests.json`), there is no `error.json`, and `instance.json`'s
/// `game_id` is the folder's number. As for native games
/// (`EpisodeFolder::is_complete`), a failed episode is not complete, so
/// `--resume` plays it again.
pub fn episode_is_complete(dir: &Path) -> bool {
    let parses = |name: &str| results::read_json(&dir.join(name)).is_ok();
    !dir.join(results::files::ERROR).exists()
        && results::instance_matches_folder(dir)
        && parses(results::files::INTERACTIONS)
        && (parses(results::files::COMPLETED) || parses("requests.json"))
}

/// One spec's run over its workers.
struct SpecRun<'a> {
    spec: &'a GameSpec,
    results_dir: &'a Path,
    resume: bool,
    /// This shard's episodes of the spec.
    planned: &'a [(String, u64)],
    /// All episodes of the spec (run.json's `num_instances`).
    total: usize,
    workers: usize,
    /// Made when the first worker says where it writes.
    deal: OnceLock<std::result::Result<Deal, String>>,
    /// Experiments whose `experiment.json` this run has settled.
    settled: Mutex<HashSet<String>>,
    /// The first reason the run was ended (shown as it is).
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    stop: &'a StopToken,
    progress: &'a Progress,
}

/// The run folder, locked, and each worker's share of the episodes.
struct Deal {
    name: String,
    folder: results::RunFolder,
    shares: Vec<Vec<(String, u64)>>,
    skipped: usize,
}

/// What one spec's run did.
struct Played {
    run_dir: PathBuf,
    skipped: usize,
    completed: usize,
    errors: usize,
    interrupted: usize,
    requests: u64,
    tokens: u64,
}

/// Worker `k` of a [`SpecRun`].
struct Seat<'a, 'b> {
    run: &'b SpecRun<'a>,
    k: usize,
    root: &'b Path,
}

impl SpecRun<'_> {
    fn game(&self) -> &str {
        self.spec.name()
    }

    /// Ends the run with `message` (the first one is kept); returns it.
    fn fail(&self, message: String) -> String {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| message.clone());
        self.failed.store(true, Ordering::SeqCst);
        message
    }

    /// Locks the run folder `name`, leaves out the complete episodes
    /// (`--resume`) and deals the rest out in contiguous shares.
    fn deal(&self, name: &str) -> std::result::Result<Deal, String> {
        let folder = results::RunFolder::open(self.results_dir, name).map_err(|e| e.to_string())?;
        let mut rest = Vec::new();
        let mut skipped = 0;
        for (e, i) in self.planned {
            let dir = folder.episode(self.game(), e, *i).dir;
            if self.resume && episode_is_complete(&dir) {
                skipped += 1;
                self.progress
                    .finished(&label(self.game(), e, *i), progress::SKIPPED);
            } else {
                rest.push((e.clone(), *i));
            }
        }
        let n = rest.len();
        let shares = (0..self.workers)
            .map(|k| rest[k * n / self.workers..(k + 1) * n / self.workers].to_vec())
            .collect();
        Ok(Deal {
            name: name.to_string(),
            folder,
            shares,
            skipped,
        })
    }

    /// Writes a failed episode's `error.json` (3.3 writes none), settles
    /// the experiment's `experiment.json` and moves the episode's folder
    /// from the worker's staging folder into the run folder.
    fn adopt(
        &self,
        deal: &Deal,
        staged_run: &Path,
        report: &worker::EpisodeReport,
    ) -> std::result::Result<(), String> {
        let game = self.game();
        if let Some(f) = &report.error {
            write_error(staged_run, game, report, f).map_err(|e| e.to_string())?;
        }
        let from_exp = staged_run.join(game).join(&report.experiment);
        let to_exp = deal
            .folder
            .layout()
            .experiment_dir(game, &report.experiment);
        let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let mut settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        if !settled.contains(&report.experiment) {
            let staged = from_exp.join(results::files::EXPERIMENT);
            if staged.is_file() {
                settle_experiment(
                    &staged,
                    &to_exp.join(results::files::EXPERIMENT),
                    self.resume,
                )?;
                settled.insert(report.experiment.clone());
            }
        }
        let instance = format!("instance_{:05}", report.game_id);
        let (from, to) = (from_exp.join(&instance), to_exp.join(&instance));
        std::fs::create_dir_all(&to_exp).map_err(|e| io(&to_exp, e))?;
        if to.exists() {
            std::fs::remove_dir_all(&to).map_err(|e| io(&to, e))?;
        }
        std::fs::rename(&from, &to).map_err(|e| io(&from, e))
    }

    /// Starts the workers, each in its own locked staging folder, and
    /// writes `run.json` when they are done.
    fn play(
        &self,
        python: &python::Python,
        job: &Map<String, Value>,
        players: &[PlayerModel],
    ) -> std::result::Result<Played, String> {
        let started = Timestamp::now();
        let mut roots = Vec::new();
        for k in 0..self.workers {
            roots.push(staging::create(self.results_dir, k)?);
        }
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = roots
                .iter()
                .enumerate()
                .map(|(k, (root, _lock))| {
                    let mut job = job.clone();
                    job.insert("results_dir".into(), root.display().to_string().into());
                    s.spawn(move || {
                        let seat = Seat { run: self, k, root };
                        let r = worker::play(python, &job, players, self.stop, &seat);
                        if let Err(e) = &r {
                            self.failed.store(true, Ordering::SeqCst);
                            tracing::debug!("worker {k} of {}: {e}", self.game());
                        }
                        r
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
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let first_error = outcomes
            .iter()
            .find_map(|o| o.as_ref().err().map(|e| e.to_string()));
        let written = match (failure.or(first_error), self.deal.get()) {
            (Some(e), _) => Err(e),
            (None, Some(Ok(deal))) => {
                let staged: Vec<(PathBuf, usize)> = roots
                    .iter()
                    .zip(&outcomes)
                    .map(|((r, _), o)| {
                        let reported = o.as_ref().map_or(0, |o| o.episodes.len());
                        (r.join(&deal.name), reported)
                    })
                    .collect();
                self.write_run(deal, &staged, &started)
                    .map(|()| deal.folder.layout().run_dir.clone())
            }
            (None, Some(Err(e))) => Err(e.clone()),
            (None, None) => Err("no worker said where clemcore writes".into()),
        };
        for (root, lock) in roots {
            let _ = std::fs::remove_dir_all(&root);
            drop(lock);
        }
        let run_dir = written?;
        let mut played = Played {
            run_dir,
            skipped: self
                .deal
                .get()
                .and_then(|d| d.as_ref().ok())
                .map_or(0, |d| d.skipped),
            completed: 0,
            errors: 0,
            interrupted: 0,
            requests: 0,
            tokens: 0,
        };
        for o in outcomes.into_iter().flatten() {
            for report in &o.episodes {
                if report.error.is_some() {
                    played.errors += 1;
                } else {
                    played.completed += 1;
                }
            }
            played.requests += o.requests;
            played.tokens += o.tokens;
        }
        played.interrupted = self
            .planned
            .len()
            .saturating_sub(played.skipped + played.completed + played.errors);
        Ok(played)
    }

    /// `run.json` as one uninterrupted, unsharded `clem run` writes it, but
    /// for times: an existing file's other games and `created` kept (as
    /// clemcore keeps them), this game's entry with the workers' first
    /// start and last end. `num_instances` counts, as clemcore does, the
    /// episodes that started (clemcore 3.7 does not count one whose setup
    /// raised), plus those `--resume` skipped and those of other shards, so
    /// that a resumed run's and every shard's file equal one whole run's.
    fn write_run(
        &self,
        deal: &Deal,
        staged_runs: &[(PathBuf, usize)],
        started: &Timestamp,
    ) -> std::result::Result<(), String> {
        let game = self.game();
        let target = deal.folder.layout().run_file();
        let staged: Vec<Value> = staged_runs
            .iter()
            .filter_map(|(d, _)| results::read_json(&d.join("run.json")).ok())
            .collect();
        // A worker that was ended early wrote no count: its reports stand in.
        let began: u64 = staged_runs
            .iter()
            .map(|(d, reported)| {
                results::read_json(&d.join("run.json"))
                    .ok()
                    .and_then(|r| r["games"][game]["num_instances"].as_u64())
                    .unwrap_or(*reported as u64)
            })
            .sum();
        let others = self.total.saturating_sub(self.planned.len()) + deal.skipped;
        let mut run = results::read_json(&target)
            .ok()
            .filter(Value::is_object)
            .or_else(|| staged.first().cloned())
            .unwrap_or_else(|| json!({}));
        let entries: Vec<&Map<String, Value>> = staged
            .iter()
            .filter_map(|r| r["games"][game].as_object())
            .collect();
        let field = |k: &str| -> Vec<String> {
            entries
                .iter()
                .filter_map(|e| e.get(k).and_then(Value::as_str))
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect()
        };
        let start = field("benchmark_start")
            .into_iter()
            .min()
            .unwrap_or_else(|| started.iso());
        let end = field("benchmark_end")
            .into_iter()
            .max()
            .unwrap_or_else(|| Timestamp::now().iso());
        let took = parse_iso(&end)
            .zip(parse_iso(&start))
            .and_then(|(e, s)| (e - s).to_std().ok())
            .unwrap_or_default();
        let game_path = entries
            .iter()
            .find_map(|e| e.get("game_path").cloned())
            .or_else(|| run["games"][game].get("game_path").cloned())
            .unwrap_or_else(|| self.spec.game_path().display().to_string().into());
        let mut entry = Map::new();
        entry.insert("game_path".into(), game_path);
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
        entry.insert("num_instances".into(), (began + others as u64).into());
        let Some(object) = run.as_object_mut() else {
            unreachable!("run is an object")
        };
        let games = object.entry("games").or_insert_with(|| json!({}));
        if !games.is_object() {
            *games = json!({});
        }
        if let Some(games) = games.as_object_mut() {
            games.insert(game.into(), Value::Object(entry));
        }
        results::write_json(&target, &run).map_err(|e| e.to_string())
    }
}

impl worker::WorkerHost for Seat<'_, '_> {
    fn episodes(&self, run_dir: &Path) -> std::result::Result<Vec<(String, u64)>, String> {
        let name = match (
            run_dir.parent(),
            run_dir.file_name().and_then(|n| n.to_str()),
        ) {
            (Some(parent), Some(name)) if parent == self.root => name,
            _ => {
                return Err(self.run.fail(format!(
                    "the Python worker writes into {}, not into its staging folder {}",
                    run_dir.display(),
                    self.root.display()
                )))
            }
        };
        match self.run.deal.get_or_init(|| self.run.deal(name)) {
            Ok(deal) if deal.name == name => Ok(deal.shares[self.k].clone()),
            Ok(deal) => Err(self.run.fail(format!(
                "two workers name the run folder differently ({} and {name})",
                deal.name
            ))),
            Err(e) => Err(self.run.fail(e.clone())),
        }
    }

    fn episode_ended(
        &self,
        run_dir: &Path,
        report: &worker::EpisodeReport,
    ) -> std::result::Result<(), String> {
        let Some(Ok(deal)) = self.run.deal.get() else {
            return Err(self
                .run
                .fail("an episode ended before the run folder was known".into()));
        };
        self.run
            .adopt(deal, run_dir, report)
            .map_err(|e| self.run.fail(e))?;
        let what = match &report.error {
            None => "done".to_string(),
            Some(f) => format!("{} ({}: {})", progress::FAILED, f.error_type, f.message),
        };
        self.run.progress.finished(
            &label(self.run.game(), &report.experiment, report.game_id),
            &what,
        );
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.run.stop.is_stopped() || self.run.failed.load(Ordering::Relaxed)
    }
}

fn label(game: &str, experiment: &str, game_id: u64) -> String {
    format!("{game}/{experiment}/instance_{game_id:05}")
}

/// Keeps the run folder's `experiment.json` when it records what the
/// worker's does (times aside); otherwise replaces it, or, with
/// `--resume`, refuses: the complete episodes were played with the
/// recorded settings, and mixing them would make the results lie.
fn settle_experiment(
    staged: &Path,
    recorded: &Path,
    resume: bool,
) -> std::result::Result<(), String> {
    let without_time = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("timestamp");
        }
        v
    };
    let ours = results::read_json(staged).map_err(|e| e.to_string())?;
    if let Ok(theirs) = results::read_json(recorded) {
        if without_time(theirs.clone()) == without_time(ours.clone()) {
            return Ok(());
        }
        if resume {
            let what = if theirs.get("player_models") == ours.get("player_models") {
                "the experiment's keys in the instances file"
            } else {
                "the models or generation arguments (player_models)"
            };
            return Err(format!(
                "{}: the finished episodes were played with other settings ({what} differ); --resume would mix them. Run without --resume to play every episode again, or pass another -r DIR",
                recorded.display()
            ));
        }
    }
    let bytes = std::fs::read(staged).map_err(|e| format!("{}: {e}", staged.display()))?;
    results::write_atomic(recorded, &bytes).map_err(|e| e.to_string())
}

pub mod staging {
    //! The workers' staging folders: `<results>/.clemhost-staging-<host>-<pid>-<k>/`,
    //! each locked ([`RunLock`]) by the run that made it for as long as it
    //! lives. A run that was killed leaves its folder behind; the next
    //! clembench run into the same results directory removes it when it
    //! was made on this machine by a process that is gone and nobody holds
    //! its lock. Folders of other machines (a results directory shared by
    //! cluster nodes) are left alone: their process cannot be checked.

    use crate::results::lock::RunLock;
    use std::path::{Path, PathBuf};

    const PREFIX: &str = crate::results::STAGING_PREFIX;

    fn host() -> String {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `buf.len()` bytes into the
        // buffer it is given, which lives for the call.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = if rc == 0 {
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        };
        // One path component, whatever the host is called.
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Makes and locks worker `k`'s staging folder.
    pub fn create(results_dir: &Path, k: usize) -> Result<(PathBuf, RunLock), String> {
        let root = results_dir.join(format!("{PREFIX}{}-{}-{k}", host(), std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("{}: cannot create: {e}", root.display()))?;
        let lock = RunLock::try_acquire(&root).map_err(|e| e.to_string())?;
        Ok((root, lock))
    }

    /// `(host, pid)` of a staging folder's name (no host: an older clemhost's).
    fn owner(name: &str) -> Option<(Option<&str>, i32)> {
        let rest = name.strip_prefix(PREFIX)?;
        let mut parts = rest.rsplitn(3, '-');
        let _k: usize = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        Some((parts.next(), pid))
    }

    fn alive(pid: i32) -> bool {
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// Removes the staging folders of killed runs (see the module's docs).
    pub fn remove_stale(results_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(results_dir) else {
            return;
        };
        let me = host();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((host, pid)) = owner(&name) else {
                continue;
            };
            let path = entry.path();
            if host.is_some_and(|h| h != me) {
                tracing::info!(
                    "{}: another machine's staging folder; left alone (remove it when no run of that machine uses it)",
                    path.display()
                );
                continue;
            }
            if pid == std::process::id() as i32 || alive(pid) {
                continue;
            }
            if let Ok(_lock) = RunLock::try_acquire(&path) {
                tracing::info!("{}: removing a killed run's staging folder", path.display());
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!("{}: cannot remove: {e}", path.display());
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn staging_names_carry_host_and_pid() {
            assert_eq!(
                super::owner(".clemhost-staging-node-7-123-0"),
                Some((Some("node-7"), 123))
            );
            assert_eq!(super::owner(".clemhost-staging-123-0"), Some((None, 123)));
            assert_eq!(super::owner(".clemhost-staging-x"), None);
            assert_eq!(super::owner("mock"), None);
        }
    }
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
    results::write_record(&dir.join("error.json"), &record).map_err(Error::wrap)
}

#[cfg(test)]
mod tests {
    use super::episode_is_complete;

    #[test]
    fn an_episode_is_complete_only_with_its_own_instance() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("instance_00003");
        std::fs::create_dir(&dir).expect("episode folder");
        std::fs::write(dir.join("interactions.json"), "{}").expect("write");
        std::fs::write(dir.join("completed.json"), "{}").expect("write");
        std::fs::write(dir.join("instance.json"), r#"{"game_id": 3}"#).expect("write");
        assert!(episode_is_complete(&dir));
        std::fs::write(dir.join("instance.json"), r#"{"game_id": 4}"#).expect("write");
        assert!(!episode_is_complete(&dir), "another game's instance");
        std::fs::write(dir.join("instance.json"), r#"{"x": 3}"#).expect("write");
        assert!(!episode_is_complete(&dir), "no game_id");
        std::fs::write(dir.join("instance.json"), r#"{"game_id": 3}"#).expect("write");
        std::fs::remove_file(dir.join("interactions.json")).expect("remove");
        std::fs::create_dir(dir.join("interactions.json")).expect("a folder in its place");
        assert!(!episode_is_complete(&dir), "interactions.json is a folder");
    }
}
