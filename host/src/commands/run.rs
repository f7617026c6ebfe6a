//! `clemhost run`: play a game's instances with one or more models.

use crate::clembench::{self, discover, python, ClembenchPlan};
use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::games;
use crate::registry::Registry;
use crate::runner::call::CallSettings;
use crate::runner::limits::{self, RetryPolicy};
use crate::runner::{
    self, GenSettings, InstancesSource, ModelLimits, RunPlan, RunSummary, StopToken,
};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Options of this command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The game to play: a native game (hellogame), a clembench game found
    /// as clemcore finds them (e.g. taboo), `all`, or clemcore's JSON
    /// selector (`'{"benchmark": ["2.0"]}'`). Repeat for several.
    #[arg(short = 'g', long = "game", value_name = "GAME", required = true)]
    pub games: Vec<String>,
    /// Look for clembench games (folders with clemgame.json) in DIR first
    /// (repeatable); see docs/clembench-games.md for the search order.
    #[arg(long = "games-dir", value_name = "DIR")]
    pub games_dirs: Vec<PathBuf>,
    /// The Python interpreter with clemcore for clembench games (default
    /// $CLEMHOST_PYTHON, else python3 on PATH).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// A model: a registry name (e.g. echo-1), `mock`/`programmatic`,
    /// `human`/`terminal`, or a JSON selector. Repeat for each player of a
    /// multi-player game; one model plays every role.
    #[arg(short = 'm', long = "model", value_name = "MODEL", required = true)]
    pub models: Vec<String>,
    /// Sampling temperature.
    #[arg(short = 't', long = "temperature", default_value_t = 0.0)]
    pub temperature: f64,
    /// The most tokens per answer.
    #[arg(short = 'l', long = "max-tokens", default_value_t = 300)]
    pub max_tokens: u32,
    /// Play only this experiment.
    #[arg(short = 'e', long = "experiment", value_name = "NAME")]
    pub experiment: Option<String>,
    /// A clembench-format instances file (a path, or a name under
    /// games/<game>/in/); default games/<game>/in/instances.json.
    #[arg(short = 'i', long = "instances", value_name = "FILE")]
    pub instances: Option<PathBuf>,
    /// Where results go.
    #[arg(
        short = 'r',
        long = "results-dir",
        value_name = "DIR",
        default_value = "results"
    )]
    pub results_dir: PathBuf,
    /// Episodes played at once (default: what the models' plugins allow).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Skip episodes that finished earlier (their files are all there and
    /// parse); refused when the recorded settings differ from this run's.
    #[arg(long)]
    pub resume: bool,
    /// Play only shard K of N (K counts from 0): the episodes sorted by
    /// (game, experiment, game_id), the i-th going to shard i mod N. Give
    /// each shard its own -r (shards on one -r are refused by its lock),
    /// then copy the trees into one directory. For Slurm: `sbatch
    /// --array=0-7` with `--shard $SLURM_ARRAY_TASK_ID/8 -r
    /// shards/$SLURM_ARRAY_TASK_ID`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<runner::Shard>,
    /// The most model calls in flight per backend.
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<usize>,
    /// Attempts per model call; rate limits, timeouts and unavailable
    /// services are tried again with exponential back-off.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,
    /// The first back-off delay in milliseconds (doubled per attempt, with jitter).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub retry_delay_ms: u64,
    /// Seconds a model call may take before it is cancelled (and retried);
    /// from 0.001 to 604800 (7 days).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// No progress output.
    #[arg(long)]
    pub no_progress: bool,
}

