//! The sign-in budget's one decision, shared by the SSH front end and the
//! store that keeps the failure times: whether a bucket has room left in
//! its sliding window, and how long until it does.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A bucket of failures and how many it may hold within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub max: usize,
}

/// How long until a bucket holding failures at `times` (oldest first, all
/// within the window) has room for one more; `None` when it has room now.
pub fn wait_for(
    times: &[DateTime<Utc>],
    now: DateTime<Utc>,
    max: usize,
    window: Duration,
) -> Option<Duration> {
    let max = max.max(1);
    if times.len() < max {
        return None;
    }
    // Room opens when enough of the oldest failures leave the window that
    // fewer than `max` remain.
    let freeing = times[times.len() - max];
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let wait = (freeing + window - now).to_std().unwrap_or(Duration::ZERO);
    Some(wait.max(Duration::from_secs(1)))
}
