//! Sign-in budgets, as pure decisions: which buckets a password attempt is
//! charged to, whether a bucket has room left in its sliding window (and
//! how a spent user budget throttles rather than shuts out, in
//! `model::signin_throttle`), and whether a new connection may wait for
//! sign-in. The failure times live in
//! the database (`store::signin_limits`) so every replica spends one budget.

use std::net::IpAddr;
use std::time::Duration;

pub use crate::model::signin_budget::{Bucket, wait_for};
pub use crate::model::signin_throttle::Charge;
use crate::store::users::normalize_username;

/// Longer names are refused before any lookup, hashing or accounting: no
/// valid username comes near it, and a huge one must cost us nothing.
pub const MAX_USERNAME_BYTES: usize = 64;

/// Where every name that is not a valid username is charged, so junk names
/// share one budget instead of each getting a fresh one.
const INVALID_NAME_KEY: &str = "user:?";

/// How many failures each kind of bucket allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_address: usize,
    pub per_user: usize,
    /// Past the user's budget, the first interval between attempts from one
    /// address at that user (`model::signin_throttle`).
    pub throttle_base: Duration,
}

/// A password attempt: the name it is for (normalised once, for both the
/// lookup and the budget) and what it is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// `None` when the name is not a valid username: it cannot sign in.
    pub username: Option<String>,
    pub charge: Charge,
}

pub fn address_key(ip: IpAddr) -> String {
    format!("addr:{ip}")
}

pub fn user_key(username: &str) -> String {
    format!("user:{username}")
}

/// One address at one user (`user_key` is that user's bucket key).
pub fn pair_key(ip: IpAddr, user_key: &str) -> String {
    format!("pair:{ip}|{user_key}")
}

impl Attempt {
    pub fn new(peer: Option<IpAddr>, raw_name: &str, budget: Budget) -> Attempt {
        let username = normalize_username(raw_name).ok();
        let user_bucket = Bucket {
            key: username
                .as_deref()
                .map_or_else(|| INVALID_NAME_KEY.to_string(), user_key),
            max: budget.per_user,
        };
        let charge = Charge {
            address: peer.map(|ip| Bucket {
                key: address_key(ip),
                max: budget.per_address,
            }),
            pair: peer.map(|ip| pair_key(ip, &user_bucket.key)),
            user: user_bucket,
            throttle_base: budget.throttle_base,
        };
        Attempt { username, charge }
    }
}

/// Limits on connections that have not signed in yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreauthCaps {
    pub per_address: usize,
    pub total: usize,
}

/// Whether one more connection may wait for sign-in, given how many are
/// already waiting from its address and in total.
pub fn admit(from_address: usize, total: usize, caps: PreauthCaps) -> bool {
    from_address < caps.per_address && total < caps.total
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    const BUDGET: Budget = Budget {
        per_address: 20,
        per_user: 3,
        throttle_base: Duration::from_secs(5),
    };

    fn user_bucket(a: &Attempt) -> &str {
        &a.charge.user.key
    }

    #[test]
    fn padded_and_differently_cased_names_share_one_budget() {
        let ip = Some("192.0.2.1".parse().unwrap());
        let plain = Attempt::new(ip, "alice", BUDGET);
        for variant in [" alice", "alice\u{a0}", "ALICE", "\talice\n"] {
            let a = Attempt::new(ip, variant, BUDGET);
            assert_eq!(a, plain, "{variant:?}");
        }
        assert_eq!(plain.username.as_deref(), Some("alice"));
        assert_eq!(user_bucket(&plain), "user:alice");
    }

    #[test]
    fn names_that_do_not_normalise_share_one_fixed_bucket() {
        let a = Attempt::new(None, "al ice", BUDGET);
        let b = Attempt::new(None, "\u{202e}bob", BUDGET);
        assert_eq!(a.username, None);
        assert_eq!(a, b);
        assert_eq!(a.charge.keys(), ["user:?"]);
        assert_eq!(a.charge.user.max, BUDGET.per_user);
    }

    #[test]
    fn an_attempt_is_charged_to_its_address_its_user_and_the_pair() {
        let a = Attempt::new(Some("2001:db8::1".parse().unwrap()), "bob", BUDGET);
        assert_eq!(
            a.charge,
            Charge {
                address: Some(Bucket {
                    key: "addr:2001:db8::1".into(),
                    max: 20
                }),
                user: Bucket {
                    key: "user:bob".into(),
                    max: 3
                },
                pair: Some("pair:2001:db8::1|user:bob".into()),
                throttle_base: Duration::from_secs(5),
            }
        );
    }

    #[test]
    fn a_bucket_is_full_at_the_limit_until_its_oldest_failure_leaves_the_window() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let s = |n| chrono::Duration::seconds(n);
        let window = Duration::from_secs(60);
        let times = [t0, t0 + s(5), t0 + s(10)];
        assert_eq!(wait_for(&times[..2], t0 + s(10), 3, window), None);
        assert_eq!(
            wait_for(&times, t0 + s(10), 3, window),
            Some(Duration::from_secs(50))
        );
        // Over the limit (a smaller limit after a restart): room opens when
        // only max - 1 remain.
        assert_eq!(
            wait_for(&times, t0 + s(10), 2, window),
            Some(Duration::from_secs(55))
        );
        // Never "wait 0 s" while still full.
        assert_eq!(
            wait_for(&times, t0 + s(60), 3, window),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn connections_waiting_for_sign_in_are_capped_per_address_and_in_total() {
        let caps = PreauthCaps {
            per_address: 2,
            total: 3,
        };
        assert!(admit(0, 0, caps));
        assert!(admit(1, 2, caps));
        assert!(!admit(2, 2, caps));
        assert!(!admit(0, 3, caps));
    }
}
