//! The pool keeper: keeps the warm pools (`store::pool`) of databases and,
//! on the local driver, of sandboxes at their targets in the background.
//! Each pass, per kind, checks the ready ones (one driver call for all of
//! them; a broken one is set aside, never handed out), fills empty slots
//! (the slot index keeps two replicas from filling the same one), retires
//! what is beyond a lowered target, and works the rows it leased: makes new
//! ones, drops broken ones and what is left of claimed databases. Every
//! write is fenced by the row's lease token.
//!
//! It runs beside the reconcile loop, not inside its passes, so making a
//! pooled resource (a `CREATE DATABASE`, a confined sandbox's start: the
//! slow steps a claim saves) never holds up a project's work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::backoff;
use crate::driver::{
    DatabaseDriver, DatabaseSpec, DriverError, Observed, ResourceRef, SandboxPoolDriver,
};
use crate::model::pool::{PoolKind, PoolTargets};
use crate::store::notify::Change;
use crate::store::pool::{PoolLeased, PoolState, pooled_password_context};
use crate::store::{Store, StoreResult};

/// Pool rows leased per pass.
const LEASE_BATCH: i64 = 64;

/// How long a refill waits after a create's notification: long enough for
/// the claimed resources' start (a few tens of milliseconds) to go first on
/// a small machine, short enough not to matter to a burst of creates.
const REFILL_DELAY: Duration = Duration::from_millis(50);

/// What one pass did to one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Pooled resources made ready.
    pub made: usize,
    /// Pooled resources (broken, surplus, or left over from a claim) dropped.
    pub dropped: usize,
    /// Ready ones that failed their health check.
    pub broken: usize,
    /// Ready ones beyond a lowered target.
    pub retired: usize,
    /// Driver calls that failed (retried with backoff).
    pub failures: usize,
}

impl KindStats {
    fn add(&mut self, o: &KindStats) {
        self.made += o.made;
        self.dropped += o.dropped;
        self.broken += o.broken;
        self.retired += o.retired;
        self.failures += o.failures;
    }
}

/// What one pass did, per pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub databases: KindStats,
    pub sandboxes: KindStats,
}

impl PoolStats {
    fn of_mut(&mut self, kind: PoolKind) -> &mut KindStats {
        match kind {
            PoolKind::Database => &mut self.databases,
            PoolKind::Sandbox => &mut self.sandboxes,
        }
    }

    fn add(&mut self, o: &PoolStats) {
        self.databases.add(&o.databases);
        self.sandboxes.add(&o.sandboxes);
    }
}

/// Keeps one replica's share of the pools.
pub struct PoolKeeper {
    store: Store,
    /// The back ends that hold the pools (the local driver itself, not the
    /// per-owner router: pooled resources have no owner yet).
    databases: Arc<dyn DatabaseDriver>,
    /// `None`: this replica keeps no sandboxes (its target is 0).
    sandboxes: Option<Arc<dyn SandboxPoolDriver>>,
    targets: PoolTargets,
    replica: String,
    lease: Duration,
    resync: Duration,
    /// Pooled resources made or dropped at once, per kind: `CREATE
    /// DATABASE` copies a template and a sandbox start runs bubblewrap, and
    /// a pool filling up must not starve tenants' creates.
    concurrency: usize,
    backoff_base: Duration,
    backoff_cap: Duration,
}

impl PoolKeeper {
    /// A keeper of `target` pooled databases (and no sandboxes: see
    /// [`PoolKeeper::with_sandboxes`]).
    pub fn new(
        store: Store,
        databases: Arc<dyn DatabaseDriver>,
        target: u32,
        replica: impl Into<String>,
    ) -> Self {
        Self {
            store,
            databases,
            sandboxes: None,
            targets: PoolTargets {
                databases: target,
                sandboxes: 0,
            },
            replica: replica.into(),
            lease: Duration::from_secs(30),
            resync: Duration::from_secs(3),
            concurrency: 2,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(60),
        }
    }

    /// Keeps `target` pooled sandboxes on `driver` too.
    pub fn with_sandboxes(mut self, driver: Arc<dyn SandboxPoolDriver>, target: u32) -> Self {
        self.sandboxes = Some(driver);
        self.targets.sandboxes = target;
        self
    }

    /// The first and longest waits before a failed pooled resource is
    /// worked again.
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    /// Lease length and resync interval (the reconcile loop's, as a rule).
    pub fn with_timing(mut self, lease: Duration, resync: Duration) -> Self {
        self.lease = lease;
        self.resync = resync;
        self
    }

    /// How many pooled databases it keeps.
    pub fn target(&self) -> u32 {
        self.targets.databases
    }

    /// How many of each kind it keeps.
    pub fn targets(&self) -> PoolTargets {
        self.targets
    }

