//! Playing a game's episodes and writing their results: one pipeline,
//! args → plan → open models → play → results.
//!
//! The principal types:
//! - [`RunPlan`] ([`plan`]): a run, checked, without clap types; built by
//!   `clemhost run` and `doctor` from their options.
//! - [`open_models`] ([`setup`]): "these models behind these plugins with
//!   these limits" as one call, shared with `serve`; returns [`OpenModels`].
//! - [`prepare`]: reads the instances, checks every name that becomes a
//!   path, opens the models: a [`PreparedRun`], before anything is written.
//! - [`play`]: plays the episodes on up to `parallel` worker threads into a
//!   locked run folder ([`crate::results::RunFolder`]). Every episode writes
//!   only into its own directory, so the files are those of a sequential
//!   run (timestamps aside). A failed episode writes `error.json` and the
//!   run goes on; a stop ([`StopToken`], Ctrl-C) cancels running model
//!   calls and leaves finished episodes intact.
//! - [`RunSummary`]: the counts printed at the end.
//! - [`call::PluginModel`]: model calls with deadlines, retries and limits.

pub mod call;
pub mod limits;
pub mod plan;
pub(crate) mod progress;
pub mod setup;
mod stop;

pub use plan::{find_game, GenSettings, InstancesSource, ModelLimits, RunPlan, Shard};
pub use setup::{open_models, OpenModel, OpenModels};
pub use stop::StopToken;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::games::instances::{self, Experiment};
use crate::games::{terminal_input, Episode, EpisodeError, EpisodeInfo, HumanInput, PlayerModel};
use crate::registry::Registry;
use crate::results::names::{check_component, escape_component};
use crate::results::schema::{
    player_models, ErrorRecord, ExperimentRecord, GameRunRecord, InteractionsRecord, Ordered,
    PlayerModelRecord, PlayerModels, RunRecord,
};
use crate::results::{
    self, files, python_seconds, EpisodeFolder, ResultsError, RunFolder, Timestamp,
};
use clemhost_plugin_sdk::GenArgs;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A run ready to play: instances read, names checked, models open.
#[derive(Debug)]
pub struct PreparedRun {
    /// The plan it was made from.
    pub plan: RunPlan,
    /// Where the game lives (`game_path` in run.json).
    pub game_path: String,
    /// The experiments to play (filtered by `-e`), each with at least one instance.
    pub experiments: Vec<Experiment>,
    /// The models, one per model player of the game.
    pub models: OpenModels,
    /// The run folder's name (clemcore's `Model.to_identifier`, model names
    /// escaped where they would not be one path component).
    pub run_dir_name: String,
    /// Episodes played at once.
    pub parallel: usize,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    /// Episodes in the plan.
    pub episodes: usize,
    /// Skipped because they were complete (`--resume`).
    pub skipped: usize,
    /// Played to the end.
    pub completed: usize,
    /// Completed and successful (the game's `Success`).
    pub success: usize,
    /// Completed but aborted by the game's rules.
    pub aborted: usize,
    /// Failed with an error (error.json written).
    pub errors: usize,
    /// Not played because the run was interrupted.
    pub interrupted: usize,
    /// Model calls (answers; retries not counted).
    pub requests: u64,
    /// Tokens reported by the backends.
    pub tokens: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Mean time per plugin call spent in the host (thread, JSON, ABI,
    /// limits) rather than in the plugin, when plugins report their timings.
    pub host_overhead: Option<Duration>,
    /// The run directory.
    pub run_dir: PathBuf,
}

struct Job<'a> {
    experiment: &'a Experiment,
    instance: &'a Map<String, Value>,
    game_id: u64,
}

enum Outcome {
    Skipped,
    Completed {
        success: bool,
        aborted: bool,
        requests: u64,
        tokens: u64,
    },
    Failed {
        requests: u64,
    },
    Interrupted,
}

