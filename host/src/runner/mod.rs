//! Playing a game's episodes and writing their results.
//!
//! The principal types:
//! - [`RunPlan`]: everything a run needs, checked before any episode starts
//!   (built by `clemhost run` through [`setup`]).
//! - [`run`]: plays the plan's episodes on up to `parallel` worker threads.
//!   Every episode writes only into its own directory, so the files are the
//!   same as those of a sequential run (timestamps aside). A failed episode
//!   writes `error.json` and the run goes on; a stop request (Ctrl-C) lets
//!   running model calls be cancelled and leaves finished episodes intact.
//! - [`RunSummary`]: the counts printed at the end.
//! - [`call::PluginModel`]: model calls with deadlines, retries and limits.

pub mod call;
pub mod limits;
mod progress;
pub mod setup;

use crate::games::instances::Experiment;
use crate::games::{
    terminal_input, Episode, EpisodeError, EpisodeInfo, Game, HumanInput, PlayerModel,
};
use crate::results::{self, files, python_seconds, ResultsError, ResultsLayout, Timestamp};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One model as given on the command line, resolved.
#[derive(Debug, Clone)]
pub struct PlanModel {
    /// The resolved registry entry, as recorded in `player_models`.
    pub spec: Map<String, Value>,
    /// Who answers.
    pub model: PlayerModel,
}