    /// The kinds this keeper looks after: databases always (a target of 0
    /// drops what an earlier run left), sandboxes when it has their driver.
    fn kinds(&self) -> impl Iterator<Item = PoolKind> + '_ {
        PoolKind::ALL
            .into_iter()
            .filter(|k| *k == PoolKind::Database || self.sandboxes.is_some())
    }

    /// One pass over each pool: check, plan, fill, work. A failed driver
    /// call is recorded on its row and retried later; only a store error
    /// fails the pass.
    pub async fn pass(&self) -> StoreResult<PoolStats> {
        self.pass_checking(true).await
    }

    /// A pass that only refills (fills empty slots, works leased rows),
    /// without the health check and the orphan sweep: what a claim calls
    /// for. Checking every ready resource (a `tmux` run per pooled
    /// sandbox) at the very moment a create starts the one it claimed
    /// would only compete with that start; the resync's passes check.
    pub async fn refill(&self) -> StoreResult<PoolStats> {
        self.pass_checking(false).await
    }

    async fn pass_checking(&self, check: bool) -> StoreResult<PoolStats> {
        let mut stats = PoolStats::default();
        for kind in self.kinds() {
            *stats.of_mut(kind) = self.pass_kind(kind, check).await?;
        }
        Ok(stats)
    }

    async fn pass_kind(&self, kind: PoolKind, check: bool) -> StoreResult<KindStats> {
        let target = kind.target(self.targets);
        let mut stats = KindStats::default();
        if check {
            stats.broken = self.check_ready(kind).await?;
            stats.dropped = self.sweep_orphans(kind).await?;
        }
        let held = self.store.pool_slots(kind).await?;
        let plan = crate::model::pool::plan(target, &held);
        if !plan.retire.is_empty() {
            let why = vec![format!("beyond the pool's target of {target}"); plan.retire.len()];
            stats.retired = self.store.discard_pooled(kind, &plan.retire, &why).await? as usize;
        }
        let mut work = self
            .store
            .fill_pool_slots(kind, &plan.fill, &self.replica, self.lease)
            .await?;
        work.extend(
            self.store
                .lease_pool_work(kind, &self.replica, self.lease, LEASE_BATCH)
                .await?,
        );
        let results: Vec<StoreResult<KindStats>> = futures::stream::iter(work)
            .map(|row| async move { self.work(&row).await })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            stats.add(&r?);
        }
        Ok(stats)
    }

    /// Passes until the pools have nothing left to do now (every slot
    /// filled, nothing to drop), at most 100: for tests that need full pools.
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

    /// Runs passes until `shutdown`: a full pass (health check included)
    /// at every resync, and a refill (see [`PoolKeeper::refill`]) a moment
    /// after a database or sandbox row is inserted (a create, which may
    /// have claimed one). The notifications that came meanwhile (a create
    /// inserts two rows; a burst, many) are taken as one.
    pub async fn run(
        &self,
        mut changes: Option<broadcast::Receiver<Change>>,
        shutdown: CancellationToken,
    ) -> StoreResult<()> {
        let mut check = true;
        while !shutdown.is_cancelled() {
            let pass = if check {
                self.pass().await
            } else {
                self.refill().await
            };
            match pass {
                Ok(s) if s != PoolStats::default() => {
                    tracing::debug!(replica = %self.replica, ?s, "pool pass")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(replica = %self.replica, "pool pass failed: {e}"),
            }
            let wait = tokio::time::sleep(self.resync);
            tokio::pin!(wait);
            check = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break true,
                    _ = &mut wait => break true,
                    claim = next_create(&mut changes) => if claim {
                        // The claim's own start goes first: it is what a
                        // user waits for; the refill is not.
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = tokio::time::sleep(REFILL_DELAY) => {}
                        }
                        drain_pending(&mut changes);
                        break false;
                    },
                }
            };
        }
        self.store.release_pool_leases(&self.replica).await?;
        Ok(())
    }

    /// Ends the pooled sandboxes the back end holds that nothing owns (see
    /// [`SandboxPoolDriver::unopened_pooled`]); how many. Only ones never
    /// opened by a claim are candidates, so no tenant's work is in them.
    async fn sweep_orphans(&self, kind: PoolKind) -> StoreResult<usize> {
        let (PoolKind::Sandbox, Some(sandboxes)) = (kind, &self.sandboxes) else {
            return Ok(0);
        };
        let held = match sandboxes.unopened_pooled().await {
            Ok(held) if held.is_empty() => return Ok(0),
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(replica = %self.replica, "listing pooled sandboxes: {e}");
                return Ok(0);
            }
        };
        let mut ended = 0;
        for name in self.store.orphaned_pooled_sandboxes(&held).await? {
            match sandboxes.delete(&pooled_ref(&name)).await {
                Ok(()) => {
                    tracing::info!(pooled = %name, "pool: ended a pooled sandbox that nothing owns");
                    ended += 1;
                }
                Err(e) => {
                    tracing::warn!(pooled = %name, "pool: ending an unowned pooled sandbox: {e}")
                }
            }
        }
        Ok(ended)
    }

    /// Health check of the ready pooled resources of `kind`, in one driver
    /// call; sets aside the ones that are not whole. Returns how many.
    async fn check_ready(&self, kind: PoolKind) -> StoreResult<usize> {
        let ready = self.store.ready_pooled(kind).await?;
        let gauge = crate::ops::metrics::metrics()
            .pool_ready
            .with_label_values(&[kind.as_str()]);
        if ready.is_empty() {
            gauge.set(0);
            return Ok(0);
        }
        let refs: Vec<ResourceRef> = ready.iter().map(|(_, n)| pooled_ref(n)).collect();
        let seen = match (kind, &self.sandboxes) {
            (PoolKind::Database, _) => self.databases.observe(&refs).await,
            (PoolKind::Sandbox, Some(sandboxes)) => sandboxes.observe_pooled(&refs).await,
            (PoolKind::Sandbox, None) => return Ok(0),
        };
        let seen = match seen {
            Ok(seen) => seen,
            Err(e) => {
                // Unknown health is not broken; check again next pass.
                tracing::warn!(replica = %self.replica, "{} pool health check failed: {e}", kind.as_str());
                return Ok(0);
            }
        };
        let (ids, why) = unhealthy(&ready, &seen);
        let broken = self.store.discard_pooled(kind, &ids, &why).await? as usize;
        gauge.set(ready.len().saturating_sub(broken) as i64);
        Ok(broken)
    }

    async fn work(&self, row: &PoolLeased) -> StoreResult<KindStats> {
        let mut stats = KindStats::default();
        let r = pooled_ref(&row.resource_name);
        let result: Result<(), DriverError> = match (row.kind, row.state, &self.sandboxes) {
            // Never leased: ready ones are only checked.
            (_, PoolState::Ready, _) => return Ok(stats),
            // Sandbox rows are only leased by a keeper with their driver.
            (PoolKind::Sandbox, _, None) => return Ok(stats),
            (PoolKind::Database, PoolState::Creating, _) => {
                let password = self.store.key().decrypt_string(
                    row.password_enc.as_deref().unwrap_or_default(),
                    &pooled_password_context(&row.resource_name),
                )?;
                let spec = DatabaseSpec {
                    resource: r,
                    password: password.into(),
                    sandbox: None,
                };
                match self.databases.ensure(&spec).await {
                    Ok(Observed::Running) => Ok(()),
                    Ok(other) => Err(DriverError::transient(format!(
                        "pooled database {}: {other:?} after creating it",
                        row.resource_name
                    ))),
                    Err(e) => Err(e),
                }
            }
            (PoolKind::Sandbox, PoolState::Creating, Some(sandboxes)) => {
                sandboxes.prepare_pooled(&r).await
            }
            (PoolKind::Database, PoolState::Broken | PoolState::Claimed, _) => {
                self.databases.delete(&r).await
            }
            (PoolKind::Sandbox, PoolState::Broken | PoolState::Claimed, Some(sandboxes)) => {
                sandboxes.delete(&r).await
            }
        };
        match result {
            Ok(()) if row.state == PoolState::Creating => {
                if self.store.pooled_made(row).await? {
                    stats.made += 1;
                }
            }
            Ok(()) => {
                if self.store.pooled_dropped(row).await? {
                    stats.dropped += 1;
                }
            }
            Err(e) => {
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
        }
        Ok(stats)
    }
}

/// A pooled resource as the driver sees it: a name and nothing else (it
/// belongs to no project and no owner until claimed).
fn pooled_ref(name: &str) -> ResourceRef {
    ResourceRef {
        resource_name: name.to_string(),
        namespace: String::new(),
        project_slug: String::new(),
        owner: Uuid::nil(),
    }
}

/// The ready pooled resources the observation did not see whole and
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

/// Waits for the next change; `true` when it is a new database or sandbox
/// row (a create, which may have taken one from a pool).
/// Takes the notifications already received (they are covered by the pass
/// about to run).
fn drain_pending(changes: &mut Option<broadcast::Receiver<Change>>) {
    if let Some(rx) = changes {
        while !matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }
}

async fn next_create(changes: &mut Option<broadcast::Receiver<Change>>) -> bool {
    match changes {
        Some(rx) => match rx.recv().await {
            Ok(c) => matches!(c.table.as_str(), "databases" | "sandboxes") && c.op == "INSERT",
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
