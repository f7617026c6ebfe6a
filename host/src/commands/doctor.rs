//! `clemhost doctor` (not written yet).

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use clap::Args;

/// Options of this command.
#[derive(Debug, Args)]
pub struct DoctorArgs {}

/// Runs the command.
pub fn run(_global: &GlobalArgs, _args: &DoctorArgs) -> Result<Exit> {
    Err(Error::msg("this command is not written yet"))
}
