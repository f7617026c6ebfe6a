//! One module per command. Each exposes its clap arguments and a `run`
//! function that returns the exit status or an [`crate::Error`].
pub mod check_hf;
pub mod doctor;
pub mod eval;
pub mod keys;
pub mod models;
pub mod plugin_template;
pub mod plugins;
pub mod run;
pub mod score;
#[cfg(feature = "serve")]
pub mod serve;
pub mod template;
pub mod transcribe;
