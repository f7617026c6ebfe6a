//! The command line: a thin clap tree. Each command's options live with the
//! command in `commands/`, and doc comments are the help text.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Benchmark chat LLMs with clembench dialogue games. Model backends are
/// plugins (`lib<name>_api.so`) found in plugin directories.
#[derive(Debug, Parser)]
#[command(name = "clemhost", version, propagate_version = true)]
pub struct Cli {
    /// Options every command understands.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Look for plugins in DIR first (repeatable; before $CLEMHOST_PLUGIN_PATH,
    /// ./plugins and the directory of the clemhost executable).
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Read model entries from FILE first (repeatable; before
    /// ./model_registry.json and the registry shipped with clemhost).
    #[arg(long = "registry", value_name = "FILE", global = true)]
    pub registries: Vec<PathBuf>,
    /// Leave out the registry shipped with clemhost (for reproducible runs).
    #[arg(long, global = true)]
    pub no_default_registry: bool,
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find, inspect and scaffold backend plugins.
    #[command(subcommand)]
    Plugins(crate::commands::plugins::PluginsCommand),
    /// List and resolve registered models.
    #[command(subcommand)]
    Models(crate::commands::models::ModelsCommand),
    /// Show which backends have keys (secrets masked).
    #[command(subcommand)]
    Keys(crate::commands::keys::KeysCommand),
    /// List the games `run -g` can play: native and clembench ones.
    #[command(subcommand)]
    Games(crate::commands::games::GamesCommand),
    /// Play a game's instances with one or more models; results go to results/.
    Run(crate::commands::run::RunArgs),
    /// Score finished episodes (writes scores.json next to interactions.json).
    Score(crate::commands::score::ScoreArgs),
    /// Aggregate scores into results.csv and a table (clemscore).
    Eval(crate::commands::eval::EvalArgs),
    /// Write a readable transcript.html for every episode.
    Transcribe(crate::commands::transcribe::TranscribeArgs),
    /// Render chat templates exactly as transformers does.
    #[command(subcommand)]
    Template(crate::commands::template::TemplateCommand),
    /// Check a HuggingFace model's tokenizer and chat template and propose a registry entry.
    CheckHf(crate::commands::check_hf::CheckHfArgs),
    /// Play one hellogame episode with a model and inspect what it recorded.
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Serve registry models behind an OpenAI-compatible HTTP endpoint.
    #[cfg(feature = "serve")]
    Serve(crate::commands::serve::ServeArgs),
    /// Internal: open one plugin file and print its manifest as JSON.
    #[command(name = "__probe", hide = true)]
    Probe {
        /// The plugin file.
        file: PathBuf,
    },
}
