//! Chat templates rendered in a child process with a memory cap and a
//! deadline.
//!
//! A chat template is code from others (a model repository, a registry
//! entry). minijinja's fuel bounds the instructions a rendering runs, but
//! some single instructions do work the fuel never sees: list `+` is lazy,
//! so `{% set s.v = s.v + s.v %}` in a loop of 34 builds a list of 2^34
//! items in 34 steps, and the engine copies it out (without fuel) once the
//! chain is 33 deep; a `5 in s.v` over such a list walks billions of items
//! in one step. In the host process that is an unkillable thread eating all
//! memory. So inside clemhost every rendering goes to a worker process
//! (`clemhost __template-worker`, one per plugin, started on first use and
//! kept): the worker caps its own address space at
//! [`WORKER_MEMORY_BYTES`] above what it started with, and the caller kills
//! it when one rendering takes longer than [`RENDER_TIMEOUT`]. Either way
//! the rendering fails with [`TemplateError::Limit`] and the next one starts
//! a fresh worker.
//!
//! The worker is the clemhost executable: clemhost sets
//! [`WORKER_ENV`] to it at start-up, and the plugins it loads (this crate
//! compiled into them) read it from the environment they share. Without the
//! variable (this crate used as a library, its own tests) templates render
//! in the calling process, limited by the fuel alone.

use crate::template::{ChatTemplate, RenderInput, TemplateError};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
#[cfg(unix)]
use std::process::{Child, Command, Stdio};
#[cfg(unix)]
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
#[cfg(unix)]
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The environment variable naming the executable that renders templates
/// (run as `<it> __template-worker`). clemhost sets it to itself.
pub const WORKER_ENV: &str = "CLEMHOST_TEMPLATE_WORKER";

/// The argument that makes clemhost a template worker.
pub const WORKER_ARG: &str = "__template-worker";

/// How long one rendering may take before its worker is killed. Real chat
/// templates render in well under a millisecond per message; the fuel stops
/// runaway loops within a second.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(10);

/// How much memory (address space) a worker may take beyond what it had
/// when it started: 1 GiB, far above what the fuel lets a well-behaved
/// template build (64 MB).
pub const WORKER_MEMORY_BYTES: u64 = 1 << 30;

/// How long a new worker may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The first line a worker writes: which protocol it speaks.
const HANDSHAKE: &str = "clemhost-template-worker 1";

/// Templates a worker keeps compiled (one per model in use, in practice).
const WORKER_CACHE: usize = 16;

/// The format `RenderInput::now` travels in.
const NOW_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.f";

