//! One module per command. Each exposes its clap arguments and a `run`
//! function that returns the exit status or an [`crate::Error`].
pub mod check_hf;
pub mod doctor;
pub mod eval;
pub mod games;
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

/// The error of a command (or part of one) that this build leaves out.
#[cfg_attr(feature = "hub", allow(dead_code))]
pub(crate) fn needs_hub_feature(what: &str) -> crate::error::Error {
    crate::error::Error::msg(format!(
        "{what} needs the HuggingFace Hub and tokenizer support, which this clemhost was built \
         without; rebuild with the default features (`cargo build --release -p clemhost`, or \
         `--features hub`)"
    ))
}
