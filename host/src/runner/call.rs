//! Calling a model behind a plugin: with a deadline, the run's stop token
//! as the plugin's cancel flag, concurrency limits and retries with back-off.

use super::limits::{sleep_unless_stopped, Limiter, RetryPolicy};
use super::StopToken;
use crate::games::{CallRecord, ChatModel, ModelReply};
use crate::plugins::ModelHandle;
use crate::results::Timestamp;
use clemhost_plugin_sdk::{BackendError, ErrorKind, GenArgs, GenerateRequest, Generation, Message};
use clemhost_pyfacts::record::clem_player;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Extra time the host gives a plugin past the deadline it was told about
/// before it stops waiting for the call.
const GRACE: Duration = Duration::from_secs(2);
/// How often a waiting call looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// A model opened in a plugin, as a player uses it.
pub struct PluginModel {
    name: String,
    handle: ModelHandle,
    /// Add clemcore's `clem_player` object to recorded responses (unless the
    /// plugin's manifest says `raw_response_as_is`, as llamacpp's does).
    decorate: bool,
    gen_args: GenArgs,
    limiters: Vec<Arc<Limiter>>,
    calls: CallSettings,
    stop: StopToken,
    counter: AtomicU64,
    stats: Arc<CallStats>,
}

/// How every call of a model is made: retries and the deadline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallSettings {
    /// When and how often a failed call is tried again.
    pub retry: RetryPolicy,
    /// The most time one call may take (`--timeout`); `None`: no deadline.
    pub timeout: Option<Duration>,
}

/// What all calls of a run share: totals for the summary and the benchmark.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Attempts that were retried.
    pub retries: AtomicU64,
    /// Microseconds from the host starting a timed call to it getting the answer.
    pub host_micros: AtomicU64,
    /// Microseconds the plugins said they spent (`timings.total_ms`), when known.
    pub plugin_micros: AtomicU64,
    /// Calls whose plugin reported `timings.total_ms`.
    pub timed_calls: AtomicU64,
}