impl RunArgs {
    /// Checks the options and turns them into a [`RunPlan`]: numbers in
    /// their bounds (a usage error naming the option otherwise), the game known.
    pub fn plan(&self, global: &GlobalArgs) -> Result<RunPlan> {
        let usage = |m: String| Error::with_exit(Exit::Usage, m);
        let (gen, limits) = self.plan_settings()?;
        let [game] = self.games.as_slice() else {
            return Err(usage(format!(
                "-g {}: several games at once are played for clembench games only",
                self.games.join(" -g ")
            )));
        };
        Ok(RunPlan {
            game: runner::find_game(game)?,
            instances: match &self.instances {
                Some(f) => InstancesSource::File(f.clone()),
                None => InstancesSource::Default,
            },
            experiment: self.experiment.clone(),
            models: self.models.clone(),
            gen,
            limits,
            results_dir: self.results_dir.clone(),
            parallel: self.parallel,
            resume: self.resume,
            shard: self.shard,
            show_progress: !self.no_progress && !global.quiet,
        })
    }

    /// The generation arguments and call limits, checked (a usage error
    /// naming the option otherwise).
    fn plan_settings(&self) -> Result<(GenSettings, ModelLimits)> {
        let usage = |m: String| Error::with_exit(Exit::Usage, m);
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(usage(format!(
                "-t {} is not a temperature; use a number >= 0",
                self.temperature
            )));
        }
        let timeout = self
            .timeout
            .map(limits::timeout_from_secs)
            .transpose()
            .map_err(usage)?;
        if self.parallel == Some(0) || self.max_concurrent == Some(0) || self.retries == 0 {
            return Err(usage(
                "--parallel, --max-concurrent and --retries must be at least 1".into(),
            ));
        }
        Ok((
            GenSettings {
                temperature: self.temperature,
                max_tokens: self.max_tokens,
            },
            ModelLimits {
                calls: CallSettings {
                    retry: RetryPolicy {
                        tries: self.retries,
                        base_delay: Duration::from_millis(self.retry_delay_ms),
                        ..RetryPolicy::default()
                    },
                    timeout,
                },
                max_concurrent_per_backend: self.max_concurrent,
                // Known once the instances are read (runner::prepare).
                concurrency: None,
            },
        ))
    }
}

/// Runs the command.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> Result<Exit> {
    if let Some(plan) = clembench_plan(global, args)? {
        return run_clembench(global, &plan);
    }
    let plan = args.plan(global)?;
    let registry = Registry::load(global)?;
    let stop = StopToken::ctrl_c();
    let summary = play_plan(plan, &registry, global, &stop)?;
    print_summary(&summary);
    if summary.interrupted > 0 {
        return Err(Error::msg(format!(
            "interrupted: {} episode(s) not played; run the same command with --resume to finish them",
            summary.interrupted
        )));
    }
    if summary.errors > 0 {
        eprintln!(
            "{} episode(s) failed; see error.json in their directories under {}",
            summary.errors,
            summary.run_dir.display()
        );
        return Ok(Exit::EpisodesFailed);
    }
    Ok(Exit::Success)
}

/// The clembench plan when `-g` names no native game (a native name wins:
/// docs/clembench-games.md), `None` for a native game.
fn clembench_plan(global: &GlobalArgs, args: &RunArgs) -> Result<Option<ClembenchPlan>> {
    if let [one] = args.games.as_slice() {
        if games::find_game(one).is_some() {
            return Ok(None);
        }
    }
    let found = discover::discover(&discover::SearchPaths::from_env(&args.games_dirs))?;
    let mut specs: Vec<discover::GameSpec> = Vec::new();
    for g in &args.games {
        if games::find_game(g).is_some() {
            return Err(Error::with_exit(
                Exit::Usage,
                format!("-g {g} is a native game; play it in a run of its own"),
            ));
        }
        let picked = discover::select(&found, &discover::Selector::parse(g));
        if picked.is_empty() {
            let mut known: Vec<&str> = games::all_games().iter().map(|g| g.name()).collect();
            known.extend(found.iter().map(|s| s.name()));
            return Err(Error::msg(format!(
                "unknown game '{g}'; known games: {} (clembench games are searched as clemcore does, plus --games-dir DIR: see docs/clembench-games.md)",
                known.join(", ")
            )));
        }
        for s in picked {
            if !s.has_master() {
                return Err(Error::msg(format!(
                    "{}: {} has no master.py, so it cannot be played",
                    s.source.display(),
                    s.name()
                )));
            }
            if !specs.iter().any(|have| have.name() == s.name()) {
                specs.push(s);
            }
        }
    }
    let base = args.plan_settings()?;
    Ok(Some(ClembenchPlan {
        specs,
        instances: args.instances.as_ref().map(|p| p.display().to_string()),
        experiment: args.experiment.clone(),
        models: args.models.clone(),
        gen: base.0,
        limits: base.1,
        results_dir: args.results_dir.clone(),
        python: python::choose(args.python.as_deref()),
        parallel: args.parallel.unwrap_or(1),
        resume: args.resume,
        shard: args.shard,
        show_progress: !args.no_progress && !global.quiet,
    }))
}

