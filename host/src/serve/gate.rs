//! The way into a model: at most `limit` requests at the plugin at once,
//! at most `queue` more waiting in arrival order, and, when the registry
//! entry sets `rate_limit.requests_per_minute`, a least spacing between
//! call starts. A request that finds the queue full is refused at once
//! (the route answers 429 with `Retry-After`) instead of waiting without
//! bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A model's gate.
#[derive(Debug)]
pub struct Gate {
    slots: Arc<Semaphore>,
    limit: usize,
    queue: usize,
    waiting: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
    spacing: Option<Duration>,
    next_start: Mutex<Option<Instant>>,
}

/// Held while a request is at the plugin; frees its slot when dropped
/// (which is when the plugin's call returns, even after the client left).
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// Counts a waiting request until it gets its slot or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    /// A gate for `limit` requests at once (at least 1) and `queue` waiting;
    /// `requests_per_minute` 0 means no spacing.
    pub fn new(limit: usize, queue: usize, requests_per_minute: f64) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Gate {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            queue,
            waiting: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            spacing: (requests_per_minute > 0.0)
                .then(|| Duration::from_secs_f64(60.0 / requests_per_minute)),
            next_start: Mutex::new(None),
        }
    }

    /// Requests allowed at the plugin at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests allowed to wait.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Requests at the plugin now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits for a slot (in arrival order); `Err` at once when the queue is full.
    /// Dropping the future (client gone, deadline) leaves the queue.
    pub async fn enter(&self) -> Result<Slot, QueueFull> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    return Err(QueueFull);
                }
                let _waiting = Waiting(&self.waiting);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the gate's semaphore is never closed")
            }
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            _permit: permit,
            in_flight: self.in_flight.clone(),
        };
        if let Some(spacing) = self.spacing {
            let start = {
                let mut next = self.next_start.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let start = next.map_or(now, |t| t.max(now));
                *next = Some(start + spacing);
                start
            };
            tokio::time::sleep_until(start).await;
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_with_the_slots() {
        let gate = Arc::new(Gate::new(2, 1, 0.0));
        let a = gate.enter().await.expect("slot 1");
        let _b = gate.enter().await.expect("slot 2");
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.enter().await.map(|_| ()) });
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.enter().await.err(), Some(QueueFull));
        assert_eq!(gate.in_flight(), 2);
        drop(a);
        waiter.await.expect("joined").expect("got the freed slot");
        assert_eq!(gate.waiting(), 0);
    }

    #[tokio::test]
    async fn requests_per_minute_space_the_starts() {
        let gate = Gate::new(4, 4, 600.0); // one start per 100 ms
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(gate.enter().await.expect("slot"));
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t0.elapsed()
        );
    }
}
