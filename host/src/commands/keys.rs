//! `clemhost keys` (not written yet).

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use clap::Subcommand;

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Not written yet.
    List,
}

/// Runs the command.
pub fn run(_global: &GlobalArgs, _cmd: &KeysCommand) -> Result<Exit> {
    Err(Error::msg("this command is not written yet"))
}
