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
/// `~/.cache/clemhost`) in a folder named by its content hash.
fn package_root() -> Result<PathBuf> {
    let cache = cache_dir(std::env::var_os("CLEMHOST_CACHE"), std::env::var_os("HOME"))?;
    install_package(&cache)
}

/// The cache folder: `$CLEMHOST_CACHE`, else `$HOME/.cache/clemhost`. An
/// empty variable counts as unset, and both must be absolute: a relative
/// folder (or the old fallbacks, the working directory and the shared temp
/// folder) is a place others can plant a package that Python then runs.
fn cache_dir(
    clemhost_cache: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf> {
    if let Some(c) = clemhost_cache.filter(|c| !c.is_empty()) {
        let c = PathBuf::from(c);
        if !c.is_absolute() {
            return Err(Error::msg(format!(
                "CLEMHOST_CACHE={} is a relative folder: clemhost keeps Python code there, so it must not depend on the working directory; set it to an absolute path",
                c.display()
            )));
        }
        return Ok(c);
    }
    match home.filter(|h| !h.is_empty()).map(PathBuf::from) {
        Some(h) if h.is_absolute() => Ok(h.join(".cache/clemhost")),
        _ => Err(Error::msg(
            "neither HOME nor CLEMHOST_CACHE is set to an absolute folder, so there is no private place for clemhost's Python package; set CLEMHOST_CACHE=/path/to/a/folder of yours",
        )),
    }
}

/// Why an existing package folder cannot be used as it is (`None`: it can):
/// it and its files must be this build's files, owned by the current user
/// and writable by nobody else.
fn package_problem(root: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let dir = root.join("clemhost_games");
    let check = |p: &Path| -> Option<String> {
        let m = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: {e}", p.display())),
        };
        if m.file_type().is_symlink() {
            return Some(format!("{} is a symbolic link", p.display()));
        }
        if m.uid() != me || m.mode() & 0o022 != 0 {
            return Some(format!(
                "{} is not owned by you or is writable by others",
                p.display()
            ));
        }
        None
    };
    for p in [root, dir.as_path()] {
        if let Some(why) = check(p) {
            return Some(why);
        }
    }
    let names: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect(),
        Err(e) => return Some(format!("{}: {e}", dir.display())),
    };
    for name in &names {
        if !PACKAGE.iter().any(|(n, _)| std::ffi::OsStr::new(n) == name) && name != "__pycache__" {
            return Some(format!(
                "{} is not one of its files",
                dir.join(name).display()
            ));
        }
    }
    for (name, text) in PACKAGE {
        let p = dir.join(name);
        if let Some(why) = check(&p) {
            return Some(why);
        }
        match std::fs::read(&p) {
            Ok(bytes) if bytes == text.as_bytes() => {}
            _ => return Some(format!("{} differs from this build's", p.display())),
        }
    }
    None
}

/// Puts the package in `cache/python/<hash>/clemhost_games/`, reusing a
/// folder there only when [`package_problem`] finds nothing wrong with it;
/// any other is replaced.
fn install_package(cache: &Path) -> Result<PathBuf> {
    let mut hash = Sha256::new();
    for (name, text) in PACKAGE {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let root = cache.join("python").join(short);
    let existing = std::fs::symlink_metadata(&root).is_ok();
    let problem = if existing {
        package_problem(&root)
    } else {
        None
    };
    if existing && problem.is_none() {
        return Ok(root);
    }
    let err = |e: std::io::Error| {
        Error::msg(format!(
            "cannot write clemhost's Python package under {}: {e}{}; set CLEMHOST_CACHE to a folder of yours",
            root.display(),
            problem
                .as_ref()
                .map(|p| format!(" (the folder there cannot be used: {p})"))
                .unwrap_or_default()
        ))
    };
    // Write into a private folder, then rename: a concurrent run sees all or nothing.
    let tmp = root.with_extension(format!("tmp{}", std::process::id()));
    let tmp_dir = tmp.join("clemhost_games");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp_dir).map_err(err)?;
    {
        // Modes set here, not left to the umask: a group-writable umask would
        // make every later run find the folder open and write it again.
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        for (name, text) in PACKAGE {
            let p = tmp_dir.join(name);
            std::fs::write(&p, text).map_err(err)?;
            mode(&p, 0o644).map_err(err)?;
        }
        mode(&tmp_dir, 0o755).map_err(err)?;
        mode(&tmp, 0o755).map_err(err)?;
    }
    if existing {
        // Move the unusable folder aside (a link is renamed, not followed).
        let old = root.with_extension(format!("old{}", std::process::id()));
        std::fs::rename(&root, &old).map_err(err)?;
        if std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_dir_all(&old);
        } else {
            let _ = std::fs::remove_file(&old);
        }
    }
    match std::fs::rename(&tmp, &root) {
        Ok(()) => Ok(root),
        Err(_) if package_problem(&root).is_none() => {
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

    #[test]
    fn the_cache_is_absolute_and_never_shared_or_relative() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            cache_dir(None, os("/home/u")).unwrap(),
            Path::new("/home/u/.cache/clemhost")
        );
        assert_eq!(cache_dir(os("/c"), os("/home/u")).unwrap(), Path::new("/c"));
        assert_eq!(
            cache_dir(os(""), os("/home/u")).unwrap(),
            Path::new("/home/u/.cache/clemhost")
        );
        for (cache, home) in [
            (None, None),
            (None, os("")),
            (os(""), os("")),
            (None, os("rel")),
        ] {
            let e = cache_dir(cache, home).unwrap_err().to_string();
            assert!(
                e.contains("CLEMHOST_CACHE") && e.contains("absolute"),
                "{e}"
            );
        }
        let e = cache_dir(os(".cache"), os("/home/u"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("relative"), "{e}");
    }

    #[test]
    fn a_planted_or_open_package_is_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let cache = tempfile::tempdir().unwrap();
        let root = install_package(cache.path()).unwrap();
        let dir = root.join("clemhost_games");
        assert_eq!(package_problem(&root), None);
        // A different __init__.py (what a planted package brings) is replaced.
        std::fs::write(dir.join("__init__.py"), "import os; os.system('x')").unwrap();
        assert!(package_problem(&root).is_some());
        assert_eq!(install_package(cache.path()).unwrap(), root);
        assert_eq!(
            std::fs::read_to_string(dir.join("__init__.py")).unwrap(),
            PACKAGE[0].1
        );
        // An extra module, or a folder others may write, is not reused either.
        std::fs::write(dir.join("csv.py"), "x").unwrap();
        assert!(package_problem(&root).is_some());
        install_package(cache.path()).unwrap();
        assert!(!dir.join("csv.py").exists());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(package_problem(&root).is_some());
        install_package(cache.path()).unwrap();
        assert_eq!(package_problem(&root), None);
    }
}