/// The executable to render with, when this process has one.
pub(crate) fn worker_executable() -> Option<PathBuf> {
    std::env::var_os(WORKER_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[derive(Serialize, Deserialize)]
struct Request {
    source: String,
    messages: Vec<Value>,
    add_generation_prompt: bool,
    continue_final_message: bool,
    bos_token: Option<String>,
    eos_token: Option<String>,
    special_tokens: Map<String, Value>,
    extra: Map<String, Value>,
    now: Option<String>,
}

impl Request {
    fn new(source: &str, input: &RenderInput) -> Request {
        Request {
            source: source.to_owned(),
            messages: input.messages.clone(),
            add_generation_prompt: input.add_generation_prompt,
            continue_final_message: input.continue_final_message,
            bos_token: input.bos_token.clone(),
            eos_token: input.eos_token.clone(),
            special_tokens: input.special_tokens.clone(),
            extra: input.extra.clone(),
            // The caller's clock, so a worker never disagrees with it.
            now: Some(
                input
                    .now
                    .unwrap_or_else(|| chrono::Local::now().naive_local())
                    .format(NOW_FORMAT)
                    .to_string(),
            ),
        }
    }

    fn into_parts(self) -> Result<(String, RenderInput), TemplateError> {
        let now = match self.now {
            None => None,
            Some(text) => Some(
                NaiveDateTime::parse_from_str(&text, NOW_FORMAT)
                    .map_err(|e| TemplateError::Input(format!("bad clock value {text:?}: {e}")))?,
            ),
        };
        let input = RenderInput {
            messages: self.messages,
            add_generation_prompt: self.add_generation_prompt,
            continue_final_message: self.continue_final_message,
            bos_token: self.bos_token,
            eos_token: self.eos_token,
            special_tokens: self.special_tokens,
            extra: self.extra,
            now,
        };
        Ok((self.source, input))
    }
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Rendered(String),
    Failed(TemplateError),
}

/// The worker's side: answers one request per line on stdin until stdin
/// closes. Caps its own memory first (see [`WORKER_MEMORY_BYTES`]).
pub fn run_worker() -> std::io::Result<()> {
    limit_memory();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{HANDSHAKE}")?;
    out.flush()?;
    let mut compiled: HashMap<String, Result<ChatTemplate, TemplateError>> = HashMap::new();
    for line in stdin.lock().lines() {
        let line = line?;
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Failed(TemplateError::Input(format!(
                "the template worker got a request it cannot read: {e}"
            ))),
            Ok(request) => match request.into_parts() {
                Err(e) => Reply::Failed(e),
                Ok((source, input)) => {
                    limit_cpu_for_one_rendering();
                    if !compiled.contains_key(&source) && compiled.len() >= WORKER_CACHE {
                        compiled.clear();
                    }
                    let template = compiled
                        .entry(source)
                        .or_insert_with_key(|s| ChatTemplate::new(s));
                    match template {
                        Err(e) => Reply::Failed(e.clone()),
                        Ok(t) => match t.render_here(&input) {
                            Ok(text) => Reply::Rendered(text),
                            Err(e) => Reply::Failed(e),
                        },
                    }
                }
            },
        };
        let text = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn limit_memory() {
    // The address space this process has now (statm's first field, in pages).
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
    // SAFETY: sysconf and setrlimit take plain values and a pointer to a
    // live struct; they have no other preconditions.
    unsafe {
        let page = u64::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
        let now = pages.unwrap_or(0).saturating_mul(page);
        let cap = libc::rlimit {
            rlim_cur: now.saturating_add(WORKER_MEMORY_BYTES),
            rlim_max: now.saturating_add(WORKER_MEMORY_BYTES),
        };
        libc::setrlimit(libc::RLIMIT_AS, &cap);
        // A worker that runs out of memory aborts: no core file for that.
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    }
}

#[cfg(not(target_os = "linux"))]
fn limit_memory() {}

/// Lets the coming rendering use [`RENDER_TIMEOUT`] of CPU on top of what
/// the worker used so far, so a worker whose caller went away (and so
/// cannot kill it) still stops.
#[cfg(unix)]
fn limit_cpu_for_one_rendering() {
    // SAFETY: getrusage and setrlimit write to / read from live structs.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return;
        }
        let used =
            u64::try_from(usage.ru_utime.tv_sec.saturating_add(usage.ru_stime.tv_sec)).unwrap_or(0);
        let mut cap: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_CPU, &mut cap) != 0 {
            return;
        }
        let soft = used
            .saturating_add(RENDER_TIMEOUT.as_secs())
            .saturating_add(5);
        cap.rlim_cur = soft.min(cap.rlim_max);
        libc::setrlimit(libc::RLIMIT_CPU, &cap);
    }
}

#[cfg(not(unix))]
fn limit_cpu_for_one_rendering() {}

#[cfg(unix)]
/// A running worker, seen from the caller.
struct Worker {
    exe: PathBuf,
    child: Child,
    requests: std::os::unix::net::UnixStream,
    replies: Receiver<String>,
}

#[cfg(unix)]
/// This process's worker (each plugin has its own: statics are per library).
static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

