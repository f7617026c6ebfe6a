//! Calling a model behind a plugin: on its own thread, with a deadline, a
//! cancel flag, concurrency limits and retries with back-off.

use super::limits::{sleep_unless_stopped, Limiter, RetryPolicy};
use crate::games::{CallRecord, ChatModel, ModelReply};
use crate::plugins::ModelHandle;
use crate::results::{python_timedelta, Timestamp};
use clemhost_plugin_sdk::abi::CANCEL_REQUESTED;
use clemhost_plugin_sdk::{BackendError, ErrorKind, GenArgs, GenerateRequest, Generation, Message};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
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
    /// Add clemcore's `clem_player` object to recorded responses (every
    /// backend but llamacpp, as clemcore does).
    decorate: bool,
    gen_args: GenArgs,
    limiters: Vec<Arc<Limiter>>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    stop: Arc<AtomicBool>,
    counter: AtomicU64,
    stats: Arc<CallStats>,
}

/// What all calls of a run share: totals (for the summary and the
/// benchmark) and the cancel flag raised for every call without a deadline
/// of its own when the run stops.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Set to `CANCEL_REQUESTED` by the runner when the run stops (Ctrl-C).
    pub cancel_in_flight: AtomicU8,
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
    /// Wraps an open model.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        handle: ModelHandle,
        decorate: bool,
        gen_args: GenArgs,
        limiters: Vec<Arc<Limiter>>,
        retry: RetryPolicy,
        timeout: Option<Duration>,
        stop: Arc<AtomicBool>,
        stats: Arc<CallStats>,
    ) -> Self {
        PluginModel {
            name,
            handle,
            decorate,
            gen_args,
            limiters,
            retry,
            timeout,
            stop,
            counter: AtomicU64::new(0),
            stats,
        }
    }

    /// Runs `generate` on its own thread and waits for it until
    /// `hard_deadline` or a stop, then sets the call's cancel flag and
    /// leaves the thread to finish by itself.
    fn call_with_deadline(
        &self,
        request: &GenerateRequest,
        hard_deadline: Instant,
    ) -> Result<Generation, BackendError> {
        let cancel = Arc::new(AtomicU8::new(0));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let (handle, request, cancel) = (self.handle.clone(), request.clone(), cancel.clone());
            let spawned = std::thread::Builder::new()
                .name("clemhost-call".into())
                .spawn(move || {
                    let _ = tx.send(handle.generate(&request, &cancel));
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
                    if self.stop.load(Ordering::Relaxed) {
                        cancel.store(CANCEL_REQUESTED, Ordering::Relaxed);
                        return Err(cancelled());
                    }
                    if Instant::now() >= hard_deadline {
                        cancel.store(CANCEL_REQUESTED, Ordering::Relaxed);
                        return Err(BackendError::new(
                            ErrorKind::Timeout,
                            format!(
                                "no answer within {:.1} s (--timeout); the plugin did not stop by itself",
                                self.timeout.unwrap_or_default().as_secs_f64()
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
        let result = match self.timeout {
            // No deadline: call on this thread (no hand-off to another
            // thread); a stop reaches the plugin through the run's shared flag.
            None => self.handle.generate(request, &self.stats.cancel_in_flight),
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
        response.insert("clem_player".into(), clem_player(start, took, text, model));
    }
    Value::Object(response)
}

/// clemcore's `clem_player` object.
fn clem_player(start: &Timestamp, took: Duration, text: &str, model: &str) -> Value {
    json!({
        "call_start": start.python_str(),
        "call_duration": python_timedelta(took),
        "response": text,
        "model_name": model,
    })
}

impl ChatModel for PluginModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn generate(&self, messages: &[Message]) -> ModelReply {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let request = GenerateRequest {
            request_id: format!("{}-{n}", self.name),
            messages: messages.to_vec(),
            gen_args: Some(self.gen_args.clone()),
            timeout_ms: self.timeout.map(|t| t.as_millis() as u64),
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
                                json!({"clem_player": clem_player(&start, took, "", &self.name)})
                            } else {
                                json!({})
                            },
                            error: Some(e.clone()),
                        });
                    }
                    let retry = e.kind.is_retryable()
                        && attempt < self.retry.tries
                        && !self.stop.load(Ordering::Relaxed);
                    if !retry {
                        return ModelReply {
                            attempts,
                            outcome: Err(e),
                            tokens: 0,
                        };
                    }
                    let delay = self
                        .retry
                        .delay(attempt, e.retry_after_ms.map(Duration::from_millis));
                    tracing::warn!(
                        model = %self.name,
                        "attempt {attempt} of {} failed ({e}); trying again in {:.1} s",
                        self.retry.tries,
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
