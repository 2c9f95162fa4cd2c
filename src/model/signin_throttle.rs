//! Whether a password attempt may go ahead now, and if not how long until
//! it may. The address budget holds back only the address that spent it.
//! A user's budget, spent from anywhere, slows that user's password down
//! rather than shutting it out: past it, each address may still try that
//! user once per interval, which doubles with every failure from that
//! address at that user. An attacker elsewhere thus slows only themselves;
//! the user's own next attempt from their own address goes ahead. Public
//! keys are never charged to any of this.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::signin_budget::{Bucket, wait_for};

/// What one password attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The source address's budget (`None` when the peer is unknown).
    pub address: Option<Bucket>,
    /// The user's budget, over every address.
    pub user: Bucket,
    /// This address at this user: what the throttle counts once the user's
    /// budget is spent (`None` when the peer is unknown).
    pub pair: Option<String>,
    /// The first interval once the user's budget is spent; each further
    /// failure from the same address at the same user doubles it, up to the
    /// window.
    pub throttle_base: Duration,
}

impl Charge {
    /// Every key the attempt is counted under, in a fixed order.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .address
            .iter()
            .map(|b| b.key.clone())
            .chain([self.user.key.clone()])
            .chain(self.pair.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// How long until the attempt may go ahead; `None`: now. `times` gives
    /// a key's failure times within the window, oldest first.
    pub fn wait<'a>(
        &self,
        times: impl Fn(&str) -> &'a [DateTime<Utc>],
        now: DateTime<Utc>,
        window: Duration,
    ) -> Option<Duration> {
        if let Some(address) = &self.address
            && let Some(wait) = wait_for(times(&address.key), now, address.max, window)
        {
            return Some(wait);
        }
        let user_wait = wait_for(times(&self.user.key), now, self.user.max, window)?;
        match &self.pair {
            Some(pair) => throttle_wait(times(pair), now, self.throttle_base, window),
            // Without an address there is nothing narrower to throttle.
            None => Some(user_wait),
        }
    }
}

/// Once the user's budget is spent: the wait before one more attempt from
/// an address that has failed at this user at `times` (oldest first).
/// None failed yet: go ahead; `n` failed: `base × 2^(n-1)` after the last,
/// at most the window.
pub fn throttle_wait(
    times: &[DateTime<Utc>],
    now: DateTime<Utc>,
    base: Duration,
    window: Duration,
) -> Option<Duration> {
    let last = *times.last()?;
    let doublings = u32::try_from(times.len() - 1).unwrap_or(u32::MAX).min(20);
    let interval = base.saturating_mul(1 << doublings).min(window);
    let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
    let wait = (last + interval - now).to_std().ok()?;
    (!wait.is_zero()).then(|| wait.max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(secs)
    }

    fn charge() -> Charge {
        Charge {
            address: Some(Bucket {
                key: "addr:a".into(),
                max: 20,
            }),
            user: Bucket {
                key: "user:alice".into(),
                max: 3,
            },
            pair: Some("pair:a:alice".into()),
            throttle_base: Duration::from_secs(5),
        }
    }

    /// Failure times per key, for `Charge::wait`.
    struct Times(Vec<(&'static str, Vec<DateTime<Utc>>)>);

    impl Times {
        fn of(&self, key: &str) -> &[DateTime<Utc>] {
            self.0
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(&[], |(_, v)| v.as_slice())
        }
    }

    #[test]
    fn within_every_budget_an_attempt_goes_ahead() {
        let times = Times(vec![("user:alice", vec![t(0), t(1)])]);
        assert_eq!(charge().wait(|k| times.of(k), t(2), WINDOW), None);
    }

    #[test]
    fn a_spent_address_budget_holds_that_address_back() {
        let times = Times(vec![("addr:a", (0..20).map(t).collect())]);
        assert_eq!(
            charge().wait(|k| times.of(k), t(20), WINDOW),
            Some(Duration::from_secs(280))
        );
    }

    #[test]
    fn a_user_budget_spent_elsewhere_does_not_hold_back_a_fresh_address() {
        // Mallory, at another address, spent alice's whole budget just now.
        let times = Times(vec![("user:alice", vec![t(0), t(1), t(2)])]);
        assert_eq!(charge().wait(|k| times.of(k), t(3), WINDOW), None);
    }

    #[test]
    fn past_the_user_budget_the_same_address_waits_a_doubling_interval() {
        let spent = ("user:alice", vec![t(0), t(1), t(2)]);
        let case = |pair: Vec<i64>, now: i64| {
            let times = Times(vec![
                spent.clone(),
                ("pair:a:alice", pair.into_iter().map(t).collect()),
            ]);
            charge().wait(|k| times.of(k), t(now), WINDOW)
        };
        let secs = |s| Some(Duration::from_secs(s));
        // One failure from here: 5 s after it, then 10, 20, 40...
        assert_eq!(case(vec![2], 3), secs(4));
        assert_eq!(case(vec![2], 7), None);
        assert_eq!(case(vec![0, 2], 3), secs(9));
        assert_eq!(case(vec![0, 1, 2], 3), secs(19));
        assert_eq!(case(vec![0, 1, 2, 3], 3), secs(40));
        // ...never longer than the window, after which the failures expire.
        assert_eq!(case((0..30).collect(), 30), secs(299));
    }

    #[test]
    fn without_an_address_a_spent_user_budget_waits_for_the_window() {
        let mut c = charge();
        c.address = None;
        c.pair = None;
        let times = Times(vec![("user:alice", vec![t(0), t(1), t(2)])]);
        assert_eq!(
            c.wait(|k| times.of(k), t(3), WINDOW),
            Some(Duration::from_secs(297))
        );
    }

    #[test]
    fn the_keys_are_every_bucket_once_in_order() {
        assert_eq!(charge().keys(), ["addr:a", "pair:a:alice", "user:alice"]);
    }

    #[test]
    fn never_wait_zero_seconds_while_throttled() {
        let now = t(0) + chrono::Duration::milliseconds(4_900);
        let wait = throttle_wait(&[t(0)], now, Duration::from_secs(5), WINDOW);
        assert_eq!(wait, Some(Duration::from_secs(1)));
    }
}