/// Reads the plan's instances, checks the models against the game, and opens
/// them ([`open_models`]). Nothing is written.
pub fn prepare(
    plan: RunPlan,
    registry: &Registry,
    plugins: &GlobalArgs,
    stop: &StopToken,
) -> Result<PreparedRun> {
    let game = plan.game;
    let file = match &plan.instances {
        InstancesSource::Default => instances::load(game, None),
        InstancesSource::File(p) => instances::load(game, Some(p)),
        InstancesSource::Given(f) => Ok(f.clone()),
    }
    .map_err(Error::wrap)?;
    let origin = file.path.as_ref().map_or_else(
        || format!("{}'s shipped instances", game.name()),
        |p| p.display().to_string(),
    );
    let mut experiments = file.experiments;
    if let Some(name) = &plan.experiment {
        let known: Vec<String> = experiments.iter().map(|e| e.name.clone()).collect();
        experiments.retain(|e| &e.name == name);
        if experiments.is_empty() {
            return Err(Error::msg(format!(
                "{origin} has no experiment '{name}'; its experiments are: {}",
                known.join(", ")
            )));
        }
    }
    for e in experiments.iter().filter(|e| e.instances.is_empty()) {
        tracing::warn!(
            "{origin}: experiment '{}' has an empty \"game_instances\" list; nothing to play for it",
            e.name
        );
    }
    experiments.retain(|e| !e.instances.is_empty());
    if experiments.is_empty() {
        return Err(Error::msg(format!(
            "{origin} has no game instances to play (an empty \"experiments\" list, or only empty \"game_instances\" lists); add instances to the file"
        )));
    }
    let game_path = match &file.path {
        Some(p) => p
            .parent()
            .and_then(|d| d.parent())
            .and_then(|d| std::fs::canonicalize(d).ok())
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        None => format!("<shipped with clemhost>/games/{}", game.name()),
    };

    // Models: one per model player; one model plays every role (self-play).
    let needed = game.model_players();
    let given = plan.models.len();
    let selectors: Vec<String> = if given == needed {
        plan.models.clone()
    } else if given == 1 {
        vec![plan.models[0].clone(); needed]
    } else {
        return Err(Error::msg(format!(
            "{} takes {needed} model{} but {given} were given ({}); pass -m {}",
            game.name(),
            if needed == 1 { "" } else { "s" },
            plan.models.join(", "),
            if needed == 1 {
                "once".to_string()
            } else {
                format!("once (self-play) or {needed} times")
            }
        )));
    };
    let gen_args = GenArgs {
        temperature: plan.gen.temperature,
        max_tokens: plan.gen.max_tokens,
        extra: Map::new(),
    };
    // No more episodes run at once than --parallel allows and the
    // instances hold (shards and --resume play fewer).
    let episodes: usize = experiments.iter().map(|e| e.instances.len()).sum();
    let limits = ModelLimits {
        concurrency: Some(plan.parallel.unwrap_or(usize::MAX).min(episodes).max(1)),
        ..plan.limits.clone()
    };
    let models = open_models(registry, plugins, &selectors, &gen_args, &limits, stop)?;
    let run_dir_name = run_dir_name(&models.models)?;

    let has_human = models
        .models
        .iter()
        .any(|m| matches!(m.player, PlayerModel::Human(_)));
    let mut parallel = plan.parallel.unwrap_or(models.suggested_parallel).max(1);
    if has_human && parallel > 1 {
        tracing::warn!("a human player answers one episode at a time; playing with --parallel 1");
        parallel = 1;
    }
    let mut plan = plan;
    plan.show_progress &= !has_human;
    Ok(PreparedRun {
        plan,
        game_path,
        experiments,
        models,
        run_dir_name,
        parallel,
    })
}

