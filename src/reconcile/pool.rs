//! The pool keeper: keeps the warm pool of databases (`store::pool`) at its
//! target in the background. Each pass checks the ready ones (one catalog
//! query for all of them; a broken one is set aside, never handed out),
//! fills empty slots (the slot index keeps two replicas from filling the
//! same one), retires what is beyond a lowered target, and works the rows
//! it leased: makes new databases, drops broken ones and what is left of
//! claimed ones. Every write is fenced by the row's lease token.
//!
//! It runs beside the reconcile loop, not inside its passes, so making a
//! pooled database (a `CREATE DATABASE`, the slow step a claim saves) never
//! holds up a project's work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::backoff;
use crate::driver::{DatabaseDriver, DatabaseSpec, DriverError, Observed, ResourceRef};
use crate::store::notify::Change;
use crate::store::pool::{PoolLeased, PoolState, pooled_password_context};
use crate::store::{Store, StoreResult};

/// Pool rows leased per pass.
const LEASE_BATCH: i64 = 64;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Pooled databases made ready.
    pub made: usize,
    /// Pooled databases (broken, surplus, or left over from a claim) dropped.
    pub dropped: usize,
    /// Ready ones that failed their health check.
    pub broken: usize,
    /// Ready ones beyond a lowered target.
    pub retired: usize,
    /// Driver calls that failed (retried with backoff).
    pub failures: usize,
}

impl PoolStats {
    fn add(&mut self, o: &PoolStats) {
        self.made += o.made;
        self.dropped += o.dropped;
        self.broken += o.broken;
        self.retired += o.retired;
        self.failures += o.failures;
    }
}

/// Keeps one replica's share of the pool.
pub struct PoolKeeper {
    store: Store,
    /// The back end that holds the pool (the local driver itself, not the
    /// per-owner router: pooled databases have no owner yet).
    databases: Arc<dyn DatabaseDriver>,
    target: u32,
    replica: String,
    lease: Duration,
    resync: Duration,
    /// Pooled databases made or dropped at once: `CREATE DATABASE` copies a
    /// template, and a pool filling up must not starve tenants' creates.
    concurrency: usize,
    backoff_base: Duration,
    backoff_cap: Duration,
}

impl PoolKeeper {
    pub fn new(
        store: Store,
        databases: Arc<dyn DatabaseDriver>,
        target: u32,
        replica: impl Into<String>,
    ) -> Self {
        Self {
            store,
            databases,
            target,
            replica: replica.into(),
            lease: Duration::from_secs(30),
            resync: Duration::from_secs(3),
            concurrency: 2,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(60),
        }
    }

    /// Lease length and resync interval (the reconcile loop's, as a rule).
    pub fn with_timing(mut self, lease: Duration, resync: Duration) -> Self {
        self.lease = lease;
        self.resync = resync;
        self
    }

    pub fn target(&self) -> u32 {
        self.target
    }

