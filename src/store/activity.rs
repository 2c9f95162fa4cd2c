//! Terminal activity per sandbox (`sandboxes.last_active_at`, for the idle
//! policy), recorded off the keystroke's path. A viewer only notes the time
//! in memory; one task writes whatever was noted, for every sandbox at once,
//! every few seconds. Before, each viewer started its own database write at
//! the keystroke that came due, and on a small machine that write competed
//! with the keystroke's echo for the CPU: it landed in the echo's slowest
//! percent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Store, StoreResult};

/// How often noted activity is written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// A viewer notes activity at most this often (the time is kept to the second).
const NOTE_EVERY: Duration = Duration::from_secs(1);

/// Activity noted since the last write, by sandbox; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ActivityRecorder {
    pending: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
}

impl ActivityRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// What one viewer of `resource_name` notes its activity through.
    pub fn tracker(&self, resource_name: String) -> ActivityTracker {
        ActivityTracker {
            recorder: self.clone(),
            resource_name,
            last_noted: None,
        }
    }

    /// Notes activity of `resource_name` at `at` (a time the sandbox
    /// itself reported, e.g. its latest output), written with the rest.
    pub fn note_at(&self, resource_name: &str, at: DateTime<Utc>) {
        self.note(resource_name, at.min(Utc::now()));
    }

    fn note(&self, resource_name: &str, at: DateTime<Utc>) {
        let mut pending = self.pending.lock().expect("activity lock");
        match pending.get_mut(resource_name) {
            Some(t) => *t = (*t).max(at),
            None => {
                pending.insert(resource_name.to_string(), at);
            }
        }
    }

    /// Writes what was noted; returns how many sandboxes it named. On a
    /// failed write the noted times are kept for the next one.
    pub async fn flush(&self, store: &Store) -> StoreResult<usize> {
        let taken = std::mem::take(&mut *self.pending.lock().expect("activity lock"));
        if taken.is_empty() {
            return Ok(0);
        }
        let (names, times): (Vec<String>, Vec<DateTime<Utc>>) =
            taken.iter().map(|(n, t)| (n.clone(), *t)).unzip();
        match store.record_sandbox_activity(&names, &times).await {
            Ok(()) => Ok(names.len()),
            Err(e) => {
                for (name, at) in taken {
                    self.note(&name, at);
                }
                Err(e)
            }
        }
    }

    /// Writes every [`FLUSH_EVERY`] until `shutdown`, then once more.
    pub async fn run(self, store: Store, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            if let Err(e) = self.flush(&store).await {
                tracing::debug!("recording sandbox activity failed (kept for the next try): {e}");
            }
        }
        if let Err(e) = self.flush(&store).await {
            tracing::warn!("recording sandbox activity at shutdown failed: {e}");
        }
    }
}

/// One viewer's way to note activity: no I/O, and after the first call in a
/// second, not even a lock.
pub struct ActivityTracker {
    recorder: ActivityRecorder,
    resource_name: String,
    last_noted: Option<Instant>,
}

impl ActivityTracker {
    /// Notes input or output now.
    pub fn touch(&mut self) {
        let now = Instant::now();
        if self
            .last_noted
            .is_some_and(|t| now.duration_since(t) < NOTE_EVERY)
        {
            return;
        }
        self.last_noted = Some(now);
        self.recorder.note(&self.resource_name, Utc::now());
    }
}

impl Store {
    /// Sets `last_active_at` of the named sandboxes, never moving it back.
    pub async fn record_sandbox_activity(
        &self,
        resource_names: &[String],
        at: &[DateTime<Utc>],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        super::project_lock::lock_projects_of_sandboxes(&mut tx, &[], resource_names).await?;
        sqlx::query(
            "UPDATE sandboxes s SET last_active_at = GREATEST(s.last_active_at, v.at)
             FROM unnest($1::text[], $2::timestamptz[]) AS v(name, at)
             WHERE s.resource_name = v.name",
        )
        .bind(resource_names)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_keeps_its_latest_time_across_viewers() {
        let r = ActivityRecorder::new();
        let t0 = Utc::now();
        r.note("a", t0);
        r.note("a", t0 - chrono::Duration::seconds(30));
        r.note("b", t0 - chrono::Duration::seconds(5));
        let pending = r.pending.lock().unwrap().clone();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending["a"], t0);
    }

    #[test]
    fn a_tracker_notes_once_per_second() {
        let r = ActivityRecorder::new();
        let mut t = r.tracker("a".into());
        t.touch();
        let first = r.pending.lock().unwrap()["a"];
        r.pending.lock().unwrap().clear();
        t.touch();
        assert!(r.pending.lock().unwrap().is_empty());
        // Another viewer of the same sandbox notes on its own.
        r.tracker("a".into()).touch();
        assert!(r.pending.lock().unwrap()["a"] >= first);
    }
}
