//! Runs concurrent requests on one model as one batch.
//!
//! There is no background thread: a caller that finds the model idle
//! becomes the leader, waits a moment for other callers to queue, takes
//! every queued request (up to the batch limit) and runs them together;
//! the others wait for their row's result. When the batch ends, any caller
//! still queued leads the next one. A caller whose request is cancelled or
//! times out leaves at once; its row is dropped from the running batch.

use crate::engine::{Engine, Prepared, RowTokens};
use clemhost_plugin_sdk::{BackendError, Ctx};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a waiting caller sleeps between checks of its cancel flag.
const POLL: Duration = Duration::from_millis(10);

struct Job {
    prepared: Prepared,
    enqueued: Instant,
    abandoned: AtomicBool,
    result: Mutex<Option<(Result<RowTokens, BackendError>, f64)>>,
}

#[derive(Default)]
struct State {
    queue: Vec<Arc<Job>>,
    running: bool,
}

/// The batching queue of one model.
pub struct Batcher {
    state: Mutex<State>,
    wake: Condvar,
    max_batch: usize,
    gather: Duration,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl Batcher {
    /// A queue that runs at most `max_batch` requests together and waits
    /// `gather` for more requests before starting a batch.
    pub fn new(max_batch: usize, gather: Duration) -> Self {
        Batcher {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            max_batch: max_batch.max(1),
            gather,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` inconsistent
        // (every update is a single push, drain or flag store).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one request, alone or batched with concurrent ones. Returns its
    /// tokens and the milliseconds it waited in the queue.
    pub fn submit(
        &self,
        engine: &Engine,
        prepared: Prepared,
        ctx: &Ctx,
    ) -> Result<(RowTokens, f64), BackendError> {
        let job = Arc::new(Job {
            prepared,
            enqueued: Instant::now(),
            abandoned: AtomicBool::new(false),
            result: Mutex::new(None),
        });
        self.lock().queue.push(Arc::clone(&job));
        self.wake.notify_all();
        loop {
            if let Some((result, queue_ms)) = take(&job.result) {
                return result.map(|row| (row, queue_ms));
            }
            if let Err(e) = ctx.check() {
                job.abandoned.store(true, Ordering::Relaxed);
                self.lock().queue.retain(|j| !Arc::ptr_eq(j, &job));
                return Err(e);
            }
            let mut state = self.lock();
            if !state.running && state.queue.iter().any(|j| Arc::ptr_eq(j, &job)) {
                state.running = true;
                drop(state);
                self.lead(engine, &job, ctx);
                continue;
            }
            let (guard, _) = self
                .wake
                .wait_timeout(state, POLL)
                .unwrap_or_else(|p| p.into_inner());
            drop(guard);
        }
    }

    fn lead(&self, engine: &Engine, own: &Arc<Job>, ctx: &Ctx) {
        if !self.gather.is_zero() {
            std::thread::sleep(self.gather);
        }
        let batch: Vec<Arc<Job>> = {
            let mut state = self.lock();
            let n = state.queue.len().min(self.max_batch);
            state.queue.drain(..n).collect()
        };
        let started = Instant::now();
        let rows: Vec<&Prepared> = batch.iter().map(|j| &j.prepared).collect();
        let stop = |i: usize| {
            batch[i].abandoned.load(Ordering::Relaxed)
                || (Arc::ptr_eq(&batch[i], own) && ctx.check().is_err())
        };
        let outcome = engine.run_batch(&rows, &stop);
        for (i, job) in batch.iter().enumerate() {
            let queue_ms = started.duration_since(job.enqueued).as_secs_f64() * 1e3;
            let result = match &outcome {
                Ok(rows) => Ok(rows[i].clone()),
                Err(e) => Err(BackendError::from(clone_error(e))),
            };
            *job.result.lock().unwrap_or_else(|p| p.into_inner()) = Some((result, queue_ms));
        }
        self.lock().running = false;
        self.wake.notify_all();
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The batch's error for each of its rows (errors are not `Clone`).
fn clone_error(e: &crate::error::Error) -> crate::error::Error {
    crate::error::Error::Request(e.to_string())
}
