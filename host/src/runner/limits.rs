//! Limits on in-flight model calls and the retry policy, with the bounds
//! that numbers from the command line, the registry and servers must keep.

use super::StopToken;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The shortest `--timeout`, in seconds.
pub const MIN_TIMEOUT_SECS: f64 = 0.001;
/// The longest `--timeout`, in seconds (7 days).
pub const MAX_TIMEOUT_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// The lowest registry `rate_limit.requests_per_minute`: one call an hour.
pub const MIN_REQUESTS_PER_MINUTE: f64 = 1.0 / 60.0;
/// The longest wait a server's `Retry-After` may ask for; a longer one
/// fails the call as rate-limited instead of holding the run.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// `--timeout SECS` as a duration, or why it is out of bounds.
pub fn timeout_from_secs(secs: f64) -> Result<Duration, String> {
    duration_flag("--timeout", secs)
}

/// A duration option (`flag SECS`: `--timeout`, `--grace`, ...) as a
/// duration, or why it is out of bounds: every one takes 0.001 s to 7 days,
/// so none can overflow a conversion or an instant plus it.
pub fn duration_flag(flag: &str, secs: f64) -> Result<Duration, String> {
    if !(secs.is_finite() && (MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&secs)) {
        return Err(format!(
            "{flag} {} is out of bounds; use a number of seconds from {MIN_TIMEOUT_SECS} to {MAX_TIMEOUT_SECS} (7 days)",
            short_number(secs)
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A number as a person would write it back: `1e-320`, not 320 digits.
pub fn short_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e16).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

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
    /// Rates below [`MIN_REQUESTS_PER_MINUTE`] are raised to it (the
    /// registry reader refuses them before this).
    pub fn new(max_in_flight: usize, requests_per_minute: f64) -> Self {
        Limiter {
            max_in_flight,
            min_interval: (requests_per_minute > 0.0).then(|| {
                Duration::from_secs_f64(60.0 / requests_per_minute.max(MIN_REQUESTS_PER_MINUTE))
            }),
            state: Mutex::new(LimiterState::default()),
            freed: Condvar::new(),
        }
    }

    /// Waits for a slot; `None` when `stop` was set while waiting.
    pub fn acquire(&self, stop: &StopToken) -> Option<Permit<'_>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stop.is_stopped() {
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
    /// The longest wait a server's `Retry-After` may ask for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            tries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): exponential,
    /// at least the provider's `retry_after`, with jitter (50–100 %) so
    /// parallel episodes do not retry in lock-step. `Err(retry_after)` when
    /// the provider asks for more than `max_retry_after`: the call is not
    /// tried again.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Result<Duration, Duration> {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
        match retry_after {
            Some(r) if r > self.max_retry_after => Err(r),
            Some(r) => Ok(jittered.max(r)),
            None => Ok(jittered),
        }
    }
}

/// Sleeps for `d`, waking early when `stop` is set; returns false when stopped.
pub fn sleep_unless_stopped(d: Duration, stop: &StopToken) -> bool {
    let Some(end) = Instant::now().checked_add(d) else {
        return false;
    };
    loop {
        if stop.is_stopped() {
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
        let stop = StopToken::new();
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
        let stop = StopToken::new();
        let _held = limiter.acquire(&stop).expect("free slot");
        stop.stop();
        assert!(limiter.acquire(&stop).is_none());
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let p = RetryPolicy {
            tries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        let d1 = p.delay(1, None).expect("waits");
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d3 = p.delay(3, None).expect("waits");
        assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
        assert!(p.delay(10, None).expect("waits") <= Duration::from_millis(1000));
        assert!(p.delay(1, Some(Duration::from_secs(2))).expect("waits") >= Duration::from_secs(2));
    }

    #[test]
    fn a_retry_after_beyond_the_cap_is_not_waited_for() {
        let p = RetryPolicy::default();
        // What a server's `Retry-After: 1e300` becomes after the plugin's conversion.
        let huge = Duration::from_millis(u64::MAX);
        assert_eq!(p.delay(1, Some(huge)), Err(huge));
        assert!(p.delay(1, Some(MAX_RETRY_AFTER)).is_ok());
    }

    #[test]
    fn timeouts_out_of_bounds_are_refused_not_panicked_on() {
        for bad in [1e300, 1e19, f64::INFINITY, f64::NAN, 0.0, -1.0, 1e-300] {
            let e = timeout_from_secs(bad).expect_err("out of bounds");
            assert!(e.contains("--timeout") && e.contains("7 days"), "{e}");
        }
        assert_eq!(timeout_from_secs(2.5), Ok(Duration::from_millis(2500)));
        let e = duration_flag("--grace", 1e-320).expect_err("too short");
        assert!(e.starts_with("--grace 1e-320 is out of bounds"), "{e}");
        assert_eq!(short_number(1e30), "1e30");
        assert_eq!(short_number(604800.0), "604800");
        assert_eq!(short_number(0.001), "0.001");
    }

    #[test]
    fn tiny_rates_do_not_panic_or_wait_for_ages() {
        let l = Limiter::new(0, 1e-300);
        assert_eq!(l.min_interval, Some(Duration::from_secs(3600)));
        let l = Limiter::new(0, 1e-17);
        assert_eq!(l.min_interval, Some(Duration::from_secs(3600)));
    }
}
