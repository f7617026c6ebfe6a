//! A Python worker process (`clemhost_games` run as `__main__`) and the
//! host's end of its pipe: jobs go in one after the other; episodes are
//! handed out to the job's seats as they ask, model calls come out and are
//! answered by the host's models (several at once), episode outcomes are
//! collected. A worker also scores and transcribes played episodes with
//! clemcore's code ([`records`]). The messages are described in
//! `python/clemhost_games/protocol.py`.

use super::python::Python;
use crate::games::{ModelReply, PlayerModel};
use crate::runner::StopToken;
use clemhost_plugin_sdk::Message;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The protocol version both sides speak.
pub const PROTOCOL_VERSION: u64 = 4;

/// What the host does at a job's turning points (one value per job). A
/// `play` job uses the first three, a `score` or `transcribe` job
/// [`WorkerHost::written`]; a message of the other kind ends the job.
/// `seat` is the number the job gave the seat that sent the message.
pub trait WorkerHost: Sync {
    /// The seat writes into `run_dir` (clemcore named it after the models).
    fn ready(&self, seat: usize, run_dir: &Path) -> Result<(), String> {
        let _ = (seat, run_dir);
        Err("the Python worker said where it plays in a job that plays none".into())
    }
    /// The seat's next episode, `(experiment, game_id)`; `None`: no more.
    fn next(&self, seat: usize) -> Result<Option<(String, u64)>, String> {
        let _ = seat;
        Err("the Python worker asked for an episode in a job that plays none".into())
    }
    /// An episode of the seat ended and clemcore has written all its files.
    fn episode_ended(&self, seat: usize, report: &EpisodeReport) -> Result<(), String> {
        let _ = (seat, report);
        Err("the Python worker reported a played episode in a job that plays none".into())
    }
    /// A `score` or `transcribe` job wrote (or failed to write) one episode's files.
    fn written(&self, report: &WrittenReport) -> Result<(), String> {
        let _ = report;
        Err("the Python worker reported written records in a job that plays".into())
    }
    /// Whether the worker is to be ended now (Ctrl-C, or the run failed
    /// elsewhere); checked every 50 ms.
    fn cancelled(&self) -> bool;
}

/// One episode of a `score` or `transcribe` job, as the worker reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct WrittenReport {
    /// The episode's folder, as the host named it in the job.
    pub episode: PathBuf,
    /// Why its files could not be written (the old ones are left as they were).
    pub error: Option<EpisodeFailure>,
}

/// How one episode ended, as the worker reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct EpisodeReport {
    /// The experiment's name.
    pub experiment: String,
    /// The instance's `game_id`.
    pub game_id: u64,
    /// The exception that ended it early, if any.
    pub error: Option<EpisodeFailure>,
}

/// An exception that ended an episode inside clemcore.
#[derive(Clone, Debug, PartialEq)]
pub struct EpisodeFailure {
    /// The Python exception's type name.
    pub error_type: String,
    /// Its message.
    pub message: String,
    /// For a model call the host could not answer: the backend error kind.
    pub kind: Option<String>,
}

/// What one job of a worker did.
#[derive(Debug, Default)]
pub struct WorkerOutcome {
    /// One entry per episode that started, with the seat that played it.
    pub episodes: Vec<(usize, EpisodeReport)>,
    /// Model calls answered.
    pub requests: u64,
    /// Tokens the backends reported.
    pub tokens: u64,
    /// The worker was ended early ([`WorkerHost::cancelled`]).
    pub interrupted: bool,
}

/// Why a worker could not play its job.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// It could not be started.
    #[error("cannot start {0}")]
    Spawn(String),
    /// It stopped before finishing (with the end of its log).
    #[error("{0}")]
    Failed(String),
}

/// Does a `score` or `transcribe` job (its `task`) in a new worker; each
/// episode's outcome goes to [`WorkerHost::written`]. No model is called.
pub fn records(
    python: &Python,
    job: &Map<String, Value>,
    stop: &StopToken,
    host: &dyn WorkerHost,
) -> Result<WorkerOutcome, WorkerError> {
    let _no_sigpipe = super::no_sigpipe::Guard::new();
    let worker = Worker::start(python, &|| host.cancelled())?;
    let outcome = worker.job(job, &[], stop, host)?;
    worker.finish();
    Ok(outcome)
}

