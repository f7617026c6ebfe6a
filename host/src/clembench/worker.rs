//! One Python worker process (`clemhost_games` run as `__main__`) and the host's
//! end of its pipe: the job goes in, model calls come out and are answered
//! by the host's models, episode outcomes are collected. A worker also
//! scores and transcribes played episodes with clemcore's code
//! ([`records`]). The messages are described in
//! `python/clemhost_games/protocol.py`.

use super::python::Python;
use crate::games::{ModelReply, PlayerModel};
use crate::runner::StopToken;
use clemhost_plugin_sdk::Message;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The protocol version both sides speak.
pub const PROTOCOL_VERSION: u64 = 3;

/// What the host does at a worker's turning points (one value per worker).
/// A `play` job uses the first two, a `score` or `transcribe` job
/// [`WorkerHost::written`]; a message of the other kind ends the worker.
pub trait WorkerHost: Sync {
    /// The worker writes into `run_dir` (clemcore named it after the
    /// models): the episodes it is to play, `(experiment, game_id)`.
    fn episodes(&self, run_dir: &Path) -> Result<Vec<(String, u64)>, String> {
        let _ = run_dir;
        Err("the Python worker asked for episodes to play in a job that plays none".into())
    }
    /// An episode ended and clemcore has written all its files.
    fn episode_ended(&self, run_dir: &Path, report: &EpisodeReport) -> Result<(), String> {
        let _ = (run_dir, report);
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

/// What a worker did.
#[derive(Debug, Default)]
pub struct WorkerOutcome {
    /// The run folder clemcore wrote into.
    pub run_dir: Option<PathBuf>,
    /// One entry per episode that started.
    pub episodes: Vec<EpisodeReport>,
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

/// Plays `job` in a new worker; `players` answer the calls of the job's
/// players (index for index). The worker is killed as soon as
/// `host.cancelled()`; its outcome then says `interrupted`.
pub fn play(
    python: &Python,
    job: &Map<String, Value>,
    players: &[PlayerModel],
    stop: &StopToken,
    host: &dyn WorkerHost,
) -> Result<WorkerOutcome, WorkerError> {
    run(python, job, players, stop, host)
}

/// Does a `score` or `transcribe` job (its `task`) in a new worker; each
/// episode's outcome goes to [`WorkerHost::written`]. No model is called.
pub fn records(
    python: &Python,
    job: &Map<String, Value>,
    stop: &StopToken,
    host: &dyn WorkerHost,
) -> Result<WorkerOutcome, WorkerError> {
    run(python, job, &[], stop, host)
}

fn run(
    python: &Python,
    job: &Map<String, Value>,
    players: &[PlayerModel],
    stop: &StopToken,
    host: &dyn WorkerHost,
) -> Result<WorkerOutcome, WorkerError> {
    // Writes to the worker after it died (Ctrl-C kills it) are errors.
    let _no_sigpipe = super::no_sigpipe::Guard::new();
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
    let (Some(mut input), Some(output), Some(errors)) =
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
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == 20 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        })
    };
    let child = Mutex::new(child);
    let kill = || {
        let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
    };
    let finished = AtomicBool::new(false);
    let mut outcome = WorkerOutcome::default();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                if host.cancelled() {
                    kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let r = converse(&mut input, output, job, players, stop, host, &mut outcome);
        finished.store(true, Ordering::Relaxed);
        r
    });
    drop(input);
    if result.is_err() {
        kill();
    }
    let status = child.into_inner().unwrap_or_else(|p| p.into_inner()).wait();
    let _ = log.join();
    if result.is_err() && host.cancelled() {
        outcome.interrupted = true;
        return Ok(outcome);
    }
    let tail = tail
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    match result {
        Ok(()) => Ok(outcome),
        Err(message) => Err(WorkerError::Failed(if tail.is_empty() {
            format!("{message} ({})", describe(status))
        } else {
            format!(
                "{message} ({}); the worker's last log lines:\n{tail}",
                describe(status)
            )
        })),
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => format!("the Python worker exited with {s}"),
        Err(e) => format!("the Python worker could not be waited for: {e}"),
    }
}

fn converse(
    input: &mut impl Write,
    output: impl std::io::Read,
    job: &Map<String, Value>,
    players: &[PlayerModel],
    stop: &StopToken,
    host: &dyn WorkerHost,
    outcome: &mut WorkerOutcome,
) -> Result<(), String> {
    let mut send = |value: Value| -> Result<(), String> {
        let mut line = serde_json::to_string(&value).expect("JSON values serialise");
        line.push('\n');
        input
            .write_all(line.as_bytes())
            .and_then(|()| input.flush())
            .map_err(|e| format!("the Python worker stopped reading: {e}"))
    };
    let mut lines = BufReader::new(output).lines();
    let mut started = false;
    loop {
        let line = match lines.next() {
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
        let body = match body {
            Value::Object(o) => o,
            _ => {
                return Err(format!(
                    "the Python worker's '{kind}' message is not an object"
                ))
            }
        };
        match kind.as_str() {
            "hello" => {
                let version = body.get("protocol").and_then(Value::as_u64);
                if version != Some(PROTOCOL_VERSION) {
                    return Err(format!(
                        "the Python worker speaks protocol {version:?}, this clemhost {PROTOCOL_VERSION}: its package is from another clemhost"
                    ));
                }
                if !started {
                    started = true;
                    send(json!({ "job": job }))?;
                }
            }
            "ready" => {
                let run_dir = body
                    .get("run_dir")
                    .and_then(Value::as_str)
                    .map(PathBuf::from)
                    .ok_or("the Python worker's 'ready' names no run_dir")?;
                let episodes = host.episodes(&run_dir)?;
                outcome.run_dir = Some(run_dir);
                send(json!({
                    "episodes": episodes.iter().map(|(e, i)| json!([e, i])).collect::<Vec<_>>()
                }))?;
            }
            "call" => {
                let reply = (!stop.is_stopped()).then(|| answer(&body, players, outcome));
                let Some(reply) = reply.filter(|_| !stop.is_stopped()) else {
                    // The answer may be the plugin's "cancelled": handed to
                    // the game, it would end the episode as a failure that
                    // clemcore writes out. Unanswered, the episode stays
                    // unplayed and `--resume` plays it.
                    return Err("interrupted".into());
                };
                send(json!({ "reply": reply }))?;
            }
            "episode" => {
                let report = EpisodeReport {
                    experiment: str_field(&body, "experiment"),
                    game_id: body.get("game_id").and_then(Value::as_u64).unwrap_or(0),
                    error: body
                        .get("error")
                        .and_then(Value::as_object)
                        .map(|e| EpisodeFailure {
                            error_type: str_field(e, "type"),
                            message: str_field(e, "message"),
                            kind: e
                                .get("kind")
                                .and_then(Value::as_str)
                                .filter(|k| !k.is_empty())
                                .map(String::from),
                        }),
                };
                let run_dir = outcome
                    .run_dir
                    .clone()
                    .ok_or("the Python worker reported an episode before 'ready'")?;
                host.episode_ended(&run_dir, &report)?;
                outcome.episodes.push(report);
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
    outcome: &mut WorkerOutcome,
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
            outcome.requests += 1;
            outcome.tokens += reply.tokens;
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
