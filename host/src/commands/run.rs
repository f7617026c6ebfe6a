//! `clemhost run`: play a game's instances with one or more models.

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::runner::{self, setup::RunOptions, RunSummary};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Options of this command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The game to play (e.g. hellogame).
    #[arg(short = 'g', long = "game", value_name = "GAME")]
    pub game: String,
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
    /// Skip episodes that already have completed.json.
    #[arg(long)]
    pub resume: bool,
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
    /// Seconds a model call may take before it is cancelled (and retried).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// No progress output.
    #[arg(long)]
    pub no_progress: bool,
}

/// The flag Ctrl-C sets. The handler is installed once per process; a
/// second Ctrl-C ends the process at once (files are written atomically,
/// so nothing is left half-written).
fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: stopping now");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: finishing the files of running episodes (Ctrl-C again to quit at once)");
        });
        if let Err(e) = installed {
            tracing::warn!("Ctrl-C handling is not available: {e}");
        }
        flag
    })
    .clone()
}

/// Runs the command.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> Result<Exit> {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(Error::with_exit(
            Exit::Usage,
            format!(
                "-t {} is not a temperature; use a number >= 0",
                args.temperature
            ),
        ));
    }
    let timeout = match args.timeout {
        Some(t) if !(t.is_finite() && t > 0.0) => {
            return Err(Error::with_exit(
                Exit::Usage,
                format!("--timeout {t} must be a positive number of seconds"),
            ))
        }
        Some(t) => Some(Duration::from_secs_f64(t)),
        None => None,
    };
    if args.parallel == Some(0) || args.max_concurrent == Some(0) || args.retries == 0 {
        return Err(Error::with_exit(
            Exit::Usage,
            "--parallel, --max-concurrent and --retries must be at least 1",
        ));
    }
    let opts = RunOptions {
        game: args.game.clone(),
        models: args.models.clone(),
        temperature: args.temperature,
        max_tokens: args.max_tokens,
        experiment: args.experiment.clone(),
        instances: args.instances.clone(),
        results_dir: args.results_dir.clone(),
        parallel: args.parallel,
        resume: args.resume,
        max_concurrent: args.max_concurrent,
        tries: args.retries,
        retry_base: Duration::from_millis(args.retry_delay_ms),
        timeout,
        show_progress: !args.no_progress && !global.quiet,
    };
    let stop = stop_flag();
    let plan = runner::setup::plan(global, &opts, stop.clone())?;
    tracing::info!(
        "playing {} with {} episode(s) at once",
        plan.game.name(),
        plan.parallel
    );
    let summary = runner::run(&plan, stop.clone()).map_err(|e| Error::msg(e.to_string()))?;
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
    println!("results: {}", s.run_dir.display());
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
