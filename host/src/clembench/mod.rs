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
use crate::results::lock::RunLock;
use crate::results::{self, schema::ErrorRecord, Timestamp};
use crate::runner::progress::{self, Progress};
use crate::runner::{open_models, GenSettings, ModelLimits, Shard, StopToken};
use clemhost_plugin_sdk::GenArgs;
use discover::GameSpec;
use serde_json::{json, Map, Value};
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
    /// `--parallel`: episodes played at once, over every game ([`pool_shape`]).
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

/// Plays every selected spec on a pool of workers.
///
/// `--parallel N` is N *seats*: episodes played at once. They sit in up to
/// one worker process per core, each with several seats (threads) when N
/// is larger, so that clemcore is imported a few times, not N times
/// ([`pool_shape`]). A worker does one spec after the other; its seats take
/// the spec's next episode as they free up, and a worker whose spec has no
/// episode left to hand out moves on to the next spec while the others
/// finish theirs. So specs overlap and the cores stay busy.
///
/// Workers never write into the run folder: each seat writes into its own
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
    let seats = plan.parallel.max(1);
    let limits = ModelLimits {
        concurrency: Some(seats),
        ..plan.limits.clone()
    };
    // The models of every spec, each list of selectors opened once for the run.
    let mut opened: Vec<(Vec<String>, crate::runner::OpenModels)> = Vec::new();
    let mut human = false;
    let mut specs = Vec::new();
    for (spec, total, episodes) in work {
        let needed = usize::try_from(spec.players()).unwrap_or(0).max(1);
        let selectors = selectors_for(spec, needed, &plan.models)?;
        let index = match opened.iter().position(|(s, _)| *s == selectors) {
            Some(i) => i,
            None => {
                let models = open_models(registry, plugins, &selectors, &gen_args, &limits, stop)?;
                opened.push((selectors, models));
                opened.len() - 1
            }
        };
        let mut players = Vec::new();
        let mut handles = Vec::new();
        for m in &opened[index].1.models {
            players.push(match &m.player {
                PlayerModel::Programmed(name) => json!({"kind": "programmatic", "name": name}),
                PlayerModel::Human(name) => {
                    human = true;
                    json!({"kind": "human", "name": name})
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
        specs.push(SpecRun {
            spec,
            planned: episodes,
            total,
            job,
            players: handles,
            deal: OnceLock::new(),
            settled: Mutex::new(HashSet::new()),
            claims: Mutex::default(),
            run_dir: OnceLock::new(),
        });
    }
    std::fs::create_dir_all(&results_dir)
        .map_err(|e| Error::msg(format!("{}: cannot create: {e}", results_dir.display())))?;
    staging::remove_stale(&results_dir);
    let planned: usize = specs.iter().map(|s| s.planned.len()).sum();
    // A person answers on this terminal, one episode at a time (clemcore's
    // human player prints the game's messages and reads a line).
    let seats = if human && seats > 1 {
        tracing::warn!("a human player answers one episode at a time; playing with --parallel 1");
        1
    } else {
        seats
    };
    let progress = Progress::new(planned, plan.show_progress && !human);
    let board = Board {
        specs,
        results_dir: &results_dir,
        resume: plan.resume,
        stop,
        progress: &progress,
        failure: Mutex::new(None),
        failed: AtomicBool::new(false),
        claiming: Mutex::new(()),
        next_seat: AtomicUsize::new(0),
        folders: Mutex::default(),
        run_json: Mutex::new(()),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shape = pool_shape(seats, cores, planned);
    tracing::debug!("clembench pool: seats per worker {shape:?}");
    std::thread::scope(|s| {
        for &n in &shape {
            let board = &board;
            let python = &python;
            s.spawn(move || board.serve(python, n));
        }
    });
    progress.done();
    let failure = lock(&board.failure).take();
    let mut summary = ClembenchSummary {
        episodes: planned,
        ..ClembenchSummary::default()
    };
    for spec in &board.specs {
        let mut claims = lock(&spec.claims);
        summary.skipped += spec
            .deal
            .get()
            .and_then(|d| d.as_ref().ok())
            .map_or(0, |d| d.skipped);
        summary.completed += claims.completed;
        summary.errors += claims.errors;
        summary.requests += claims.requests;
        summary.tokens += claims.tokens;
        for (root, lock) in claims.staged.drain(..) {
            let _ = std::fs::remove_dir_all(&root);
            drop(lock);
        }
        if let Some(dir) = spec.run_dir.get() {
            if !summary.run_dirs.contains(dir) {
                summary.run_dirs.push(dir.clone());
            }
        }
    }
    summary.retries = opened
        .iter()
        .map(|(_, m)| m.stats.retries.load(Ordering::Relaxed))
        .sum();
    if let Some(f) = failure {
        return Err(Error::msg(f));
    }
    let played = summary.skipped + summary.completed + summary.errors;
    summary.interrupted = summary.episodes.saturating_sub(played);
    summary.wall = wall.elapsed();
    Ok(summary)
}

/// How many seats each worker process gets: `seats` episodes at once in at
/// most one process per core (a process's seats are threads, which share
/// one core for the game's Python work and wait for model calls
/// together), and no more processes than there are episodes (at least one,
/// which writes `run.json` for a shard without episodes).
pub fn pool_shape(seats: usize, cores: usize, episodes: usize) -> Vec<usize> {
    let seats = seats.max(1);
    let processes = seats.min(cores.max(1)).min(episodes.max(1));
    (0..processes)
        .map(|p| seats / processes + usize::from(p < seats % processes))
        .collect()
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
        && results::instance_matches_folder(dir, None)
        && parses(results::files::INTERACTIONS)
        && (parses(results::files::COMPLETED) || parses("requests.json"))
}

/// One spec of a run: its episodes, its job, and how far it is.
struct SpecRun<'a> {
    spec: &'a GameSpec,
    /// This shard's episodes of the spec.
    planned: Vec<(String, u64)>,
    /// All episodes of the spec (run.json's `num_instances`).
    total: usize,
    /// The job every worker that plays the spec gets (without its seats).
    job: Map<String, Value>,
    /// Who answers the players' calls.
    players: Vec<PlayerModel>,
    /// Made when the first seat says where it writes.
    deal: OnceLock<std::result::Result<Deal, String>>,
    /// Experiments whose `experiment.json` this run has settled.
    settled: Mutex<HashSet<String>>,
    claims: Mutex<Claims>,
    /// The run folder, once `run.json` is written.
    run_dir: OnceLock<PathBuf>,
}

/// Who plays a spec and what they did.
#[derive(Default)]
struct Claims {
    /// Seats given to the spec so far.
    seats: usize,
    /// Jobs started, and those still running.
    jobs: usize,
    active: usize,
    /// When the first job started.
    started: Option<Timestamp>,
    /// Every seat's staging folder (kept until the run ends: `run.json` is
    /// made from theirs) and the episodes it reported.
    staged: Vec<(PathBuf, RunLock)>,
    reported: Vec<(PathBuf, usize)>,
    completed: usize,
    errors: usize,
    requests: u64,
    tokens: u64,
}

/// The run folder, locked, and the episodes not yet handed out.
struct Deal {
    name: String,
    /// Shared by the specs that write into it (the same models).
    folder: Arc<results::RunFolder>,
    queue: Mutex<VecDeque<(String, u64)>>,
    skipped: usize,
}

/// The run: its specs and the pool's shared state.
struct Board<'a> {
    specs: Vec<SpecRun<'a>>,
    results_dir: &'a Path,
    resume: bool,
    stop: &'a StopToken,
    progress: &'a Progress,
    /// The first reason the run was ended (shown as it is).
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    /// Held while a worker picks its next spec.
    claiming: Mutex<()>,
    /// Seat numbers, unique in the run (they name the staging folders).
    next_seat: AtomicUsize,
    /// The run folders, each opened (and locked) once for the whole run:
    /// specs of the same models that overlap write into the same one.
    folders: Mutex<Vec<(String, Arc<results::RunFolder>)>>,
    /// Held while a spec reads and rewrites its run folder's `run.json`.
    run_json: Mutex<()>,
}

impl Board<'_> {
    /// Ends the run with `message` (the first one is kept); returns it.
    fn fail(&self, message: String) -> String {
        lock(&self.failure).get_or_insert_with(|| message.clone());
        self.failed.store(true, Ordering::SeqCst);
        message
    }

    fn cancelled(&self) -> bool {
        self.stop.is_stopped() || self.failed.load(Ordering::SeqCst)
    }

    /// One worker process with `seats` seats: starts it, then plays specs
    /// on it until none has an episode left to hand out.
    fn serve(&self, python: &python::Python, seats: usize) {
        // Writes to a worker that died (Ctrl-C kills it) are errors.
        let _no_sigpipe = no_sigpipe::Guard::new();
        let worker = match worker::Worker::start(python, &|| self.cancelled()) {
            Ok(w) => w,
            Err(e) => {
                if !self.cancelled() {
                    self.fail(e.to_string());
                }
                return;
            }
        };
        while let Some((index, n)) = self.claim(seats) {
            let spec = &self.specs[index];
            let mut roots = Vec::new();
            let mut seat_list = Vec::new();
            for _ in 0..n {
                let k = self.next_seat.fetch_add(1, Ordering::Relaxed);
                match staging::create(self.results_dir, k) {
                    Ok((root, lock)) => {
                        seat_list
                            .push(json!({"seat": k, "results_dir": root.display().to_string()}));
                        roots.push((k, root.clone()));
                        lock_claims(spec).staged.push((root, lock));
                    }
                    Err(e) => {
                        self.fail(format!("{}: {e}", spec.game()));
                    }
                }
            }
            if self.cancelled() {
                lock_claims(spec).active -= 1;
                break;
            }
            let mut job = spec.job.clone();
            job.insert("seats".into(), Value::Array(seat_list));
            let host = JobHost {
                board: self,
                spec,
                roots: &roots,
                run_dirs: Mutex::default(),
            };
            let outcome = worker.job(&job, &spec.players, self.stop, &host);
            let alive = matches!(&outcome, Ok(o) if !o.interrupted);
            spec.job_ended(self, outcome, &roots);
            if !alive {
                return;
            }
        }
        worker.finish();
    }

    /// The next spec for a worker with `seats` seats, and how many of them
    /// it plays with: the first spec (in the run's order) with an episode
    /// not yet handed out, or one that no worker has started (a spec
    /// without episodes still gets its `run.json` entry).
    fn claim(&self, seats: usize) -> Option<(usize, usize)> {
        let _one_at_a_time = lock(&self.claiming);
        if self.cancelled() {
            return None;
        }
        for (index, spec) in self.specs.iter().enumerate() {
            let mut claims = lock_claims(spec);
            let left = match spec.deal.get() {
                Some(Ok(deal)) => lock(&deal.queue).len(),
                Some(Err(_)) => 0,
                None => spec.planned.len().saturating_sub(claims.seats),
            };
            if left > 0 || claims.jobs == 0 {
                let n = seats.min(left.max(1));
                claims.seats += n;
                claims.jobs += 1;
                claims.active += 1;
                claims.started.get_or_insert_with(Timestamp::now);
                return Some((index, n));
            }
        }
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_claims<'a>(spec: &'a SpecRun<'_>) -> std::sync::MutexGuard<'a, Claims> {
    lock(&spec.claims)
}

impl SpecRun<'_> {
    fn game(&self) -> &str {
        self.spec.name()
    }

    /// Locks the run folder `name` and leaves out the complete episodes
    /// (`--resume`); the rest wait to be handed out, in order.
    fn deal(&self, board: &Board, name: &str) -> std::result::Result<Deal, String> {
        let folder = {
            let mut folders = lock(&board.folders);
            match folders.iter().find(|(n, _)| n == name) {
                Some((_, f)) => f.clone(),
                None => {
                    let f = Arc::new(
                        results::RunFolder::open(board.results_dir, name)
                            .map_err(|e| e.to_string())?,
                    );
                    folders.push((name.to_string(), f.clone()));
                    f
                }
            }
        };
        let mut rest = VecDeque::new();
        let mut skipped = 0;
        for (e, i) in &self.planned {
            let dir = folder.episode(self.game(), e, *i).dir;
            if board.resume && episode_is_complete(&dir) {
                skipped += 1;
                board
                    .progress
                    .finished(&label(self.game(), e, *i), progress::SKIPPED);
            } else {
                rest.push_back((e.clone(), *i));
            }
        }
        Ok(Deal {
            name: name.to_string(),
            folder,
            queue: Mutex::new(rest),
            skipped,
        })
    }

    /// Writes a failed episode's `error.json` (3.3 writes none), settles
    /// the experiment's `experiment.json` and moves the episode's folder
    /// from the seat's staging folder into the run folder.
    fn adopt(
        &self,
        board: &Board,
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
        let mut settled = lock(&self.settled);
        if !settled.contains(&report.experiment) {
            let staged = from_exp.join(results::files::EXPERIMENT);
            if staged.is_file() {
                settle_experiment(
                    &staged,
                    &to_exp.join(results::files::EXPERIMENT),
                    board.resume,
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

    /// Counts what a job did; the spec's last job (no episode left, or the
    /// run stopped) writes `run.json`.
    fn job_ended(
        &self,
        board: &Board,
        outcome: std::result::Result<worker::WorkerOutcome, worker::WorkerError>,
        roots: &[(usize, PathBuf)],
    ) {
        let mut claims = lock_claims(self);
        claims.active -= 1;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                board.fail(format!("{}: {e}", self.game()));
                worker::WorkerOutcome::default()
            }
        };
        for (seat, root) in roots {
            let reported = outcome.episodes.iter().filter(|(s, _)| s == seat).count();
            claims.reported.push((root.clone(), reported));
        }
        for (_, report) in &outcome.episodes {
            if report.error.is_some() {
                claims.errors += 1;
            } else {
                claims.completed += 1;
            }
        }
        claims.requests += outcome.requests;
        claims.tokens += outcome.tokens;
        let drained = match self.deal.get() {
            Some(Ok(deal)) => lock(&deal.queue).is_empty(),
            _ => true,
        };
        if claims.active > 0
            || !(drained || board.stop.is_stopped())
            || board.failed.load(Ordering::SeqCst)
        {
            return;
        }
        let written = match self.deal.get() {
            Some(Ok(deal)) => {
                let staged: Vec<(PathBuf, usize)> = claims
                    .reported
                    .iter()
                    .map(|(root, n)| (root.join(&deal.name), *n))
                    .collect();
                let started = claims.started.unwrap_or_else(Timestamp::now);
                let _one_writer = lock(&board.run_json);
                self.write_run(deal, &staged, &started)
                    .map(|()| deal.folder.layout().run_dir.clone())
            }
            Some(Err(e)) => Err(e.clone()),
            None => Err("no worker said where clemcore writes".into()),
        };
        match written {
            Ok(dir) => {
                let _ = self.run_dir.set(dir);
            }
            Err(e) => {
                board.fail(format!("{}: {e}", self.game()));
            }
        }
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
        let mut run = results::read_or_keep_aside(&target, |v| {
            if v.is_object() {
                Ok(v)
            } else {
                Err("not a JSON object".into())
            }
        })
        .map_err(|e| e.to_string())?
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

/// One job of a worker: a spec, played on the job's seats.
struct JobHost<'a, 'b> {
    board: &'b Board<'a>,
    spec: &'b SpecRun<'a>,
    /// `(seat, staging folder)`.
    roots: &'b [(usize, PathBuf)],
    /// Where each seat's clemcore writes (its staging run folder).
    run_dirs: Mutex<Vec<(usize, PathBuf)>>,
}

impl JobHost<'_, '_> {
    fn deal(&self) -> std::result::Result<&Deal, String> {
        match self.spec.deal.get() {
            Some(Ok(deal)) => Ok(deal),
            _ => Err(self
                .board
                .fail("a seat played before the run folder was known".into())),
        }
    }
}

impl worker::WorkerHost for JobHost<'_, '_> {
    fn ready(&self, seat: usize, run_dir: &Path) -> std::result::Result<(), String> {
        let root = self
            .roots
            .iter()
            .find(|(s, _)| *s == seat)
            .map(|(_, r)| r)
            .ok_or_else(|| {
                self.board.fail(format!(
                    "the Python worker named seat {seat}, which its job lacks"
                ))
            })?;
        let name = match (
            run_dir.parent(),
            run_dir.file_name().and_then(|n| n.to_str()),
        ) {
            (Some(parent), Some(name)) if parent == root => name,
            _ => {
                return Err(self.board.fail(format!(
                    "the Python worker writes into {}, not into its staging folder {}",
                    run_dir.display(),
                    root.display()
                )))
            }
        };
        match self
            .spec
            .deal
            .get_or_init(|| self.spec.deal(self.board, name))
        {
            Ok(deal) if deal.name == name => {
                lock(&self.run_dirs).push((seat, run_dir.to_path_buf()));
                Ok(())
            }
            Ok(deal) => Err(self.board.fail(format!(
                "two workers name the run folder differently ({} and {name})",
                deal.name
            ))),
            Err(e) => Err(self.board.fail(format!("{}: {e}", self.spec.game()))),
        }
    }

    fn next(&self, _seat: usize) -> std::result::Result<Option<(String, u64)>, String> {
        if self.board.cancelled() {
            return Ok(None);
        }
        Ok(lock(&self.deal()?.queue).pop_front())
    }

    fn episode_ended(
        &self,
        seat: usize,
        report: &worker::EpisodeReport,
    ) -> std::result::Result<(), String> {
        let deal = self.deal()?;
        let run_dir = lock(&self.run_dirs)
            .iter()
            .find(|(s, _)| *s == seat)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| {
                self.board.fail(format!(
                    "seat {seat} reported an episode before saying where it writes"
                ))
            })?;
        self.spec
            .adopt(self.board, deal, &run_dir, report)
            .map_err(|e| self.board.fail(format!("{}: {e}", self.spec.game())))?;
        let what = match &report.error {
            None => "done".to_string(),
            Some(f) => format!("{} ({}: {})", progress::FAILED, f.error_type, f.message),
        };
        self.board.progress.finished(
            &label(self.spec.game(), &report.experiment, report.game_id),
            &what,
        );
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.board.cancelled()
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
    use super::{episode_is_complete, pool_shape};

    #[test]
    fn seats_go_to_one_worker_per_core_at_most() {
        assert_eq!(pool_shape(1, 2, 60), [1]);
        assert_eq!(pool_shape(2, 2, 60), [1, 1]);
        assert_eq!(pool_shape(3, 2, 60), [2, 1]);
        assert_eq!(pool_shape(32, 2, 60), [16, 16]);
        assert_eq!(pool_shape(32, 64, 60), [1; 32]);
        // No more workers than episodes, and one for a run without any.
        assert_eq!(pool_shape(8, 8, 3), [3, 3, 2]);
        assert_eq!(pool_shape(8, 8, 0), [8]);
        assert_eq!(pool_shape(0, 0, 0), [1]);
    }

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