/// clemcore's run folder name for these models, each name escaped into one
/// path component ([`escape_component`]: `org/name` → `org%2Fname`, every
/// ordinary name unchanged). An empty or overlong name is an error naming
/// the registry file and the field.
fn run_dir_name(models: &[OpenModel]) -> Result<String> {
    let mut names = Vec::new();
    for m in models {
        let source = m
            .spec
            .get("lookup_source")
            .and_then(Value::as_str)
            .unwrap_or("the command line");
        let escaped = escape_component(m.name()).map_err(|rule| {
            Error::msg(format!(
                "{source}: model_name {:?} cannot name a results folder: {rule}; fix the registry entry",
                m.name()
            ))
        })?;
        names.push(escaped);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let name = results::run_dir_name(&refs);
    check_component(&name).map_err(|rule| {
        let fix = match rule {
            crate::results::names::NameRule::TooLong => {
                "use models with shorter names (or fewer models)"
            }
            crate::results::names::NameRule::NotNfc => {
                "write the model_name in Unicode NFC form in its registry entry"
            }
            _ => "rename the model in its registry entry",
        };
        Error::msg(format!(
            "the run folder name {name:?} (the model names joined) is not usable: {rule}; {fix}"
        ))
    })?;
    Ok(name)
}

/// The `player_models` record of these models.
pub fn player_models_of(models: &[OpenModel], gen: &GenSettings) -> PlayerModels {
    let mut gen_args = Map::new();
    gen_args.insert("temperature".into(), gen.temperature.into());
    gen_args.insert("max_tokens".into(), gen.max_tokens.into());
    player_models(models.iter().map(|m| PlayerModelRecord {
        model_spec: m.spec.clone(),
        gen_args: gen_args.clone(),
    }))
}

/// Plays every episode of a prepared run into its run folder, which is
/// locked for the whole run (a second run into it fails at once). Returns
/// the summary; only failures to write files (and, with `--resume`,
/// recorded settings that differ from this run's) end the run early.
pub fn play(run: &PreparedRun, stop: &StopToken) -> Result<RunSummary, ResultsError> {
    let wall = Instant::now();
    let plan = &run.plan;
    let game = plan.game;
    let folder = RunFolder::open(&plan.results_dir, &run.run_dir_name)?;
    let layout = folder.layout().clone();
    let pm = player_models_of(&run.models.models, &plan.gen);
    let created = Timestamp::now();

    // Experiment files are checked before anything is written (a refused
    // `--resume` changes nothing) and written before any episode, so
    // parallel episodes never race on them.
    let mut jobs = Vec::new();
    for exp in &run.experiments {
        // No folder this run writes into (or clears) is a link out of the tree.
        results::refuse_link(&layout.run_dir.join(game.name()))?;
        results::refuse_link(&layout.experiment_dir(game.name(), &exp.name))?;
        for inst in &exp.instances {
            if let Some(id) = inst.get("game_id").and_then(Value::as_u64) {
                results::refuse_link(&layout.episode_dir(game.name(), &exp.name, id))?;
            }
        }
        for inst in &exp.instances {
            let game_id = inst
                .get("game_id")
                .and_then(Value::as_u64)
                .expect("instances were checked to have an integer game_id");
            jobs.push(Job {
                experiment: exp,
                instance: inst,
                game_id,
            });
        }
    }
    // run.json counts every episode of the selection, also with --shard, so
    // that the shards' run.json files are equal but for times (they are
    // merged by copying: docs/running-games.md).
    let num_instances = jobs.len() as u64;
    if let Some(shard) = plan.shard {
        let keys: Vec<(&str, u64)> = jobs
            .iter()
            .map(|j| (j.experiment.name.as_str(), j.game_id))
            .collect();
        let mut keep = shard.picks(&keys).into_iter();
        jobs.retain(|_| keep.next().unwrap_or(false));
    }
    let mut experiment_files = Vec::new();
    for exp in &run.experiments {
        if !jobs.iter().any(|j| std::ptr::eq(j.experiment, exp)) {
            continue; // another shard's
        }
        let path = layout
            .experiment_dir(game.name(), &exp.name)
            .join(files::EXPERIMENT);
        let episodes: Vec<EpisodeFolder> = jobs
            .iter()
            .filter(|j| std::ptr::eq(j.experiment, exp))
            .map(|j| folder.episode(game.name(), &exp.name, j.game_id))
            .collect();
        let instances: Vec<&Map<String, Value>> = jobs
            .iter()
            .filter(|j| std::ptr::eq(j.experiment, exp))
            .map(|j| j.instance)
            .collect();
        let recorded = Recorded {
            episodes: &episodes,
            instances: &instances,
        };
        if let Some(record) =
            experiment_record(&path, exp, game.name(), &pm, plan.resume, &recorded)?
        {
            experiment_files.push((path, record));
        }
    }

    // run.json first (without this game's entry), as clemcore does; other
    // games' entries are kept. The folder's lock covers the read and both writes.
    let mut games = folder.read_run()?.map(|r| r.games).unwrap_or_default();
    games.remove(game.name());
    let record = |games: &Ordered<GameRunRecord>| RunRecord {
        clem_version: results::CLEM_VERSION.into(),
        created: created.iso(),
        player_models: pm.clone(),
        games: games.clone(),
    };
    folder.write_run(&record(&games))?;
    let benchmark_start = Timestamp::now();
    for (path, record) in &experiment_files {
        results::write_record(path, record)?;
    }

    let human: HumanInput = terminal_input();
    let progress = progress::Progress::new(jobs.len(), plan.show_progress);
    let outcomes: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<ResultsError>> = Mutex::new(None);
    let workers = run.parallel.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some()
                {
                    break;
                }
                let episode = folder.episode(game.name(), &job.experiment.name, job.game_id);
                let label = format!("{}/instance_{:05}", job.experiment.name, job.game_id);
                let outcome = if stop.is_stopped() {
                    Ok(Outcome::Interrupted)
                } else if plan.resume && episode.is_complete(job.instance) {
                    Ok(Outcome::Skipped)
                } else {
                    let info = EpisodeInfo {
                        game_name: game.name().into(),
                        experiment_name: job.experiment.name.clone(),
                        game_id: job.game_id,
                        results_folder: run.run_dir_name.clone(),
                        player_models: pm.clone(),
                    };
                    play_episode(run, job, info, &episode, human.clone(), stop)
                };
                match outcome {
                    Ok(o) => {
                        progress.finished(&label, progress::what(&o));
                        *outcomes[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(o);
                    }
                    Err(e) => {
                        stop.stop();
                        *first_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                }
            });
        }
    });
    progress.done();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }

    let mut summary = RunSummary {
        episodes: jobs.len(),
        run_dir: layout.run_dir.clone(),
        ..RunSummary::default()
    };
    for o in outcomes {
        match o.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Outcome::Skipped) => summary.skipped += 1,
            Some(Outcome::Completed {
                success,
                aborted,
                requests,
                tokens,
            }) => {
                summary.completed += 1;
                summary.success += usize::from(success);
                summary.aborted += usize::from(aborted);
                summary.requests += requests;
                summary.tokens += tokens;
            }
            Some(Outcome::Failed { requests }) => {
                summary.errors += 1;
                summary.requests += requests;
            }
            Some(Outcome::Interrupted) | None => summary.interrupted += 1,
        }
    }
    let stats = &run.models.stats;
    summary.retries = stats.retries.load(Ordering::Relaxed);
    let timed = stats.timed_calls.load(Ordering::Relaxed);
    let host = stats.host_micros.load(Ordering::Relaxed);
    let plugin = stats.plugin_micros.load(Ordering::Relaxed);
    summary.host_overhead = host
        .saturating_sub(plugin)
        .checked_div(timed)
        .map(Duration::from_micros);
    let benchmark_end = Timestamp::now();
    let took = benchmark_end.since(&benchmark_start);
    games.insert(
        game.name(),
        GameRunRecord {
            game_path: run.game_path.clone(),
            benchmark_start: benchmark_start.iso(),
            benchmark_end: benchmark_end.iso(),
            duration: clemhost_pyfacts::time::timedelta(took),
            duration_seconds: python_seconds(took),
            num_instances,
        },
    );
    folder.write_run(&record(&games))?;
    summary.wall = wall.elapsed();
    Ok(summary)
}