/// A running worker process. It does one job after the other
/// ([`Worker::job`]) until [`Worker::finish`] closes its input; a job that
/// fails or is cancelled kills it.
///
/// Writes to a worker that died are errors only while SIGPIPE is blocked:
/// the thread that owns a worker holds a [`super::no_sigpipe::Guard`].
pub struct Worker {
    child: Mutex<Child>,
    input: Mutex<ChildStdin>,
    lines: Mutex<std::io::Lines<BufReader<ChildStdout>>>,
    /// The end of the worker's log: it explains a failure.
    tail: Arc<Mutex<VecDeque<String>>>,
    log: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Worker {
    /// Starts a worker and waits for its `hello` (clemcore imported);
    /// ends it as soon as `cancelled()`.
    pub fn start(
        python: &Python,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Worker, WorkerError> {
        let mut path = python.package_root.clone().into_os_string();
        if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(old);
        }
        let mut child = Command::new(&python.interpreter)
            // Not `-m clemhost_games`: that would put the working directory
            // first on `sys.path` (see `WITHOUT_CWD_ON_PATH`).
            .arg("-c")
            .arg(format!(
                "{}import runpy\nrunpy.run_module('clemhost_games', run_name='__main__', alter_sys=True)\n",
                super::python::WITHOUT_CWD_ON_PATH
            ))
            .env("PYTHONPATH", path)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| WorkerError::Spawn(format!("{}: {e}", python.interpreter.display())))?;
        let (Some(input), Some(output), Some(errors)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three pipes were requested");
        };
        // The worker's log goes to the debug log; its tail explains a failure.
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let log = {
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(errors).lines().map_while(|l| l.ok()) {
                    tracing::debug!(target: "clemhost::python", "{line}");
                    let mut t = lock(&tail);
                    if t.len() == 20 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        };
        let worker = Worker {
            child: Mutex::new(child),
            input: Mutex::new(input),
            lines: Mutex::new(BufReader::new(output).lines()),
            tail,
            log: Mutex::new(Some(log)),
        };
        let hello = worker.watched(cancelled, || {
            let (kind, body) = worker.receive()?;
            if kind != "hello" {
                return Err(format!(
                    "the Python worker sent '{kind}' before its hello"
                ));
            }
            let version = body.get("protocol").and_then(Value::as_u64);
            if version != Some(PROTOCOL_VERSION) {
                return Err(format!(
                    "the Python worker speaks protocol {version:?}, this clemhost {PROTOCOL_VERSION}: its package is from another clemhost"
                ));
            }
            Ok(())
        });
        match hello {
            Ok(()) => Ok(worker),
            Err(message) => Err(WorkerError::Failed(worker.end(&message))),
        }
    }

    /// Does one job: its messages until `done`. `players` answer the calls
    /// of the job's players (index for index), several at once when the
    /// job has several seats. When `host.cancelled()`, the worker is killed
    /// and the outcome says `interrupted`; after that, or an error, the
    /// worker is gone.
    pub fn job(
        &self,
        job: &Map<String, Value>,
        players: &[PlayerModel],
        stop: &StopToken,
        host: &dyn WorkerHost,
    ) -> Result<WorkerOutcome, WorkerError> {
        let mut outcome = WorkerOutcome::default();
        let result = self.watched(&|| host.cancelled(), || {
            self.converse(job, players, stop, host, &mut outcome)
        });
        match result {
            Ok(()) => Ok(outcome),
            Err(message) => {
                let message = self.end(&message);
                if host.cancelled() {
                    outcome.interrupted = true;
                    Ok(outcome)
                } else {
                    Err(WorkerError::Failed(message))
                }
            }
        }
    }

    /// Closes the worker's input (it then exits) and waits for it.
    pub fn finish(self) {
        drop(self.input);
        let _ = lock(&self.child).wait();
        if let Some(log) = lock(&self.log).take() {
            let _ = log.join();
        }
    }

    fn kill(&self) {
        let _ = lock(&self.child).kill();
    }

    /// Kills the worker, waits for it and returns `message` with how it
    /// ended and the end of its log.
    fn end(&self, message: &str) -> String {
        self.kill();
        let status = lock(&self.child).wait();
        if let Some(log) = lock(&self.log).take() {
            let _ = log.join();
        }
        let tail = lock(&self.tail)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        if tail.is_empty() {
            format!("{message} ({})", describe(status))
        } else {
            format!(
                "{message} ({}); the worker's last log lines:\n{tail}",
                describe(status)
            )
        }
    }

    /// Runs `f` while a thread kills the worker once `cancelled()`.
    fn watched<R>(&self, cancelled: &(dyn Fn() -> bool + Sync), f: impl FnOnce() -> R) -> R {
        let finished = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !finished.load(Ordering::Relaxed) {
                    if cancelled() {
                        self.kill();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let r = f();
            finished.store(true, Ordering::Relaxed);
            r
        })
    }

    fn send(&self, value: &Value) -> Result<(), String> {
        let mut line = serde_json::to_string(value).expect("JSON values serialise");
        line.push('\n');
        let mut input = lock(&self.input);
        input
            .write_all(line.as_bytes())
            .and_then(|()| input.flush())
            .map_err(|e| format!("the Python worker stopped reading: {e}"))
    }

    /// The next message: its kind and body.
    fn receive(&self) -> Result<(String, Map<String, Value>), String> {
        let line = match lock(&self.lines).next() {
            Some(Ok(l)) => l,
            Some(Err(e)) => return Err(format!("reading from the Python worker failed: {e}")),
            None => return Err("the Python worker ended without finishing its job".into()),
        };
        let message: Map<String, Value> = serde_json::from_str(&line).map_err(|e| {
            format!(
                "the Python worker sent a line that is not a JSON object ({e}): {:.120}",
                line
            )
        })?;
        let Some((kind, body)) = message.into_iter().next() else {
            return Err("the Python worker sent an empty message".into());
        };
        match body {
            Value::Object(o) => Ok((kind, o)),
            _ => Err(format!(
                "the Python worker's '{kind}' message is not an object"
            )),
        }
    }

    fn converse(
        &self,
        job: &Map<String, Value>,
        players: &[PlayerModel],
        stop: &StopToken,
        host: &dyn WorkerHost,
        outcome: &mut WorkerOutcome,
    ) -> Result<(), String> {
        self.send(&json!({ "job": job }))?;
        let requests = AtomicU64::new(0);
        let tokens = AtomicU64::new(0);
        // Set by a call answered after Ctrl-C: that answer is not sent.
        let interrupted = AtomicBool::new(false);
        let result = std::thread::scope(|s| loop {
            if interrupted.load(Ordering::SeqCst) {
                // The answer may be the plugin's "cancelled": handed to the
                // game, it would end the episode as a failure that clemcore
                // writes out. Unanswered, the episode stays unplayed and
                // `--resume` plays it.
                return Err("interrupted".to_string());
            }
            let (kind, body) = self.receive()?;
            let seat = || {
                body.get("seat")
                    .and_then(Value::as_u64)
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| format!("the Python worker's '{kind}' names no seat"))
            };
            match kind.as_str() {
                "ready" => {
                    let seat = seat()?;
                    let run_dir = body
                        .get("run_dir")
                        .and_then(Value::as_str)
                        .map(PathBuf::from)
                        .ok_or("the Python worker's 'ready' names no run_dir")?;
                    host.ready(seat, &run_dir)?;
                    self.send(&json!({"seat": seat, "ready": {}}))?;
                }
                "next" => {
                    let seat = seat()?;
                    let episode = if stop.is_stopped() {
                        None
                    } else {
                        host.next(seat)?
                    };
                    let episode = episode.map(|(e, i)| json!([e, i]));
                    self.send(&json!({"seat": seat, "next": {"episode": episode}}))?;
                }
                "call" => {
                    let seat = seat()?;
                    let (requests, tokens, interrupted) = (&requests, &tokens, &interrupted);
                    // Calls of different seats are answered at once.
                    s.spawn(move || {
                        let _no_sigpipe = super::no_sigpipe::Guard::new();
                        let reply =
                            (!stop.is_stopped()).then(|| answer(&body, players, requests, tokens));
                        match reply.filter(|_| !stop.is_stopped()) {
                            // A failed write means the worker is gone: the
                            // reader sees it end.
                            Some(reply) => {
                                let _ = self.send(&json!({"seat": seat, "reply": reply}));
                            }
                            None => {
                                interrupted.store(true, Ordering::SeqCst);
                                self.kill();
                            }
                        }
                    });
                }
                "episode" => {
                    let seat = seat()?;
                    let report = EpisodeReport {
                        experiment: str_field(&body, "experiment"),
                        game_id: body.get("game_id").and_then(Value::as_u64).unwrap_or(0),
                        error: body.get("error").and_then(Value::as_object).map(|e| {
                            EpisodeFailure {
                                error_type: str_field(e, "type"),
                                message: str_field(e, "message"),
                                kind: e
                                    .get("kind")
                                    .and_then(Value::as_str)
                                    .filter(|k| !k.is_empty())
                                    .map(String::from),
                            }
                        }),
                    };
                    host.episode_ended(seat, &report)?;
                    outcome.episodes.push((seat, report));
                }
                "written" => {
                    let episode = body
                        .get("episode")
                        .and_then(Value::as_str)
                        .map(PathBuf::from)
                        .ok_or("the Python worker's 'written' names no episode")?;
                    let error = body.get("error").and_then(Value::as_object).map(|e| {
                        if let Some(tb) = e.get("traceback").and_then(Value::as_str) {
                            tracing::debug!(target: "clemhost::python", "{}: {tb}", episode.display());
                        }
                        EpisodeFailure {
                            error_type: str_field(e, "type"),
                            message: str_field(e, "message"),
                            kind: None,
                        }
                    });
                    host.written(&WrittenReport { episode, error })?;
                }
                "say" => {
                    // What the game prints while a person plays.
                    let text = str_field(&body, "text");
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(crate::error::escape_for_terminal(&text).as_bytes());
                    let _ = err.flush();
                }
                "input" => {
                    let seat = seat()?;
                    let mut line = String::new();
                    let line = match std::io::stdin().lock().read_line(&mut line) {
                        Ok(0) | Err(_) => Value::Null,
                        Ok(_) => line.trim_end_matches(['\n', '\r']).into(),
                    };
                    self.send(&json!({"seat": seat, "input": {"line": line}}))?;
                }
                "done" => return Ok(()),
                "fatal" => {
                    let mut m = str_field(&body, "message");
                    if let Some(tb) = body.get("traceback").and_then(Value::as_str) {
                        tracing::debug!(target: "clemhost::python", "{tb}");
                        if let Some(last) = tb
                            .lines()
                            .rev()
                            .find(|l| l.trim_start().starts_with("File "))
                        {
                            m.push_str(&format!(
                                " (at{})",
                                last.trim_start().trim_start_matches("File")
                            ));
                        }
                    }
                    let what = match job.get("task").and_then(Value::as_str) {
                        Some("score") => "the game's episodes could not be scored",
                        Some("transcribe") => "the episodes could not be transcribed",
                        _ => "the game could not be played",
                    };
                    return Err(format!("{what}: {m}"));
                }
                other => {
                    return Err(format!(
                        "the Python worker sent an unknown message '{other}'"
                    ))
                }
            }
        });
        outcome.requests += requests.into_inner();
        outcome.tokens += tokens.into_inner();
        if result.is_ok() && interrupted.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        result
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => format!("the Python worker exited with {s}"),
        Err(e) => format!("the Python worker could not be waited for: {e}"),
    }
}

