//! `clemhost plugins` (not written yet).

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use clap::Subcommand;

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Not written yet.
    List,
}

/// Runs the command.
pub fn run(_global: &GlobalArgs, _cmd: &PluginsCommand) -> Result<Exit> {
    Err(Error::msg("this command is not written yet"))
}

/// `clemhost __probe FILE`: opens one plugin and prints its manifest as JSON.
pub fn probe(_file: &std::path::Path) -> Result<Exit> {
    Err(Error::msg("not written yet"))
}