/// Everything a run needs.
pub struct RunPlan {
    /// The game.
    pub game: &'static dyn Game,
    /// Where the game lives (`game_path` in run.json).
    pub game_path: String,
    /// The experiments to play (already filtered by `-e`).
    pub experiments: Vec<Experiment>,
    /// The models, one per model player of the game.
    pub models: Vec<PlanModel>,
    /// `gen_args` as recorded (`temperature`, `max_tokens`).
    pub gen_args: Value,
    /// The results directory (`-r`).
    pub results_dir: PathBuf,
    /// Episodes played at once.
    pub parallel: usize,
    /// Skip episodes that have `completed.json`.
    pub resume: bool,
    /// Print progress (bar on a terminal, lines otherwise).
    pub show_progress: bool,
    /// Call totals, shared with the plugin models.
    pub stats: Arc<call::CallStats>,
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

/// The `player_models` object: `{"0": {"model_spec", "gen_args"}, ...}`.
pub fn player_models(models: &[PlanModel], gen_args: &Value) -> Value {
    let mut m = Map::new();
    for (i, pm) in models.iter().enumerate() {
        m.insert(
            i.to_string(),
            json!({"model_spec": pm.spec, "gen_args": gen_args}),
        );
    }
    Value::Object(m)
}

/// Plays every episode of the plan. Returns the summary; only failures to
/// write files end the run early (they affect every episode alike).
pub fn run(plan: &RunPlan, stop: Arc<AtomicBool>) -> Result<RunSummary, ResultsError> {
    let wall = Instant::now();
    let names: Vec<&str> = plan.models.iter().map(|m| m.model.name()).collect();
    let run_dir_name = results::run_dir_name(&names);
    let layout = ResultsLayout::new(&plan.results_dir, &run_dir_name);
    let pm = player_models(&plan.models, &plan.gen_args);
    let created = Timestamp::now();
    let game = plan.game;

    // run.json first (without this game's entry), as clemcore does; other games' entries are kept.
    let mut games_entry = read_games_entry(&layout);
    games_entry.remove(game.name());
    write_run_file(&layout, &created, &pm, &games_entry)?;
    let benchmark_start = Timestamp::now();

    // Experiment files are written once, before any episode, so parallel
    // episodes never race on them.
    let mut jobs = Vec::new();
    for exp in &plan.experiments {
        let exp_file = layout
            .experiment_dir(game.name(), &exp.name)
            .join(files::EXPERIMENT);
        if !exp_file.exists() {
            let mut meta = exp.meta.clone();
            meta.insert("timestamp".into(), Timestamp::now().iso().into());
            meta.insert("game_name".into(), game.name().into());
            meta.insert("player_models".into(), pm.clone());
            results::write_json(&exp_file, &Value::Object(meta))?;
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

    let human: HumanInput = terminal_input();
    let progress = progress::Progress::new(jobs.len(), plan.show_progress);
    let outcomes: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<ResultsError>> = Mutex::new(None);
    let workers = plan.parallel.clamp(1, jobs.len().max(1));
    let all_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Passes a stop on to the model calls in flight that have no deadline.
        s.spawn(|| {
            while !all_done.load(Ordering::Relaxed) {
                if stop.load(Ordering::Relaxed) {
                    plan.stats.cancel_in_flight.store(
                        clemhost_plugin_sdk::abi::CANCEL_REQUESTED,
                        Ordering::Relaxed,
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut handles = Vec::new();
        for _ in 0..workers {
            handles.push(s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some()
                {
                    break;
                }
                let dir = layout.episode_dir(game.name(), &job.experiment.name, job.game_id);
                let label = format!("{}/instance_{:05}", job.experiment.name, job.game_id);
                let outcome = if stop.load(Ordering::Relaxed) {
                    Ok(Outcome::Interrupted)
                } else if plan.resume && dir.join(files::COMPLETED).exists() {
                    Ok(Outcome::Skipped)
                } else {
                    let info = EpisodeInfo {
                        game_name: game.name().into(),
                        experiment_name: job.experiment.name.clone(),
                        game_id: job.game_id,
                        results_folder: run_dir_name.clone(),
                        player_models: pm.clone(),
                    };
                    play_episode(plan, job, info, &dir, human.clone(), stop.clone())
                };
                match outcome {
                    Ok(o) => {
                        progress.finished(&label, &o);
                        *outcomes[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(o);
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        *first_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                }
            }));
        }
        for h in handles {
            let _ = h.join();
        }
        all_done.store(true, Ordering::Relaxed);
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
    summary.retries = plan.stats.retries.load(Ordering::Relaxed);
    let timed = plan.stats.timed_calls.load(Ordering::Relaxed);
    let host = plan.stats.host_micros.load(Ordering::Relaxed);
    let plugin = plan.stats.plugin_micros.load(Ordering::Relaxed);
    summary.host_overhead = host
        .saturating_sub(plugin)
        .checked_div(timed)
        .map(Duration::from_micros);
    let benchmark_end = Timestamp::now();
    let took = benchmark_end.since(&benchmark_start);
    games_entry.insert(
        game.name().into(),
        json!({
            "game_path": plan.game_path,
            "benchmark_start": benchmark_start.iso(),
            "benchmark_end": benchmark_end.iso(),
            "duration": clemhost_pyfacts::time::timedelta(took),
            "duration_seconds": python_seconds(took),
            "num_instances": summary.episodes,
        }),
    );
    write_run_file(&layout, &created, &pm, &games_entry)?;
    summary.wall = wall.elapsed();
    Ok(summary)
}

fn read_games_entry(layout: &ResultsLayout) -> Map<String, Value> {
    results::read_json(&layout.run_file())
        .ok()
        .and_then(|v| v.get("games").and_then(Value::as_object).cloned())
        .unwrap_or_default()
}

fn write_run_file(
    layout: &ResultsLayout,
    created: &Timestamp,
    pm: &Value,
    games: &Map<String, Value>,
) -> Result<(), ResultsError> {
    results::write_json(
        &layout.run_file(),
        &json!({
            "clem_version": results::CLEM_VERSION,
            "created": created.iso(),
            "player_models": pm,
            "games": games,
        }),
    )
}

/// Files an earlier run may have left in an episode directory.
fn clear_episode_dir(dir: &std::path::Path) -> Result<(), ResultsError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name == files::INTERACTIONS
            || name == files::COMPLETED
            || name == files::ERROR
            || name == files::SCORES
            || name == files::TRANSCRIPT
            || name.ends_with(".requests.json")
            || name == "requests.json"
            || (name.starts_with('.') && name.ends_with(".tmp"));
        if stale {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|source| ResultsError::Write { path: p, source })?;
        }
    }
    Ok(())
}

fn play_episode(
    plan: &RunPlan,
    job: &Job<'_>,
    info: EpisodeInfo,
    dir: &std::path::Path,
    human: HumanInput,
    stop: Arc<AtomicBool>,
) -> Result<Outcome, ResultsError> {
    clear_episode_dir(dir)?;
    results::write_json(
        &dir.join(files::INSTANCE),
        &Value::Object(job.instance.clone()),
    )?;
    let models: Vec<PlayerModel> = plan.models.iter().map(|m| m.model.clone()).collect();
    let mut episode = Episode::new(info, human, stop);
    let played = plan.game.play(job.instance, &models, &mut episode);
    match played {
        Ok(()) => {
            let interactions = episode.interactions(true);
            results::write_json(&dir.join(files::INTERACTIONS), &interactions)?;
            for (name, content) in episode.requests_files(true) {
                results::write_json(&dir.join(name), &content)?;
            }
            results::write_json(
                &dir.join(files::COMPLETED),
                &json!({"timestamp": Timestamp::now().iso()}),
            )?;
            let scores = plan.game.score(&interactions).ok();
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
                "episode {}/instance_{:05} failed: {e}",
                job.experiment.name,
                job.game_id
            );
            for (name, content) in episode.requests_files(false) {
                results::write_json(&dir.join(name), &content)?;
            }
            let mut err = Map::new();
            err.insert("timestamp".into(), Timestamp::now().iso().into());
            err.insert("error".into(), e.type_name().into());
            err.insert("message".into(), e.to_string().into());
            if let EpisodeError::Backend { error, .. } = &e {
                err.insert("kind".into(), error.kind.as_str().into());
            }
            results::write_json(&dir.join(files::ERROR), &Value::Object(err))?;
            Ok(Outcome::Failed {
                requests: episode.requests(),
            })
        }
    }
}
