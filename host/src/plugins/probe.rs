//! Probing plugin files in child processes, so that one broken file (a
//! plugin built with `panic = "abort"`, a crashing initialiser) cannot take
//! the listing down.

use clemhost_plugin_sdk::Manifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a child process found out about one plugin file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// The manifest, when the plugin opened.
    pub manifest: Option<Manifest>,
    /// The one-line reason when it did not.
    pub error: Option<String>,
}

/// Opens a plugin in this process and reports (used by `clemhost __probe`).
pub fn probe_here(path: &Path) -> ProbeOutcome {
    // The child checks again and loads the descriptor it checked: the
    // parent's check says nothing about the file as it is now.
    match super::open_checked(path) {
        Ok(p) => ProbeOutcome {
            manifest: Some(p.manifest().clone()),
            error: None,
        },
        Err(e) => ProbeOutcome {
            manifest: None,
            error: Some(e),
        },
    }
}

/// How long a child may take to open one plugin.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// A running probe.
pub struct PendingProbe {
    child: std::process::Child,
    started: Instant,
}

/// Starts `exe __probe path` without waiting for it.
pub fn spawn_probe(exe: &Path, path: &Path) -> std::io::Result<PendingProbe> {
    let child = Command::new(exe)
        .arg("__probe")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("RUST_LOG", "off")
        .spawn()?;
    Ok(PendingProbe {
        child,
        started: Instant::now(),
    })
}

impl PendingProbe {
    /// Waits for the child and turns what it printed into an outcome.
    pub fn finish(mut self) -> ProbeOutcome {
        let failed = |msg: String| ProbeOutcome {
            manifest: None,
            error: Some(msg),
        };
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if self.started.elapsed() > PROBE_TIMEOUT => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return failed(format!(
                        "load error: opening it took more than {} s",
                        PROBE_TIMEOUT.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return failed(format!("load error: could not wait for the probe: {e}")),
            }
        };
        let mut out = String::new();
        if let Some(mut so) = self.child.stdout.take() {
            let _ = so.read_to_string(&mut out);
        }
        match serde_json::from_str::<ProbeOutcome>(out.trim()) {
            Ok(o) => o,
            Err(_) => failed(match describe_exit(&status) {
                Some(how) => format!("panicked while loading (the probe process {how})"),
                None => "load error: the probe printed nothing readable".to_string(),
            }),
        }
    }
}

fn describe_exit(status: &std::process::ExitStatus) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return Some(format!("was killed by signal {sig}"));
        }
    }
    status.code().map(|c| format!("exited with code {c}"))
}

/// The manifests of the discovered plugins that serve `backends` (all of
/// them with `None`), each read in a child process so a broken plugin cannot
/// take the caller down; plugins that are refused or fail to open are left
/// out. Files in `./plugins` are left out too unless the user allows them
/// (see [`super::cwd_plugins_allowed`]): listing must not run code that a
/// cloned repository brought along.
pub fn probe_manifests(
    candidates: &[super::Candidate],
    backends: Option<&[&str]>,
) -> std::collections::BTreeMap<String, Manifest> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(exe) = std::env::current_exe() else {
        return out;
    };
    let pending: Vec<_> = candidates
        .iter()
        .filter(|c| backends.is_none_or(|b| b.contains(&c.backend.as_str())))
        .filter(|c| super::may_probe(c))
        .filter_map(|c| {
            spawn_probe(&exe, &c.path)
                .ok()
                .map(|p| (c.backend.clone(), p))
        })
        .collect();
    for (backend, probe) in pending {
        if let Some(manifest) = probe.finish().manifest {
            out.insert(backend, manifest);
        }
    }
    out
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