/// One experiment's episode folders in this run and the instances they
/// must hold (in the same order).
struct Recorded<'a> {
    episodes: &'a [EpisodeFolder],
    instances: &'a [&'a Map<String, Value>],
}

/// The `experiment.json` to write, or `None` when the file already records
/// the same settings (it is then kept, as clemcore keeps it).
///
/// Without `--resume` every episode is played again, so a file with other
/// settings (another `-t`, another model entry) is rewritten. With
/// `--resume` the finished episodes were played with the recorded settings,
/// so differing ones are refused: mixing them would make the results lie.
/// When the file is missing or unreadable, the settings each finished
/// episode recorded in its `interactions.json` are compared instead.
fn experiment_record(
    path: &std::path::Path,
    exp: &Experiment,
    game_name: &str,
    pm: &PlayerModels,
    resume: bool,
    recorded: &Recorded<'_>,
) -> Result<Option<ExperimentRecord>, ResultsError> {
    let mut experiment = exp.meta.clone();
    for k in ["timestamp", "game_name", "player_models"] {
        experiment.remove(k);
    }
    let unreadable = match results::read_record::<ExperimentRecord>(path) {
        Ok(recorded) => {
            let same_models = &recorded.player_models == pm;
            if same_models && recorded.experiment == experiment {
                return Ok(None);
            }
            if resume {
                let what = if same_models {
                    "the experiment's keys in the instances file"
                } else {
                    "the models or generation arguments (player_models)"
                };
                return Err(ResultsError::Settings(format!(
                    "{}: the finished episodes were played with other settings ({what} differ); --resume would mix them. Run without --resume to play every episode again, or pass another -r DIR",
                    path.display()
                )));
            }
            None
        }
        Err(_) if std::fs::symlink_metadata(path).is_err() => None, // no file: nothing to warn about
        Err(e) => Some(e),
    };
    if resume {
        // No readable record of the settings (deleted, emptied, truncated):
        // each finished episode's interactions.json records its own, and
        // they must be this run's, or the results would mix settings.
        for (episode, instance) in recorded.episodes.iter().zip(recorded.instances) {
            if !episode.is_complete(instance) {
                continue;
            }
            let file = episode.dir.join(files::INTERACTIONS);
            let Ok(interactions) = results::read_record::<InteractionsRecord>(&file) else {
                continue;
            };
            if &interactions.player_models != pm {
                return Err(ResultsError::Settings(format!(
                    "{}: this finished episode was played with other settings (the models or generation arguments, player_models, differ), and {} does not record the experiment's; --resume would mix them. Run without --resume to play every episode again, or pass another -r DIR",
                    file.display(),
                    path.display()
                )));
            }
        }
    }
    if let Some(e) = unreadable {
        tracing::warn!("{e}; it is written anew with this run's settings");
    }
    Ok(Some(ExperimentRecord {
        experiment,
        timestamp: Timestamp::now().iso(),
        game_name: game_name.into(),
        player_models: pm.clone(),
    }))
}