    /// One pass: check, plan, fill, work. A failed driver call is recorded
    /// on its row and retried later; only a store error fails the pass.
    pub async fn pass(&self) -> StoreResult<PoolStats> {
        let mut stats = PoolStats {
            broken: self.check_ready().await?,
            ..PoolStats::default()
        };
        let held = self.store.pool_slots().await?;
        let plan = crate::model::pool::plan(self.target, &held);
        if !plan.retire.is_empty() {
            let why =
                vec![format!("beyond the pool's target of {}", self.target); plan.retire.len()];
            stats.retired = self.store.discard_pooled(&plan.retire, &why).await? as usize;
        }
        let mut work = self
            .store
            .fill_pool_slots(&plan.fill, &self.replica, self.lease)
            .await?;
        work.extend(
            self.store
                .lease_pool_work(&self.replica, self.lease, LEASE_BATCH)
                .await?,
        );
        let results: Vec<StoreResult<PoolStats>> = futures::stream::iter(work)
            .map(|row| async move { self.work(&row).await })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            stats.add(&r?);
        }
        Ok(stats)
    }

    /// Passes until the pool has nothing left to do now (every slot filled,
    /// nothing to drop), at most 100: for tests that need a full pool.
    pub async fn fill(&self) -> StoreResult<PoolStats> {
        let mut total = PoolStats::default();
        for _ in 0..100 {
            let s = self.pass().await?;
            total.add(&s);
            if s == PoolStats::default() {
                break;
            }
        }
        Ok(total)
    }

    /// Runs passes until `shutdown`: at every resync, and at once when a
    /// database row is inserted (a create, which may have claimed one).
    pub async fn run(
        &self,
        mut changes: Option<broadcast::Receiver<Change>>,
        shutdown: CancellationToken,
    ) -> StoreResult<()> {
        while !shutdown.is_cancelled() {
            match self.pass().await {
                Ok(s) if s != PoolStats::default() => {
                    tracing::debug!(replica = %self.replica, ?s, "pool pass")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(replica = %self.replica, "pool pass failed: {e}"),
            }
            let wait = tokio::time::sleep(self.resync);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = &mut wait => break,
                    claim = next_create(&mut changes) => if claim { break },
                }
            }
        }
        self.store.release_pool_leases(&self.replica).await?;
        Ok(())
    }

    /// Health check of the ready pooled databases, in one driver call;
    /// sets aside the ones that are not whole. Returns how many.
    async fn check_ready(&self) -> StoreResult<usize> {
        let ready = self.store.ready_pooled().await?;
        if ready.is_empty() {
            crate::ops::metrics::metrics()
                .pool_ready
                .with_label_values(&["database"])
                .set(0);
            return Ok(0);
        }
        let refs: Vec<ResourceRef> = ready.iter().map(|(_, n)| pooled_ref(n)).collect();
        let seen = match self.databases.observe(&refs).await {
            Ok(seen) => seen,
            Err(e) => {
                // Unknown health is not broken; check again next pass.
                tracing::warn!(replica = %self.replica, "pool health check failed: {e}");
                return Ok(0);
            }
        };
        let (ids, why) = unhealthy(&ready, &seen);
        let broken = self.store.discard_pooled(&ids, &why).await? as usize;
        crate::ops::metrics::metrics()
            .pool_ready
            .with_label_values(&["database"])
            .set(ready.len().saturating_sub(broken) as i64);
        Ok(broken)
    }

    async fn work(&self, row: &PoolLeased) -> StoreResult<PoolStats> {
        let mut stats = PoolStats::default();
        let r = pooled_ref(&row.resource_name);
        let result: Result<(), DriverError> = match row.state {
            PoolState::Creating => {
                let password = self.store.key().decrypt_string(
                    &row.password_enc,
                    &pooled_password_context(&row.resource_name),
                )?;
                let spec = DatabaseSpec {
                    resource: r,
                    password: password.into(),
                };
                match self.databases.ensure(&spec).await {
                    Ok(Observed::Running) => {
                        if self.store.pooled_made(row).await? {
                            stats.made += 1;
                        }
                        return Ok(stats);
                    }
                    Ok(other) => Err(DriverError::transient(format!(
                        "pooled database {}: {other:?} after creating it",
                        row.resource_name
                    ))),
                    Err(e) => Err(e),
                }
            }
            PoolState::Broken | PoolState::Claimed => match self.databases.delete(&r).await {
                Ok(()) => {
                    if self.store.pooled_dropped(row).await? {
                        stats.dropped += 1;
                    }
                    return Ok(stats);
                }
                Err(e) => Err(e),
            },
            // Never leased: ready ones are only checked.
            PoolState::Ready => return Ok(stats),
        };
        if let Err(e) = result {
            stats.failures += 1;
            let attempt = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
            let retry_in = backoff::delay(
                attempt,
                self.backoff_base,
                self.backoff_cap,
                backoff::unit_random(),
            );
            tracing::warn!(pooled = %row.resource_name, "pool: {e}; retrying in {retry_in:?}");
            self.store
                .pooled_failed(row, &e.to_string(), retry_in)
                .await?;
        }
        Ok(stats)
    }
}

/// A pooled database as the driver sees it: a name and nothing else (it
/// belongs to no project and no owner until claimed).
fn pooled_ref(name: &str) -> ResourceRef {
    ResourceRef {
        resource_name: name.to_string(),
        namespace: String::new(),
        project_slug: String::new(),
        owner: Uuid::nil(),
    }
}

/// The ready pooled databases the observation did not see whole and
/// serving, with why (for `last_error` and `kiln status`).
fn unhealthy(
    ready: &[(Uuid, String)],
    seen: &HashMap<String, Observed>,
) -> (Vec<Uuid>, Vec<String>) {
    ready
        .iter()
        .filter_map(|(id, name)| {
            let why = match seen.get(name) {
                Some(Observed::Running) => return None,
                None | Some(Observed::Absent) => "failed its health check: it is gone".to_string(),
                Some(other) => format!("failed its health check: {other:?}"),
            };
            Some((*id, why))
        })
        .unzip()
}

/// Waits for the next change; `true` when it is a new database row (a
/// create, which may have taken one from the pool).
async fn next_create(changes: &mut Option<broadcast::Receiver<Change>>) -> bool {
    match changes {
        Some(rx) => match rx.recv().await {
            Ok(c) => c.table == "databases" && c.op == "INSERT",
            Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(broadcast::error::RecvError::Closed) => {
                *changes = None;
                std::future::pending::<bool>().await
            }
        },
        None => std::future::pending::<bool>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_pooled_databases_seen_running_are_healthy() {
        let ready: Vec<(Uuid, String)> = (1..=4)
            .map(|i| (Uuid::from_u128(i), format!("pool-{i}")))
            .collect();
        let seen = HashMap::from([
            ("pool-1".to_string(), Observed::Running),
            ("pool-2".to_string(), Observed::Absent),
            (
                "pool-3".to_string(),
                Observed::Failed("role pool-3 is missing".into()),
            ),
        ]);
        let (ids, why) = unhealthy(&ready, &seen);
        assert_eq!(
            ids,
            vec![Uuid::from_u128(2), Uuid::from_u128(3), Uuid::from_u128(4)]
        );
        assert!(why[0].contains("gone"), "{why:?}");
        assert!(why[1].contains("role pool-3 is missing"), "{why:?}");
        assert!(why[2].contains("gone"), "{why:?}");
    }
}