#[cfg(unix)]
impl Worker {
    fn start(exe: &std::path::Path) -> Result<Worker, TemplateError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            TemplateError::Render(format!(
                "could not start the process that renders chat templates ({} {WORKER_ARG}): {what}: {e}",
                exe.display()
            ))
        };
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| failed("socket", &e))?;
        let theirs_out = theirs.try_clone().map_err(|e| failed("socket", &e))?;
        let child = Command::new(exe)
            .arg(WORKER_ARG)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs_out)))
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| failed("spawn", &e))?;
        let reader = ours.try_clone().map_err(|e| failed("socket", &e))?;
        let (tx, replies) = mpsc::channel();
        std::thread::Builder::new()
            .name("template-worker-reader".into())
            .spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| failed("thread", &e))?;
        let mut worker = Worker {
            exe: exe.to_path_buf(),
            child,
            requests: ours,
            replies,
        };
        match worker.replies.recv_timeout(START_TIMEOUT) {
            Ok(line) if line == HANDSHAKE => Ok(worker),
            Ok(line) => {
                worker.stop();
                let said: String = line.chars().take(80).collect();
                Err(failed(
                    "it is not a clemhost template worker, it said",
                    &format!("{said:?}"),
                ))
            }
            Err(_) => {
                let status = worker.stop();
                Err(failed("it did not start", &status))
            }
        }
    }

    /// Sends one line without ever raising SIGPIPE (clemhost restores its
    /// default action, which would end the whole process on a dead worker).
    fn send(&mut self, line: &str) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            // SAFETY: the pointer and length describe `rest`, which lives
            // across the call; the descriptor is ours and open.
            let n = unsafe {
                libc::send(
                    self.requests.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            rest = &rest[usize::try_from(n).unwrap_or(0)..];
        }
        Ok(())
    }

    /// Kills the worker (if it still runs) and says how it ended.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => describe_status(status),
            Err(e) => format!("its status is unknown: {e}"),
        }
    }
}

#[cfg(unix)]
fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("it exited with status {code}"),
        (None, Some(libc::SIGABRT)) => "it aborted (out of memory)".into(),
        (None, Some(libc::SIGKILL)) => "it was killed".into(),
        (None, Some(libc::SIGXCPU)) => "it ran out of CPU time".into(),
        (None, Some(sig)) => format!("it ended by signal {sig}"),
        (None, None) => "it ended".into(),
    }
}

#[cfg(unix)]
/// Renders `source` with `input` in this process's worker (`exe`), starting
/// one when there is none or the last one ended.
pub(crate) fn render(
    exe: &std::path::Path,
    source: &str,
    input: &RenderInput,
) -> Result<String, TemplateError> {
    let line = serde_json::to_string(&Request::new(source, input))
        .map_err(|e| TemplateError::Input(format!("the conversation cannot be sent: {e}")))?;
    let mut slot = WORKER.lock().unwrap_or_else(PoisonError::into_inner);
    // A worker that ended since the last rendering (killed from outside)
    // is replaced before it is written to.
    // (And one of another executable: the variable changed.)
    if let Some(w) = slot.as_mut() {
        if w.exe != exe || !matches!(w.child.try_wait(), Ok(None)) {
            w.stop();
            *slot = None;
        }
    }
    let worker = match slot.as_mut() {
        Some(w) => w,
        None => slot.insert(Worker::start(exe)?),
    };
    if let Err(e) = worker.send(&line) {
        let status = worker.stop();
        *slot = None;
        return Err(TemplateError::Render(format!(
            "the process that renders chat templates stopped taking requests ({e}; {status})"
        )));
    }
    match worker.replies.recv_timeout(RENDER_TIMEOUT) {
        Ok(reply) => match serde_json::from_str::<Reply>(&reply) {
            Ok(Reply::Rendered(text)) => Ok(text),
            Ok(Reply::Failed(e)) => Err(e),
            Err(e) => {
                worker.stop();
                *slot = None;
                Err(TemplateError::Render(format!(
                    "the process that renders chat templates answered something unreadable: {e}"
                )))
            }
        },
        Err(RecvTimeoutError::Timeout) => {
            worker.stop();
            *slot = None;
            Err(TemplateError::Limit(format!(
                "rendering was stopped after {} s, the most one rendering may take (with {} GiB of memory): \
                 a template that walks or builds values beyond reason ends so",
                RENDER_TIMEOUT.as_secs(),
                WORKER_MEMORY_BYTES >> 30
            )))
        }
        Err(RecvTimeoutError::Disconnected) => {
            let status = worker.stop();
            *slot = None;
            Err(TemplateError::Limit(format!(
                "rendering was stopped: the process that renders chat templates ended ({status}); \
                 one rendering may take {} GiB of memory and {} s, and a template that walks or builds \
                 values beyond reason ends so",
                WORKER_MEMORY_BYTES >> 30,
                RENDER_TIMEOUT.as_secs()
            )))
        }
    }
}
