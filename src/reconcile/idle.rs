//! The idle sweep, run by the reconcile loop: one indexed query finds the
//! running sandboxes whose idle stop is near, a pure decision per row
//! (`model::idle::decide`), and a fenced write only for those that need
//! one (warn, withdraw, stop). Nothing else is read or written per pass.

use chrono::{DateTime, Utc};

use super::{CycleStats, Reconciler};
use crate::model::idle::{IdleVerdict, decide, format_duration, time_left};
use crate::store::StoreResult;
use crate::store::idle::{IdleCandidate, IdleWarning};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub candidates: usize,
    pub queries: usize,
    pub warned: usize,
    pub withdrawn: usize,
    pub stopped: usize,
}

impl Reconciler {
    /// One sweep at `now`. Off (no query at all) when the server's policy is.
    pub async fn idle_sweep(&self, now: DateTime<Utc>) -> StoreResult<SweepStats> {
        let policy = &self.cfg.idle;
        let mut stats = SweepStats::default();
        if !policy.enabled() {
            return Ok(stats);
        }
        let warn = chrono::Duration::from_std(policy.warn_before).unwrap_or_default();
        let candidates = self
            .store
            .idle_candidates(now + warn, policy.stop_after)
            .await?;
        stats.queries += 1;
        stats.candidates = candidates.len();
        let mut withdraw = Vec::new();
        // Warnings are written together after the loop, in one statement.
        let mut warn = Vec::new();
        for c in &candidates {
            match decide(policy, &c.facts, now) {
                IdleVerdict::Nothing => {}
                IdleVerdict::Withdraw => {
                    if let Some((at, _)) = c.facts.warned {
                        withdraw.push((c.sandbox_id, at));
                    }
                }
                IdleVerdict::Warn { stop_at } => warn.push(IdleWarning {
                    candidate: c,
                    stop_at,
                    message: warning_text(c, now, stop_at),
                }),
                IdleVerdict::Stop => {
                    stats.queries += 1;
                    if self.store.idle_stop(c, &stopped_text(c, policy)).await? {
                        stats.stopped += 1;
                        tracing::info!(
                            replica = %self.replica,
                            project_id = %c.project_id,
                            "idle policy: project stopped"
                        );
                    }
                }
            }
        }
        if !warn.is_empty() {
            stats.queries += 1;
            stats.warned = self.store.idle_warn_many(&warn).await? as usize;
        }
        if !withdraw.is_empty() {
            stats.queries += 1;
            stats.withdrawn = self.store.idle_withdraw(&withdraw).await? as usize;
        }
        Ok(stats)
    }

    /// Sweeps when one is due; returns when the next one is.
    pub(super) async fn sweep_if_due(
        &self,
        next: std::time::Instant,
        total: &mut CycleStats,
    ) -> std::time::Instant {
        let now = std::time::Instant::now();
        if now < next {
            return next;
        }
        match self.idle_sweep(Utc::now()).await {
            Ok(s) => total.queries += s.queries,
            Err(e) => {
                total.failed_passes += 1;
                tracing::warn!(replica = %self.replica, "idle sweep failed: {e}");
            }
        }
        now + self.cfg.idle.sweep_every
    }
}

fn warning_text(c: &IdleCandidate, now: DateTime<Utc>, stop_at: DateTime<Utc>) -> String {
    format!(
        "{} stops at {} (in {}) for being idle, unless used or extended (ssh … extend {})",
        crate::model::naming::printable(&c.project, 60),
        stop_at.format("%H:%M:%S UTC"),
        time_left(now, stop_at),
        crate::model::naming::printable(&c.project, 60),
    )
}

fn stopped_text(c: &IdleCandidate, policy: &crate::model::idle::IdlePolicy) -> String {
    let after = policy
        .effective(c.facts.setting)
        .map(format_duration)
        .unwrap_or_default();
    format!("stopped by the idle policy after {after} without activity")
}
