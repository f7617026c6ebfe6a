//! # clemhost
//!
//! The library behind the `clemhost` binary: plugin discovery and loading
//! ([`plugins`]), the model registry and keys ([`registry`], [`keys`]), the
//! game framework and results ([`games`], [`results`]), and one module per
//! command ([`commands`]). `main.rs` only parses the command line, sets up
//! logging and turns a command's outcome into an exit code.
pub mod clembench;
pub mod cli;
pub mod commands;
pub mod error;
pub mod games;
pub mod keys;
pub mod plugins;
pub mod registry;
pub mod results;
pub mod runner;
#[cfg(feature = "serve")]
pub mod serve;

pub use error::{Error, Exit, Result};