fn str_field(o: &Map<String, Value>, key: &str) -> String {
    o.get(key)
        .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
        .unwrap_or_default()
}

/// Answers one `call`: the player's model through its plugin (with the
/// host's retries, deadlines and limits).
fn answer(
    body: &Map<String, Value>,
    players: &[PlayerModel],
    requests: &AtomicU64,
    tokens: &AtomicU64,
) -> Value {
    let error = |kind: &str, message: String| json!({"error": {"kind": kind, "message": message}});
    let index = body
        .get("player")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let Some(PlayerModel::Model(model)) = usize::try_from(index).ok().and_then(|i| players.get(i))
    else {
        return error(
            "protocol",
            format!("player {index} is not answered by a model of the host"),
        );
    };
    let messages: Vec<Message> = match body
        .get("messages")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
    {
        Ok(Some(m)) => m,
        Ok(None) => return error("protocol", "the call has no messages".into()),
        Err(e) => return error("protocol", format!("the call's messages do not read: {e}")),
    };
    let reply: ModelReply = model.generate(&messages);
    match reply.outcome {
        Ok(text) => {
            requests.fetch_add(1, Ordering::Relaxed);
            tokens.fetch_add(reply.tokens, Ordering::Relaxed);
            let last = reply.attempts.last();
            json!({
                "prompt": last.map_or(Value::Null, |a| a.prompt.clone()),
                "response": last.map_or(Value::Null, |a| a.response.clone()),
                "text": text,
            })
        }
        Err(e) => error(e.kind.as_str(), e.to_string()),
    }
}
