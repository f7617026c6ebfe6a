//! Finding and opening backend plugins.
//!
//! Discovery order, first match wins: every `--plugin-dir`, then the
//! directories of `$CLEMHOST_PLUGIN_PATH` (`:`-separated), then `./plugins`,
//! then the directory of the `clemhost` executable. A plugin is a file named
//! `lib<name>_api.so` (`lib<name>_api.dylib` on macOS, `<name>_api.dll` on
//! Windows); its backend name is `<name>`. Directories are scanned without
//! recursion. Only the plugins a command needs are opened.
//!
//! Trust: a plugin runs with the user's rights, so a file or a directory that
//! other users can write to, or a file owned by neither the user nor root, is
//! refused with the reason.

pub mod probe;
mod trust;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
pub use clemhost_plugin_sdk::host::{ModelHandle, Plugin};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
pub use trust::check_trust;

/// A plugin file found on the search path (not opened yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The backend name taken from the file name.
    pub backend: String,
    /// The file.
    pub path: PathBuf,
}

/// The environment variable with extra plugin directories.
pub const PLUGIN_PATH_VAR: &str = "CLEMHOST_PLUGIN_PATH";

/// The directories searched, in order, as absolute paths (duplicates
/// removed, missing ones left out).
pub fn search_dirs(global: &GlobalArgs) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = global.plugin_dirs.clone();
    if let Some(v) = std::env::var_os(PLUGIN_PATH_VAR) {
        dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.push(PathBuf::from("plugins"));
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir);
    }
    // Absolute paths, so that listings and errors show exactly which file runs.
    let mut seen = BTreeSet::new();
    dirs.into_iter()
        .filter_map(|d| d.canonicalize().ok())
        .filter(|d| d.is_dir())
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

/// The backend name a file name stands for, if it is a plugin file name.
pub fn backend_name_of(file_name: &str) -> Option<&str> {
    let stem = if let Some(s) = file_name.strip_suffix(".so") {
        s.strip_prefix("lib")?
    } else if let Some(s) = file_name.strip_suffix(".dylib") {
        s.strip_prefix("lib")?
    } else {
        file_name.strip_suffix(".dll")?
    };
    let name = stem.strip_suffix("_api")?;
    (!name.is_empty()).then_some(name)
}

/// The plugin files of one directory, sorted by backend name.
pub fn scan_dir(dir: &Path) -> Vec<Candidate> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Candidate> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let backend = backend_name_of(&name)?.to_string();
            let path = e.path();
            path.is_file().then_some(Candidate { backend, path })
        })
        .collect();
    found.sort_by(|a, b| a.backend.cmp(&b.backend));
    found
}

/// Every plugin file on the search path; for a backend name that appears in
/// several directories, only the first is kept.
pub fn discover(global: &GlobalArgs) -> Vec<Candidate> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dir in search_dirs(global) {
        for c in scan_dir(&dir) {
            if seen.insert(c.backend.clone()) {
                out.push(c);
            }
        }
    }
    out
}

/// Opens the plugin that serves `backend` (after the trust checks).
pub fn load_backend(global: &GlobalArgs, backend: &str) -> Result<Plugin> {
    let candidates = discover(global);
    let Some(c) = candidates.iter().find(|c| c.backend == backend) else {
        let dirs: Vec<String> = search_dirs(global)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        return Err(Error::msg(format!(
            "no plugin serves backend '{backend}': looked for lib{backend}_api.so in {}; build or copy the plugin there (or pass --plugin-dir DIR); `clemhost plugins list` shows what is installed",
            if dirs.is_empty() { "no existing directory".to_string() } else { dirs.join(", ") }
        )));
    };
    check_trust(&c.path)
        .map_err(|reason| Error::msg(format!("refusing plugin {}: {reason}", c.path.display())))?;
    let plugin = Plugin::open(&c.path)
        .map_err(|e| Error::msg(format!("cannot open plugin {}: {e}", c.path.display())))?;
    let m = plugin.manifest();
    if m.panic_strategy == "abort" {
        tracing::warn!(
            "plugin {} was built with panic=abort: a panic inside it ends clemhost",
            c.path.display()
        );
    }
    if !m.backends.iter().any(|b| b == backend) {
        tracing::warn!(
            "plugin {} is named for backend '{backend}' but its manifest serves {:?}",
            c.path.display(),
            m.backends
        );
    }
    Ok(plugin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_map_to_backend_names() {
        assert_eq!(backend_name_of("libopenai_api.so"), Some("openai"));
        assert_eq!(
            backend_name_of("libhuggingface_local_api.so"),
            Some("huggingface_local")
        );
        assert_eq!(backend_name_of("libecho_api.dylib"), Some("echo"));
        assert_eq!(backend_name_of("echo_api.dll"), Some("echo"));
        assert_eq!(backend_name_of("libecho.so"), None);
        assert_eq!(backend_name_of("lib_api.so"), None);
        assert_eq!(backend_name_of("echo_api.so"), None);
        assert_eq!(backend_name_of("libecho_api.so.1"), None);
        assert_eq!(backend_name_of("libecho_api.rlib"), None);
    }
}