fn play_episode(
    run: &PreparedRun,
    job: &Job<'_>,
    info: EpisodeInfo,
    folder: &EpisodeFolder,
    human: HumanInput,
    stop: &StopToken,
) -> Result<Outcome, ResultsError> {
    folder.make_room()?;
    folder.clear()?;
    folder.write_instance(job.instance)?;
    let models: Vec<PlayerModel> = run.models.models.iter().map(|m| m.player.clone()).collect();
    let game = run.plan.game;
    let mut episode = Episode::new(info, human, stop.clone());
    match game.play(job.instance, &models, &mut episode) {
        Ok(()) => {
            let interactions = episode.interactions(true);
            folder.write_finished(&interactions, &episode.requests_files(true))?;
            let as_value = serde_json::to_value(&interactions).expect("a record serialises");
            let scores = game.score(&as_value).ok();
            let flag = |k: &str| {
                scores
                    .as_ref()
                    .and_then(|s| s.episode_scores.get(k))
                    .and_then(Value::as_u64)
                    == Some(1)
            };
            Ok(Outcome::Completed {
                success: flag("Success"),
                aborted: flag("Aborted"),
                requests: episode.requests(),
                tokens: episode.tokens(),
            })
        }
        Err(EpisodeError::Interrupted) => Ok(Outcome::Interrupted),
        Err(e) => {
            tracing::warn!(
                "episode {}/instance_{:05} failed: {}",
                job.experiment.name,
                job.game_id,
                // A backend's error quotes the server's body.
                crate::error::escape_for_one_line(&e.to_string())
            );
            let error = ErrorRecord {
                timestamp: Timestamp::now().iso(),
                error: e.type_name(),
                message: e.to_string(),
                kind: match &e {
                    EpisodeError::Backend { error, .. } => Some(error.kind.as_str().into()),
                    _ => None,
                },
            };
            folder.write_failed(&episode.requests_files(false), &error)?;
            Ok(Outcome::Failed {
                requests: episode.requests(),
            })
        }
    }
}
