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
    /// The most calls the run can have in flight on one model (the
    /// episodes played at once); `None`: not known. Handed to each plugin
    /// model as [`clemhost_plugin_sdk::ModelConfig::concurrency`], capped by
    /// the model's own bounds, so local backends size their memory by it.
    pub concurrency: Option<usize>,
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
    /// `--shard K/N`: play only this shard's episodes.
    pub shard: Option<Shard>,
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
            .field("shard", &self.shard)
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

/// `--shard K/N`: shard `K` (counted from 0) of `N`.
///
/// The episodes of a run, sorted by (game, experiment, `game_id`), are
/// dealt out like cards: the episode at position `i` of that list belongs
/// to shard `i mod N`. Every episode is in exactly one shard, the shards
/// differ by at most one episode, and each game (also a slow one such as
/// adventuregame) is spread evenly over the shards. The list depends only
/// on what the command selects (`-g`, `-i`, `-e`), not on the order of the
/// instances file or of the games, so every shard of one command computes
/// the same deal. See docs/running-games.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// `K`: 0 to `count - 1`.
    pub index: usize,
    /// `N`: at least 1.
    pub count: usize,
}

impl Shard {
    /// Which items this shard keeps: `keys` are the items' (game,
    /// experiment, `game_id`), in any order; the answer is index for index.
    pub fn picks<K: Ord>(&self, keys: &[K]) -> Vec<bool> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        let mut keep = vec![false; keys.len()];
        for (position, &i) in order.iter().enumerate() {
            keep[i] = position % self.count == self.index;
        }
        keep
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `K/N` with `0 <= K < N`; the message says what is wrong and how to
    /// write it (K counts from 0, as `SLURM_ARRAY_TASK_ID` of `--array=0-7`).
    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s.split_once('/').and_then(|(k, n)| {
            Some((
                k.trim().parse::<usize>().ok()?,
                n.trim().parse::<usize>().ok()?,
            ))
        });
        match parsed {
            Some((_, 0)) => Err(format!("{s}: N must be at least 1")),
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            Some((index, count)) => Err(format!(
                "{s}: K counts from 0, so shard {index} of {count} does not exist; use 0 to {} (with sbatch --array=0-{}, pass $SLURM_ARRAY_TASK_ID/{count})",
                count - 1,
                count - 1
            )),
            None => Err(format!(
                "{s}: expected K/N, two whole numbers with 0 <= K < N (e.g. 0/8 ... 7/8)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_deal_the_sorted_episodes_like_cards() {
        let keys = [("b", 0), ("a", 2), ("a", 0), ("a", 1), ("b", 1)];
        let picks = |k| Shard { index: k, count: 2 }.picks(&keys);
        // sorted: a0 a1 a2 b0 b1 -> shard 0 takes a0 a2 b1, shard 1 a1 b0
        assert_eq!(picks(0), [false, true, true, false, true]);
        assert_eq!(picks(1), [true, false, false, true, false]);
    }

    #[test]
    fn shard_k_counts_from_zero_and_says_so() {
        assert_eq!("3/8".parse::<Shard>(), Ok(Shard { index: 3, count: 8 }));
        let e = "8/8".parse::<Shard>().expect_err("8 of 8");
        assert!(e.contains("counts from 0") && e.contains("0 to 7"), "{e}");
        assert!("1/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().expect_err("x").contains("K/N"));
    }
}
