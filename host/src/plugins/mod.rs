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
//! others can write to, or one owned by neither the user nor root, is
//! refused with the reason, and the file loaded is the one checked (see
//! `trust`).
//!
//! The working directory: `./plugins` may come with a cloned repository, so
//! its files are treated as not yet asked for. None of them is opened, by
//! `run` (whether it shadows an installed plugin or serves a backend of its
//! own) or by `models list`, `models show`, `keys list` and `plugins list`
//! (their initialisers would run), unless the user allows it with
//! `CLEMHOST_ALLOW_CWD_PLUGINS=1` or names the directory with
//! `--plugin-dir plugins` or by its absolute path in `$CLEMHOST_PLUGIN_PATH`
//! (a relative entry there is treated like `./plugins`, with a warning).

pub mod probe;
mod trust;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
pub use clemhost_plugin_sdk::host::{ModelHandle, Plugin};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
pub use trust::{check_trust, open_trusted, TrustedFile};

/// A plugin file found on the search path (not opened yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The backend name taken from the file name.
    pub backend: String,
    /// The file.
    pub path: PathBuf,
    /// It was found in `./plugins` only because that is where clemhost runs
    /// (the user named the directory neither with `--plugin-dir` nor in
    /// `$CLEMHOST_PLUGIN_PATH`).
    pub in_cwd: bool,
}

/// The environment variable with extra plugin directories.
pub const PLUGIN_PATH_VAR: &str = "CLEMHOST_PLUGIN_PATH";

/// The environment variable that allows plugins from `./plugins` to be
/// opened as if the user had named the directory (`1`, `true` or `yes`).
pub const ALLOW_CWD_PLUGINS_VAR: &str = "CLEMHOST_ALLOW_CWD_PLUGINS";

/// Whether the user allows files of `./plugins` to be opened at all.
pub fn cwd_plugins_allowed() -> bool {
    std::env::var(ALLOW_CWD_PLUGINS_VAR)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// Whether a listing may open this candidate (see the module docs).
pub fn may_probe(c: &Candidate) -> bool {
    !c.in_cwd || cwd_plugins_allowed()
}

/// Why a listing left a `./plugins` file unopened, with the way to allow it.
pub fn cwd_not_opened() -> String {
    format!(
        "not opened: it is in ./plugins of the working directory; set {ALLOW_CWD_PLUGINS_VAR}=1 or pass --plugin-dir plugins to open it"
    )
}

/// The directories searched, in order, as absolute paths (duplicates
/// removed, missing ones left out).
pub fn search_dirs(global: &GlobalArgs) -> Vec<PathBuf> {
    search_dirs_marked(global)
        .into_iter()
        .map(|(d, _)| d)
        .collect()
}

/// [`search_dirs`], each with whether it is there only as `./plugins`.
fn search_dirs_marked(global: &GlobalArgs) -> Vec<(PathBuf, bool)> {
    let mut dirs: Vec<(PathBuf, bool)> = global
        .plugin_dirs
        .iter()
        .map(|d| (d.clone(), false))
        .collect();
    if let Some(v) = std::env::var_os(PLUGIN_PATH_VAR) {
        // A relative entry is set once (in a shell profile) and then means
        // a different folder in every directory clemhost runs in, such as
        // a cloned repository: its files are treated as `./plugins` is.
        dirs.extend(
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| {
                    let relative = p.is_relative();
                    if relative {
                        tracing::warn!(
                            "{PLUGIN_PATH_VAR} entry '{}' is relative: it is treated like \
                             ./plugins (not opened by listings, may not shadow installed plugins); \
                             give an absolute path",
                            crate::error::escape_for_terminal(&p.display().to_string())
                        );
                    }
                    (p, relative)
                }),
        );
    }
    dirs.push((PathBuf::from("plugins"), true));
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push((exe_dir, false));
    }
    // Absolute paths, so that listings and errors show exactly which file runs.
    let mut seen = BTreeSet::new();
    dirs.into_iter()
        .filter_map(|(d, cwd)| d.canonicalize().ok().map(|d| (d, cwd)))
        .filter(|(d, _)| d.is_dir())
        .filter(|(d, _)| seen.insert(d.clone()))
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

/// The plugin files of every directory of the search path, in order
/// (shadowed ones included).
pub fn scan_all(global: &GlobalArgs) -> Vec<Candidate> {
    search_dirs_marked(global)
        .into_iter()
        .flat_map(|(dir, in_cwd)| {
            scan_dir(&dir)
                .into_iter()
                .map(move |c| Candidate { in_cwd, ..c })
        })
        .collect()
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
            path.is_file().then_some(Candidate {
                backend,
                path,
                in_cwd: false,
            })
        })
        .collect();
    found.sort_by(|a, b| a.backend.cmp(&b.backend));
    found
}

/// Every plugin file on the search path; for a backend name that appears in
/// several directories, only the first is kept.
pub fn discover(global: &GlobalArgs) -> Vec<Candidate> {
    let mut seen = BTreeSet::new();
    scan_all(global)
        .into_iter()
        .filter(|c| seen.insert(c.backend.clone()))
        .collect()
}

/// Opens a plugin file after the trust checks, loading exactly the file
/// that was checked.
pub fn open_checked(path: &Path) -> std::result::Result<Plugin, String> {
    let trusted = open_trusted(path).map_err(|reason| format!("refused: {reason}"))?;
    Plugin::open_as(&trusted.load_path(), path).map_err(|e| e.to_string())
}

/// Opens the plugin that serves `backend` (after the trust checks).
pub fn load_backend(global: &GlobalArgs, backend: &str) -> Result<Plugin> {
    let all = scan_all(global);
    let mut serving = all.iter().filter(|c| c.backend == backend);
    let first = serving.next();
    if let Some(c) = first.filter(|c| c.in_cwd && !cwd_plugins_allowed()) {
        // Any file of ./plugins, not only one that shadows an installed
        // plugin: a registry in the same cloned repository can route a
        // well-known model name to a backend that only that file serves.
        let what = match serving.next() {
            Some(installed) => format!(
                "shadows the installed {}; one that came with a cloned repository must not replace yours",
                installed.path.display()
            ),
            None => format!(
                "no installed plugin serves backend '{backend}'; a cloned repository can bring both the plugin and a registry entry that names it"
            ),
        };
        return Err(Error::msg(format!(
            "refusing plugin {}: it is in ./plugins of the working directory and {what}. A plugin runs with your rights and receives your keys. To use it, set {ALLOW_CWD_PLUGINS_VAR}=1 or pass --plugin-dir plugins; otherwise remove or rename the file",
            c.path.display(),
        )));
    }
    let Some(c) = first else {
        let dirs: Vec<String> = search_dirs(global)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        return Err(Error::msg(format!(
            "no plugin serves backend '{backend}': looked for lib{backend}_api.so in {}; build or copy the plugin there (or pass --plugin-dir DIR); `clemhost plugins list` shows what is installed",
            if dirs.is_empty() { "no existing directory".to_string() } else { dirs.join(", ") }
        )));
    };
    let trusted = open_trusted(&c.path)
        .map_err(|reason| Error::msg(format!("refusing plugin {}: {reason}", c.path.display())))?;
    if c.in_cwd {
        tracing::info!(
            "using plugin {} from ./plugins of the working directory ({ALLOW_CWD_PLUGINS_VAR} is set)",
            c.path.display()
        );
    }
    let plugin = Plugin::open_as(&trusted.load_path(), &c.path)
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
