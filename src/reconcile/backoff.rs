//! Capped exponential backoff with jitter for transient failures.

use std::time::Duration;

/// Delay before attempt `attempt` (1-based): `base · 2^(attempt-1)`, capped,
/// then "equal jitter" — half fixed, half random — so replicas retrying the
/// same outage spread out but never retry sooner than half the schedule.
/// `unit` is a uniform sample in [0, 1).
pub fn delay(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(cap);
    let half = full / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// A uniform sample in [0, 1) from the OS.
pub fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_within_the_jitter_band() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(60);
        assert_eq!(delay(1, base, cap, 0.0), Duration::from_millis(250));
        let top = delay(1, base, cap, 0.999_999);
        assert!(
            top > Duration::from_micros(499_990) && top < base,
            "{top:?}"
        );
        assert_eq!(delay(3, base, cap, 0.0), Duration::from_secs(1));
        assert_eq!(delay(20, base, cap, 0.0), Duration::from_secs(30));
        assert_eq!(delay(u32::MAX, base, cap, 1.0), Duration::from_secs(60));
        for a in 1..40 {
            assert!(delay(a, base, cap, unit_random()) <= cap);
            assert!(delay(a + 1, base, cap, 0.0) >= delay(a, base, cap, 0.0));
        }
    }

    #[test]
    fn unit_random_is_in_range() {
        for _ in 0..1000 {
            let u = unit_random();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
