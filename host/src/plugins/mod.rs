//! Finding and opening backend plugins.
//!
//! Discovery order, first match wins: every `--plugin-dir`, then the
//! directories of `$CLEMHOST_PLUGIN_PATH`, then `./plugins`, then the
//! directory of the `clemhost` executable. A plugin is a file named
//! `lib<name>_api.so` (`.dylib` on macOS, `<name>_api.dll` on Windows); its
//! backend name is `<name>`. Only the plugins a command needs are opened.

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
pub use clemhost_plugin_sdk::host::{ModelHandle, Plugin};
use std::path::PathBuf;

/// A plugin file found on the search path (not opened yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The backend name taken from the file name.
    pub backend: String,
    /// The file.
    pub path: PathBuf,
}

/// The directories searched, in order.
pub fn search_dirs(global: &GlobalArgs) -> Vec<PathBuf> {
    let _ = global;
    Vec::new()
}

/// Every plugin file on the search path; for a backend name that appears in
/// several directories, only the first is kept.
pub fn discover(global: &GlobalArgs) -> Vec<Candidate> {
    let _ = global;
    Vec::new()
}

/// Opens the plugin that serves `backend` (after the trust checks).
pub fn load_backend(global: &GlobalArgs, backend: &str) -> Result<Plugin> {
    let _ = global;
    Err(Error::msg(format!("no plugin serves backend '{backend}' (not written yet)")))
}
