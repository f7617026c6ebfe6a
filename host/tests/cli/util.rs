//! A small test environment: a temp working directory, the clemhost binary,
//! and where the compiled plugins and the shared reference data are.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `clemhost` binary under test.
pub fn clemhost_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clemhost"))
}

/// The target directory the workspace's plugins were built into
/// (the directory of the clemhost binary under test).
pub fn plugin_build_dir() -> PathBuf {
    clemhost_bin()
        .parent()
        .expect("the clemhost binary has a parent directory")
        .to_path_buf()
}

/// The path of a compiled workspace plugin; fails with the fix when it is missing.
pub fn built_plugin(name: &str) -> PathBuf {
    let file = format!("lib{name}_api.so");
    let path = plugin_build_dir().join(&file);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's plugins first (scripts/test does: cargo build --workspace)",
        path.display()
    );
    path
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ lives in the repository root")
        .to_path_buf()
}

/// `../shared` (or `$CLEMHOST_SHARED`), or `None` with a message why tests skip.
pub fn shared_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CLEMHOST_SHARED") {
        let p = PathBuf::from(p);
        if p.is_dir() {
            return Some(p);
        }
    }
    let p = repo_root().join("../shared");
    if p.is_dir() {
        return Some(p);
    }
    eprintln!(
        "skipped: the shared reference folder is neither at ../shared nor at $CLEMHOST_SHARED"
    );
    None
}

/// A scratch working directory with nothing in it: no key.json, no registry,
/// no plugins; HOME points inside it so the user's own files never leak in.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp directory can be created");
        std::fs::create_dir_all(dir.path().join("home")).expect("home dir");
        TestEnv { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Writes a file relative to the working directory.
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("parent dirs");
        }
        std::fs::write(&p, contents).expect("write test file");
        p
    }

    /// A `clemhost` command run in this directory with a clean environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(clemhost_bin());
        c.current_dir(self.dir.path())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env_remove("CLEMHOST_PLUGIN_PATH")
            .env_remove("RUST_LOG");
        for var in [
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "MISTRAL_API_KEY",
            "CO_API_KEY",
            "GEMINI_API_KEY",
            "GOOGLE_API_KEY",
            "OPENROUTER_API_KEY",
            "HF_TOKEN",
        ] {
            c.env_remove(var);
        }
        c
    }

    /// Runs clemhost with arguments and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("clemhost runs")
    }
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// clemhost's download cache: `$CLEMHOST_CACHE`, else `~/.cache/clemhost`
/// (where scripts/setup and scripts/fetch-smollm2 put the test models).
pub fn clemhost_cache() -> PathBuf {
    std::env::var_os("CLEMHOST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/clemhost")
        })
}
