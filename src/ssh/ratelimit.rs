//! Failed-login accounting per source address and per username: a sliding
//! window of failure times. Pure (the caller passes the clock).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter<K> {
    max_failures: usize,
    window: Duration,
    failures: HashMap<K, VecDeque<Instant>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            failures: HashMap::new(),
        }
    }

    /// `Err(wait)` while `key` has used up its failures in the window.
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        let Some(times) = self.failures.get_mut(key) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.failures.remove(key);
            return Ok(());
        }
        if times.len() >= self.max_failures {
            let oldest = *times.front().expect("non-empty");
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        Ok(())
    }

    pub fn record_failure(&mut self, key: K, now: Instant) {
        let times = self.failures.entry(key).or_default();
        times.push_back(now);
        // Keep memory bounded even under a flood from one key.
        while times.len() > self.max_failures {
            times.pop_front();
        }
        // Forget idle keys now and then so a scan of many addresses cannot
        // grow the map without bound.
        if self.failures.len() > 10_000 {
            let window = self.window;
            self.failures.retain(|_, t| {
                t.back()
                    .is_some_and(|last| now.duration_since(*last) < window)
            });
        }
    }

    pub fn record_success(&mut self, key: &K) {
        self.failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engages_after_the_limit_and_releases_after_the_window() {
        let mut rl = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(rl.check(&"ip", t0).is_ok(), "attempt {i}");
            rl.record_failure("ip", t0);
        }
        let wait = rl.check(&"ip", t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(rl.check(&"other", t0).is_ok());
        assert!(rl.check(&"ip", t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn success_clears_the_record() {
        let mut rl = RateLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        rl.record_failure("u", t0);
        rl.record_success(&"u");
        rl.record_failure("u", t0);
        assert!(rl.check(&"u", t0).is_ok());
    }
}
