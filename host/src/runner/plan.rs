//! The checked description of a run: what to play, with which models, under
//! which limits, into which folder. `commands/run.rs` (and `doctor`) build
//! one from their command-line options; nothing downstream sees clap.

use super::call::CallSettings;
use crate::error::{Error, Result};
use crate::games::instances::InstanceFile;
use crate::games::{self, Game};
use std::path::PathBuf;

/// Where a run's instances come from.
#[derive(Clone, Debug)]
pub enum InstancesSource {
    /// `games/<game>/in/instances.json`, else the copy shipped with clemhost.
    Default,
    /// `-i FILE`: a path, or a name under `games/<game>/in/`.
    File(PathBuf),
    /// Instances already read (e.g. `doctor`'s one episode).
    Given(InstanceFile),
}

/// The generation arguments recorded and sent with every call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenSettings {
    /// `-t`: 0 or more, finite.
    pub temperature: f64,
    /// `-l`.
    pub max_tokens: u32,
}

/// Limits on the calls of every model of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelLimits {
    /// Retries and the deadline of each call.
    pub calls: CallSettings,
    /// `--max-concurrent`: calls in flight per backend (`None`: no limit
    /// beyond the models' own).
    pub max_concurrent_per_backend: Option<usize>,
}

/// A run, checked.
#[derive(Clone)]
pub struct RunPlan {
    /// The game.
    pub game: &'static dyn Game,
    /// Its instances.
    pub instances: InstancesSource,
    /// `-e`: play only this experiment.
    pub experiment: Option<String>,
    /// `-m`, in order: registry names, built-in players or JSON selectors.
    pub models: Vec<String>,
    /// Generation arguments.
    pub gen: GenSettings,
    /// Limits on model calls.
    pub limits: ModelLimits,
    /// `-r`.
    pub results_dir: PathBuf,
    /// `--parallel` (`None`: what the models' plugins suggest).
    pub parallel: Option<usize>,
    /// `--resume`: skip episodes whose files are all there and parse.
    pub resume: bool,
    /// Print progress (a bar on a terminal, lines otherwise).
    pub show_progress: bool,
}

impl std::fmt::Debug for RunPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPlan")
            .field("game", &self.game.name())
            .field("instances", &self.instances)
            .field("experiment", &self.experiment)
            .field("models", &self.models)
            .field("gen", &self.gen)
            .field("limits", &self.limits)
            .field("results_dir", &self.results_dir)
            .field("parallel", &self.parallel)
            .field("resume", &self.resume)
            .finish()
    }
}

/// The game called `name`, or an error that lists the known ones.
pub fn find_game(name: &str) -> Result<&'static dyn Game> {
    games::find_game(name).ok_or_else(|| {
        let known: Vec<&str> = games::all_games().iter().map(|g| g.name()).collect();
        Error::msg(format!(
            "unknown game '{name}'; known games: {}",
            known.join(", ")
        ))
    })
}
