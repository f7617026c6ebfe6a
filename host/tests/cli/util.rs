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
            .env_remove("CLEMHOST_ALLOW_CWD_PLUGINS")
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
            "OPENAI_ORG_ID",
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

/// Runs `cmd` with `typed` on its stdin; its output.
pub fn typed_into(mut cmd: std::process::Command, typed: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(typed.as_bytes())
        .expect("typed");
    child.wait_with_output().expect("finishes")
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

/// One request a [`FakeServer`] received: the request line, the headers (names
/// lower-cased) and the body.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records requests and answers
/// each with `status` and a body made from the request (so it can echo it).
pub struct FakeServer {
    pub base_url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<SeenRequest>>>,
}

impl FakeServer {
    pub fn start(
        status: u16,
        body: impl Fn(&SeenRequest) -> String + Send + Sync + 'static,
    ) -> FakeServer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let body = std::sync::Arc::new(body);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let record = record.clone();
                let body = body.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end().to_string();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                            }
                        }
                        let len: usize = headers
                            .iter()
                            .find(|(k, _)| k == "content-length")
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        let mut buf = vec![0u8; len];
                        if reader.read_exact(&mut buf).is_err() {
                            return;
                        }
                        let req = SeenRequest {
                            line: line.trim_end().to_string(),
                            headers,
                            body: String::from_utf8_lossy(&buf).into_owned(),
                        };
                        let answer = body(&req);
                        record.lock().expect("lock").push(req);
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeServer { base_url, seen }
    }

    /// A chat-completions server that always answers `text`.
    pub fn chat(text: &str) -> FakeServer {
        let answer = serde_json::json!({
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        })
        .to_string();
        FakeServer::start(200, move |_| answer.clone())
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Every file under `dir` whose text contains `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if std::fs::read_to_string(&p).is_ok_and(|t| t.contains(needle)) {
            hits.push(p);
        }
    }
    hits
}