fn run_clembench(global: &GlobalArgs, plan: &ClembenchPlan) -> Result<Exit> {
    let registry = Registry::load(global)?;
    let stop = StopToken::ctrl_c();
    let s = clembench::play(plan, &registry, global, &stop)?;
    for dir in &s.run_dirs {
        println!(
            "results: {}",
            crate::error::escape_for_terminal(&dir.display().to_string())
        );
    }
    let rows = [
        ("episodes", s.episodes.to_string()),
        ("skipped (complete)", s.skipped.to_string()),
        ("completed", s.completed.to_string()),
        ("errors", s.errors.to_string()),
        ("interrupted", s.interrupted.to_string()),
        ("requests", s.requests.to_string()),
        ("retries", s.retries.to_string()),
        ("tokens", s.tokens.to_string()),
        ("wall time", format!("{:.2} s", s.wall.as_secs_f64())),
    ];
    for (k, v) in rows {
        println!("  {k:<20} {v:>10}");
    }
    if stop.is_stopped() || s.interrupted > 0 {
        return Err(Error::msg(format!(
            "interrupted: {} episode(s) not played; run the same command with --resume to finish them",
            s.interrupted
        )));
    }
    if s.errors > 0 {
        eprintln!(
            "{} episode(s) failed; see error.json in their directories",
            s.errors
        );
        return Ok(Exit::EpisodesFailed);
    }
    Ok(Exit::Success)
}

/// The pipeline after the options: prepare (instances, names, models), then play.
pub fn play_plan(
    plan: RunPlan,
    registry: &Registry,
    global: &GlobalArgs,
    stop: &StopToken,
) -> Result<RunSummary> {
    let prepared = runner::prepare(plan, registry, global, stop)?;
    tracing::info!(
        "playing {} with {} episode(s) at once",
        prepared.plan.game.name(),
        prepared.parallel
    );
    runner::play(&prepared, stop).map_err(Error::wrap)
}

fn print_summary(s: &RunSummary) {
    let rows = [
        ("episodes", s.episodes.to_string()),
        ("skipped (complete)", s.skipped.to_string()),
        ("completed", s.completed.to_string()),
        ("success", s.success.to_string()),
        ("lost", (s.completed - s.success - s.aborted).to_string()),
        ("aborted", s.aborted.to_string()),
        ("errors", s.errors.to_string()),
        ("interrupted", s.interrupted.to_string()),
        ("requests", s.requests.to_string()),
        ("retries", s.retries.to_string()),
        ("tokens", s.tokens.to_string()),
        ("wall time", format!("{:.2} s", s.wall.as_secs_f64())),
    ];
    println!(
        "results: {}",
        crate::error::escape_for_terminal(&s.run_dir.display().to_string())
    );
    for (k, v) in rows {
        println!("  {k:<20} {v:>10}");
    }
    if let Some(o) = s.host_overhead {
        println!(
            "  {:<20} {:>10}",
            "host overhead/call",
            format!("{} us", o.as_micros())
        );
    }
}