impl PluginModel {
    /// Wraps an open model. `limiters` are waited for, in order, before
    /// each attempt; `stop` is handed to the plugin as the cancel flag.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        handle: ModelHandle,
        decorate: bool,
        gen_args: GenArgs,
        limiters: Vec<Arc<Limiter>>,
        calls: CallSettings,
        stop: StopToken,
        stats: Arc<CallStats>,
    ) -> Self {
        PluginModel {
            name,
            handle,
            decorate,
            gen_args,
            limiters,
            calls,
            stop,
            counter: AtomicU64::new(0),
            stats,
        }
    }

    /// Runs `generate` on its own thread and waits for it until
    /// `hard_deadline` or a stop. The plugin was told the deadline
    /// (`timeout_ms`) and reads the run's stop token as its cancel flag, so
    /// past the deadline the host only stops waiting; the thread ends when
    /// the plugin returns, and its late answer is dropped.
    fn call_with_deadline(
        &self,
        request: &GenerateRequest,
        hard_deadline: Instant,
    ) -> Result<Generation, BackendError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let (handle, request, stop) = (self.handle.clone(), request.clone(), self.stop.clone());
            let spawned = std::thread::Builder::new()
                .name("clemhost-call".into())
                .spawn(move || {
                    let _ = tx.send(handle.generate(&request, stop.abi_flag()));
                });
            if let Err(e) = spawned {
                return Err(BackendError::internal(format!(
                    "cannot start a thread for the call: {e}"
                )));
            }
        }
        loop {
            match rx.recv_timeout(POLL) {
                Ok(r) => return r,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(BackendError::new(
                        ErrorKind::Panic,
                        "the call's thread ended without an answer",
                    ))
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.stop.is_stopped() {
                        return Err(cancelled());
                    }
                    if Instant::now() >= hard_deadline {
                        return Err(BackendError::new(
                            ErrorKind::Timeout,
                            format!(
                                "no answer within {:.1} s (--timeout); the plugin did not stop by itself",
                                self.calls.timeout.unwrap_or_default().as_secs_f64()
                            ),
                        ));
                    }
                }
            }
        }
    }

    /// One attempt: waits for the limiters, then calls the model (on its own
    /// thread when there is a deadline to enforce).
    fn attempt(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let mut permits = Vec::with_capacity(self.limiters.len());
        for l in &self.limiters {
            match l.acquire(&self.stop) {
                Some(p) => permits.push(p),
                None => return Err(cancelled()),
            }
        }
        let started = Instant::now();
        let result = match self.calls.timeout {
            // No deadline: call on this thread (no hand-off to another
            // thread); a stop reaches the plugin through the stop token.
            None => self.handle.generate(request, self.stop.abi_flag()),
            Some(timeout) => self.call_with_deadline(request, started + timeout + GRACE),
        };
        drop(permits);
        let elapsed = started.elapsed();
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        if let Ok(g) = &result {
            if let Some(total) = g.timings.as_ref().and_then(|t| t.total_ms) {
                self.stats
                    .host_micros
                    .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
                self.stats
                    .plugin_micros
                    .fetch_add((total * 1000.0) as u64, Ordering::Relaxed);
                self.stats.timed_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

/// The error of a call whose server asks to wait `asked` before trying
/// again, longer than `retry` allows (`max_retry_after`).
pub fn retry_after_refused(e: &BackendError, asked: Duration, retry: &RetryPolicy) -> BackendError {
    // The new error shows its kind itself: repeat the old one's only when it
    // differs (`rate_limited: unavailable: ...`, not `rate_limited: rate_limited: ...`).
    let what = if e.kind == ErrorKind::RateLimited {
        e.message.clone()
    } else {
        e.to_string()
    };
    BackendError::new(
        ErrorKind::RateLimited,
        format!(
            "{what}; the server asks to wait {:.0} s before trying again, more than clemhost waits ({} s); try again later",
            asked.as_secs_f64(),
            retry.max_retry_after.as_secs()
        ),
    )
}

fn cancelled() -> BackendError {
    BackendError::new(ErrorKind::Cancelled, "the run was interrupted")
}

/// The response object a call records (`raw_response_obj`): the plugin's
/// response as an object (a non-object one under `response`), with
/// clemcore's `clem_player` added when `decorate` is set and the plugin did
/// not add it. `clemhost serve` returns the same object to its clients.
pub fn recorded_response(
    response: Value,
    decorate: bool,
    start: &Timestamp,
    took: Duration,
    text: &str,
    model: &str,
) -> Value {
    let mut response = match response {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("response".into(), other);
            m
        }
    };
    if decorate && !response.contains_key("clem_player") {
        response.insert(
            "clem_player".into(),
            clem_player(start.local(), took, text, model),
        );
    }
    Value::Object(response)
}

impl ChatModel for PluginModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn generate(&self, messages: &[Message]) -> ModelReply {
        self.generate_with(messages, &self.gen_args)
    }
}

impl PluginModel {
    /// The generation arguments the model was opened with.
    pub fn gen_args(&self) -> &GenArgs {
        &self.gen_args
    }

    /// The plugin's model, for a caller that makes its own calls with a
    /// cancel flag per call (`serve`: a client that goes away cancels only
    /// its own request, which the model's one stop token cannot do).
    pub fn handle(&self) -> &ModelHandle {
        &self.handle
    }

    /// Whether recorded responses get clemcore's `clem_player` object (see
    /// [`recorded_response`]).
    pub fn decorates(&self) -> bool {
        self.decorate
    }

    /// Answers `messages` with other generation arguments than the model's
    /// own (for `serve`, where each request brings its own), with the same
    /// limits, retries and deadline as [`ChatModel::generate`].
    pub fn generate_with(&self, messages: &[Message], gen_args: &GenArgs) -> ModelReply {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let request = GenerateRequest {
            request_id: format!("{}-{n}", self.name),
            messages: messages.to_vec(),
            gen_args: Some(gen_args.clone()),
            timeout_ms: self.calls.timeout.map(|t| t.as_millis() as u64),
        };
        let mut attempts = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let start = Timestamp::now();
            let clock = Instant::now();
            let result = self.attempt(&request);
            let took = clock.elapsed();
            match result {
                Ok(g) => {
                    let response = recorded_response(
                        g.response,
                        self.decorate,
                        &start,
                        took,
                        &g.text,
                        &self.name,
                    );
                    attempts.push(CallRecord {
                        timestamp: Timestamp::now(),
                        prompt: g.prompt,
                        response,
                        error: None,
                    });
                    let tokens = g
                        .usage
                        .map(|u| u.prompt_tokens + u.completion_tokens)
                        .unwrap_or(0);
                    return ModelReply {
                        attempts,
                        outcome: Ok(g.text),
                        tokens,
                    };
                }
                Err(e) => {
                    if e.kind != ErrorKind::Cancelled {
                        attempts.push(CallRecord {
                            timestamp: Timestamp::now(),
                            prompt: serde_json::to_value(messages)
                                .expect("messages serialise to JSON"),
                            response: if self.decorate {
                                json!({"clem_player": clem_player(start.local(), took, "", &self.name)})
                            } else {
                                json!({})
                            },
                            error: Some(e.clone()),
                        });
                    }
                    let retry = e.kind.is_retryable()
                        && attempt < self.calls.retry.tries
                        && !self.stop.is_stopped();
                    if !retry {
                        return ModelReply {
                            attempts,
                            outcome: Err(e),
                            tokens: 0,
                        };
                    }
                    let retry_after = e.retry_after_ms.map(Duration::from_millis);
                    let delay = match self.calls.retry.delay(attempt, retry_after) {
                        Ok(d) => d,
                        Err(asked) => {
                            return ModelReply {
                                attempts,
                                outcome: Err(retry_after_refused(&e, asked, &self.calls.retry)),
                                tokens: 0,
                            }
                        }
                    };
                    tracing::warn!(
                        model = %self.name,
                        "attempt {attempt} of {} failed ({}); trying again in {:.1} s",
                        self.calls.retry.tries,
                        // The message quotes the server: no `\r` or bidi control reaches the log.
                        crate::error::escape_for_one_line(&e.to_string()),
                        delay.as_secs_f64()
                    );
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if !sleep_unless_stopped(delay, &self.stop) {
                        return ModelReply {
                            attempts,
                            outcome: Err(cancelled()),
                            tokens: 0,
                        };
                    }
                }
            }
        }
    }
}
