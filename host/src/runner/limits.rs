//! Limits on in-flight model calls and the retry policy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often waiting threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// A counting gate for in-flight calls, with an optional minimum spacing
/// between call starts (from a requests-per-minute limit).
#[derive(Debug)]
pub struct Limiter {
    /// Calls allowed at once (0 = no limit).
    max_in_flight: usize,
    /// Least time between two call starts.
    min_interval: Option<Duration>,
    state: Mutex<LimiterState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct LimiterState {
    in_flight: usize,
    next_start: Option<Instant>,
}

/// Held while a call is in flight; frees its slot when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a Limiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.limiter.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight = s.in_flight.saturating_sub(1);
        self.limiter.freed.notify_one();
    }
}

impl Limiter {
    /// A limiter; `max_in_flight` 0 means no limit, `requests_per_minute` 0 none.
    pub fn new(max_in_flight: usize, requests_per_minute: f64) -> Self {
        Limiter {
            max_in_flight,
            min_interval: (requests_per_minute > 0.0)
                .then(|| Duration::from_secs_f64(60.0 / requests_per_minute)),
            state: Mutex::new(LimiterState::default()),
            freed: Condvar::new(),
        }
    }

    /// The most calls allowed at once (0 = no limit).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Waits for a slot; `None` when `stop` was set while waiting.
    pub fn acquire(&self, stop: &AtomicBool) -> Option<Permit<'_>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let slot_free = self.max_in_flight == 0 || s.in_flight < self.max_in_flight;
            let now = Instant::now();
            let wait_until = s.next_start.filter(|t| *t > now);
            if slot_free && wait_until.is_none() {
                s.in_flight += 1;
                if let Some(iv) = self.min_interval {
                    s.next_start = Some(s.next_start.map_or(now, |t| t.max(now)) + iv);
                }
                return Some(Permit { limiter: self });
            }
            let timeout = wait_until.map_or(POLL, |t| (t - now).min(POLL));
            s = self
                .freed
                .wait_timeout(s, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// When and how often a failed call is tried again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub tries: u32,
    /// The first back-off delay; doubled per attempt.
    pub base_delay: Duration,
    /// The longest back-off delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            tries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): exponential,
    /// at least the provider's `retry_after`, with jitter (50–100 %) so
    /// parallel episodes do not retry in lock-step.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
        match retry_after {
            Some(r) => jittered.max(r),
            None => jittered,
        }
    }
}

/// Sleeps for `d`, waking early when `stop` is set; returns false when stopped.
pub fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn limiter_never_exceeds_its_limit() {
        let limiter = Arc::new(Limiter::new(2, 0.0));
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new((0usize, 0usize)));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (limiter, stop, peak) = (limiter.clone(), stop.clone(), peak.clone());
                s.spawn(move || {
                    let _p = limiter.acquire(&stop).expect("not stopped");
                    {
                        let mut g = peak.lock().expect("lock");
                        g.0 += 1;
                        g.1 = g.1.max(g.0);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    peak.lock().expect("lock").0 -= 1;
                });
            }
        });
        assert_eq!(peak.lock().expect("lock").1, 2);
    }

    #[test]
    fn stopped_limiter_gives_no_permit() {
        let limiter = Limiter::new(1, 0.0);
        let stop = AtomicBool::new(false);
        let _held = limiter.acquire(&stop).expect("free slot");
        stop.store(true, Ordering::Relaxed);
        assert!(limiter.acquire(&stop).is_none());
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let p = RetryPolicy {
            tries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let d1 = p.delay(1, None);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d3 = p.delay(3, None);
        assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
        assert!(p.delay(10, None) <= Duration::from_millis(1000));
        assert!(p.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }
}
