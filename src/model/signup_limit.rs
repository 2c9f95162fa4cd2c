//! How many accounts open sign-up creates from one address per window, as
//! a pure decision; the sign-up times live in the database
//! (`store::signup_limits`) so every replica spends one budget.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::signin_budget::wait_for;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupLimit {
    pub per_address: usize,
    pub window: Duration,
}

impl SignupLimit {
    /// How long until an address that signed up at `times` (oldest first,
    /// all within the window) may sign up again; `None`: now.
    pub fn wait(&self, times: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<Duration> {
        wait_for(times, now, self.per_address, self.window)
    }
}

/// The key one address's sign-ups are counted under (`None`: the peer is
/// unknown, and all such share one budget).
pub fn address_key(peer: Option<std::net::IpAddr>) -> String {
    peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(secs)
    }

    const LIMIT: SignupLimit = SignupLimit {
        per_address: 2,
        window: Duration::from_secs(3600),
    };

    #[test]
    fn an_address_signs_up_up_to_the_limit_then_waits_for_the_window() {
        assert_eq!(LIMIT.wait(&[], t(0)), None);
        assert_eq!(LIMIT.wait(&[t(0)], t(10)), None);
        assert_eq!(
            LIMIT.wait(&[t(0), t(10)], t(20)),
            Some(Duration::from_secs(3580))
        );
        // The oldest leaves the window: room for one more.
        assert_eq!(LIMIT.wait(&[t(10)], t(3601)), None);
    }

    #[test]
    fn addresses_are_counted_apart() {
        let a = address_key(Some("192.0.2.1".parse().unwrap()));
        let b = address_key(Some("192.0.2.2".parse().unwrap()));
        assert_ne!(a, b);
        assert_eq!(address_key(None), "unknown");
    }
}
