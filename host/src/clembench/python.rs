//! The user's Python: which interpreter, whether its clemcore is one we
//! support, and the `clemhost_games` package put on its path.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable naming the interpreter (after `--python`).
pub const CLEMHOST_PYTHON: &str = "CLEMHOST_PYTHON";

/// The clemcore lines the worker drives (major, minor).
pub const SUPPORTED: [(u32, u32); 5] = [(3, 3), (3, 4), (3, 5), (3, 6), (3, 7)];

/// The package's files, shipped inside the binary and written out once per
/// content (so an installed clemhost needs no source tree).
const PACKAGE: [(&str, &str); 6] = [
    (
        "__init__.py",
        include_str!("../../../python/clemhost_games/__init__.py"),
    ),
    (
        "__main__.py",
        include_str!("../../../python/clemhost_games/__main__.py"),
    ),
    (
        "protocol.py",
        include_str!("../../../python/clemhost_games/protocol.py"),
    ),
    (
        "host_model.py",
        include_str!("../../../python/clemhost_games/host_model.py"),
    ),
    (
        "worker.py",
        include_str!("../../../python/clemhost_games/worker.py"),
    ),
    (
        "records.py",
        include_str!("../../../python/clemhost_games/records.py"),
    ),
];

/// The first lines of every program clemhost hands to `python -c`: they
/// take the working directory off `sys.path`. `python -c` and `python -m`
/// put it first, so a `csv.py`, an `email/` or a `clemhost_games/` folder
/// there would be imported instead of the real module: code from a cloned
/// repository, run with the keys in clemhost's environment. Games still
/// import their own modules (clemcore adds each game's folder itself).
pub const WITHOUT_CWD_ON_PATH: &str =
    "import sys\nif sys.path and sys.path[0] in ('', '.'):\n    del sys.path[0]\n";

/// An interpreter with a supported clemcore.
#[derive(Clone, Debug)]
pub struct Python {
    /// The interpreter as given (a path or a name on PATH).
    pub interpreter: PathBuf,
    /// clemcore's version there.
    pub clemcore: String,
    /// The folder to put on PYTHONPATH (holds `clemhost_games/`).
    pub package_root: PathBuf,
}

/// The interpreter to use: `--python`, else `$CLEMHOST_PYTHON`, else `python3`.
pub fn choose(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CLEMHOST_PYTHON).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Checks that `interpreter` runs and has a supported clemcore; one clear
/// line naming the interpreter and the `pip install` that fixes it otherwise.
pub fn check(interpreter: &Path) -> Result<Python> {
    let fix = format!(
        "install it with `{} -m pip install clemcore==3.3.5 pettingzoo` (or clemcore==3.7.2; see docs/clembench-games.md), or pick another interpreter with --python or ${CLEMHOST_PYTHON}",
        interpreter.display()
    );
    let out = Command::new(interpreter)
        .arg("-c")
        .arg(format!(
            "{WITHOUT_CWD_ON_PATH}import importlib.metadata as m\ntry:\n print(m.version('clemcore'))\nexcept m.PackageNotFoundError:\n print('')"
        ))
        .output()
        .map_err(|e| {
            Error::msg(format!(
                "cannot start the Python interpreter {}: {e}; pass --python PATH or set ${CLEMHOST_PYTHON}",
                interpreter.display()
            ))
        })?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "the Python interpreter {} failed to start ({}); pass another with --python or ${CLEMHOST_PYTHON}",
            interpreter.display(),
            out.status
        )));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if version.is_empty() {
        return Err(Error::msg(format!(
            "clemcore is not installed for {}: {fix}",
            interpreter.display()
        )));
    }
    if !is_supported(&version) {
        return Err(Error::msg(format!(
            "clemcore {version} (for {}) is not a supported version (3.3.x to 3.7.x): {fix}",
            interpreter.display()
        )));
    }
    Ok(Python {
        interpreter: interpreter.to_path_buf(),
        clemcore: version,
        package_root: package_root()?,
    })
}

/// Whether a clemcore version string is of a supported line.
pub fn is_supported(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => SUPPORTED.contains(&(major, minor)),
        _ => false,
    }
}

/// Writes the package under the cache (`$CLEMHOST_CACHE`, default
/// `~/.cache/clemhost`) in a folder named by its content hash, once.
fn package_root() -> Result<PathBuf> {
    let mut hash = Sha256::new();
    for (name, text) in PACKAGE {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let cache = std::env::var_os("CLEMHOST_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/clemhost")))
        .unwrap_or_else(std::env::temp_dir);
    let root = cache.join("python").join(short);
    let dir = root.join("clemhost_games");
    if PACKAGE.iter().all(|(name, _)| dir.join(name).is_file()) {
        return Ok(root);
    }
    let err = |e: std::io::Error| {
        Error::msg(format!(
            "cannot write clemhost's Python package under {}: {e}; set CLEMHOST_CACHE to a writable folder",
            root.display()
        ))
    };
    // Write into a private folder, then rename: a concurrent run sees all or nothing.
    let tmp = root.with_extension(format!("tmp{}", std::process::id()));
    let tmp_dir = tmp.join("clemhost_games");
    std::fs::create_dir_all(&tmp_dir).map_err(err)?;
    for (name, text) in PACKAGE {
        std::fs::write(tmp_dir.join(name), text).map_err(err)?;
    }
    match std::fs::rename(&tmp, &root) {
        Ok(()) => Ok(root),
        Err(_) if dir.join("worker.py").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(root)
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_lines() {
        assert!(is_supported("3.3.5"));
        assert!(is_supported("3.7.2"));
        assert!(!is_supported("3.2.0"));
        assert!(!is_supported("3.8.0"));
        assert!(!is_supported("4.0"));
        assert!(!is_supported("garbage"));
    }
}
