//! The reconcile loop (DESIGN §5): lease due rows, observe them in batches,
//! plan each one, act through the driver, write the outcome fenced.
//!
//! This module holds the configuration and the loop that runs passes until
//! shutdown; one pass (lease, observe, plan) is in `pass`, and acting on a
//! row and writing its outcome in `act`.

mod act;
pub mod backoff;
mod idle;
pub mod outcome;
mod pass;
pub mod plan;
pub mod pool;
pub mod trace;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::driver::{DatabaseDriver, ResourceRef, SandboxDriver};
use crate::store::notify::Change;
use crate::store::resources::Leased;
use crate::store::{Store, StoreResult};
pub use idle::SweepStats;
use outcome::Schedule;
use plan::PlanInput;

#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// Look for work at least this often even without a notification.
    pub resync: Duration,
    /// Rows leased per table per round trip.
    pub batch_size: i64,
    /// How long a lease lasts; a replica that dies loses its rows after this.
    pub lease: Duration,
    /// Rows worked at once (driver calls in flight).
    pub concurrency: usize,
    /// Outcome write transactions a pass keeps in flight at once. A pass's
    /// rows are split among them by project (a project's rows always share
    /// one), so they lock disjoint projects and run side by side on as many
    /// of the server's cores, where one would wait for each commit in turn.
    pub write_lanes: usize,
    pub schedule: Schedule,
    /// How long a pass in flight at shutdown may take to finish before it is
    /// dropped. Every driver call has its own timeout, so a pass normally
    /// ends well within this.
    pub shutdown_grace: Duration,
    /// Where sandboxes' hooks report over HTTP (`agents.hook_url`): when
    /// set, every sandbox gets it and its own token (see `model::hook_token`).
    pub hook_url: Option<String>,
    /// The idle stop policy the loop sweeps for.
    pub idle: crate::model::idle::IdlePolicy,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(3),
            batch_size: 64,
            lease: Duration::from_secs(30),
            concurrency: 16,
            write_lanes: 2,
            schedule: Schedule {
                observe_interval: Duration::from_secs(60),
                poll_interval: Duration::from_secs(1),
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(60),
            },
            shutdown_grace: Duration::from_secs(10),
            hook_url: None,
            idle: crate::model::idle::IdlePolicy::default(),
        }
    }
}

/// What one pass did; the benchmark and `kiln status` read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleStats {
    pub leased: usize,
    /// Round trips to Postgres (statements or transactions).
    pub queries: usize,
    pub driver_calls: usize,
    /// Rows whose status changed.
    pub transitions: usize,
    pub superseded: usize,
    pub lease_lost: usize,
    pub failures: usize,
    /// Transactions the outcomes were written in (one per batch).
    pub write_batches: usize,
    /// Passes that failed (a store error: the database away, a deadlock).
    pub failed_passes: usize,
    /// Passes that leased something.
    pub passes: usize,
    /// Where those passes' time went (`kiln bench reconcile` prints it):
    /// the lease statements, the other reads and releases before the work,
    /// the outcome writes (which overlap the work), and the passes whole.
    pub lease_time: Duration,
    pub read_time: Duration,
    pub write_time: Duration,
    pub pass_time: Duration,
}

impl CycleStats {
    pub fn add(&mut self, o: &CycleStats) {
        self.leased += o.leased;
        self.queries += o.queries;
        self.driver_calls += o.driver_calls;
        self.transitions += o.transitions;
        self.superseded += o.superseded;
        self.lease_lost += o.lease_lost;
        self.failures += o.failures;
        self.write_batches += o.write_batches;
        self.failed_passes += o.failed_passes;
        self.passes += o.passes;
        self.lease_time += o.lease_time;
        self.read_time += o.read_time;
        self.write_time += o.write_time;
        self.pass_time += o.pass_time;
    }
}

pub struct Reconciler {
    store: Store,
    sandboxes: Arc<dyn SandboxDriver>,
    databases: Arc<dyn DatabaseDriver>,
    cfg: ReconcileConfig,
    replica: String,
    /// Keeps the warm pool beside the loop, when this replica has one.
    pool: Option<pool::PoolKeeper>,
}

impl Reconciler {
    pub fn new(
        store: Store,
        sandboxes: Arc<dyn SandboxDriver>,
        databases: Arc<dyn DatabaseDriver>,
        cfg: ReconcileConfig,
        replica: impl Into<String>,
    ) -> Self {
        Self {
            store,
            sandboxes,
            databases,
            cfg,
            replica: replica.into(),
            pool: None,
        }
    }

    /// Keeps `keeper`'s pool while the loop runs (see [`pool::PoolKeeper`]).
    pub fn with_pool(mut self, keeper: pool::PoolKeeper) -> Self {
        self.pool = Some(keeper);
        self
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Runs until `shutdown`, then gives back every lease this replica holds.
    /// Wakes on a change notification, at the resync interval, or when a
    /// retry it scheduled falls due, whichever is first.
    pub async fn run(
        &self,
        changes: Option<broadcast::Receiver<Change>>,
        shutdown: CancellationToken,
    ) -> StoreResult<CycleStats> {
        let Some(keeper) = &self.pool else {
            return self.run_loop(changes, shutdown).await;
        };
        let pool_changes = changes.as_ref().map(|c| c.resubscribe());
        // The keeper stops with the loop, whyever the loop stopped.
        let keeper_stop = shutdown.child_token();
        let (stats, pool) = tokio::join!(
            async {
                let stats = self.run_loop(changes, shutdown.clone()).await;
                keeper_stop.cancel();
                stats
            },
            keeper.run(pool_changes, keeper_stop.clone())
        );
        pool?;
        stats
    }

    async fn run_loop(
        &self,
        mut changes: Option<broadcast::Receiver<Change>>,
        shutdown: CancellationToken,
    ) -> StoreResult<CycleStats> {
        let mut total = CycleStats::default();
        let mut next_sweep = Instant::now();
        // When a change notification woke the loop (for `trace`).
        let mut woken = None;
        while !shutdown.is_cancelled() {
            let mut wake_at = Instant::now() + self.cfg.resync;
            let Some(pass) = self.finish_pass(&shutdown, woken.take()).await else {
                tracing::warn!(
                    replica = %self.replica,
                    "shutdown: a reconcile pass did not finish within {:?}; abandoned",
                    self.cfg.shutdown_grace
                );
                break;
            };
            match pass {
                Ok((stats, soonest)) => {
                    total.add(&stats);
                    if let Some(s) = soonest {
                        wake_at = wake_at.min(s);
                    }
                }
                Err(e) => {
                    total.failed_passes += 1;
                    tracing::warn!(replica = %self.replica, "reconcile pass failed: {e}");
                }
            }
            if self.cfg.idle.enabled() {
                next_sweep = self.sweep_if_due(next_sweep, &mut total).await;
                wake_at = wake_at.min(next_sweep);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake_at.into()) => {}
                _ = next_change(&mut changes) => woken = Some(chrono::Utc::now()),
            }
        }
        let released = self.store.release_leases(&self.replica).await?;
        tracing::info!(replica = %self.replica, released, "reconcile loop stopped");
        Ok(total)
    }

    /// Drains, but once `shutdown` fires it starts no new pass and gives the
    /// one in flight `shutdown_grace` to finish. Dropping a pass half-way
    /// would abandon driver calls already made and the counts of writes
    /// already committed. `None` when the grace ran out.
    async fn finish_pass(
        &self,
        shutdown: &CancellationToken,
        woken: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Option<StoreResult<(CycleStats, Option<Instant>)>> {
        let drain = self.drain_until(shutdown, woken);
        tokio::pin!(drain);
        tokio::select! {
            pass = &mut drain => Some(pass),
            _ = shutdown.cancelled() => tokio::time::timeout(self.cfg.shutdown_grace, drain).await.ok(),
        }
    }

    /// Passes until a pass finds less than a full batch: a backlog is worked
    /// off without waiting for the next wake-up.
    pub async fn drain(&self) -> StoreResult<(CycleStats, Option<Instant>)> {
        self.drain_until(&CancellationToken::new(), None).await
    }

    /// `woken`: when a change notification woke the loop for this drain.
    async fn drain_until(
        &self,
        shutdown: &CancellationToken,
        mut woken: Option<chrono::DateTime<chrono::Utc>>,
    ) -> StoreResult<(CycleStats, Option<Instant>)> {
        let mut total = CycleStats::default();
        let mut soonest: Option<Instant> = None;
        // A batch leased while the previous one's outcomes were written.
        let mut next: Option<pass::Leases> = None;
        loop {
            let leases = match next.take() {
                Some(l) => l,
                None => self.lease(woken.take()).await?,
            };
            if leases.is_empty() {
                total.add(&leases.into_stats());
                return Ok((total, soonest));
            }
            // Rows once leased are worked, shutdown or not; only a batch
            // that came back full is worth leasing after.
            let go_on = leases.full && !shutdown.is_cancelled();
            let (worked_tx, worked_rx) = tokio::sync::oneshot::channel::<()>();
            let (pass, leased_next) = tokio::join!(
                self.work_leases(leases, move || {
                    let _ = worked_tx.send(());
                }),
                async {
                    // Once this batch's driver calls are done, its outcome
                    // writes and the next lease go side by side: the loop
                    // waits for one commit at a time, not a commit and then
                    // a lease.
                    if go_on && worked_rx.await.is_ok() && !shutdown.is_cancelled() {
                        Some(self.lease(None).await)
                    } else {
                        None
                    }
                }
            );
            let leased_next = leased_next.transpose();
            let (stats, s) = match pass {
                Ok(p) => p,
                Err(e) => {
                    if let Ok(Some(l)) = &leased_next
                        && let Err(g) = self.give_back(l).await
                    {
                        tracing::warn!(replica = %self.replica, "giving back unworked leases: {g}");
                    }
                    return Err(e);
                }
            };
            total.add(&stats);
            soonest = earliest(soonest, s);
            match leased_next? {
                Some(l) => next = Some(l),
                None => return Ok((total, soonest)),
            }
        }
    }
}

/// The sooner of two optional times (a retry due, a wait): `None` only
/// when both are.
fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn plan_input(row: &Leased) -> PlanInput {
    PlanInput {
        desired: row.desired,
        status: row.status,
        env_drift: row.env_drift(),
    }
}

fn resource_ref(row: &Leased) -> ResourceRef {
    ResourceRef {
        resource_name: row.resource_name.clone(),
        namespace: row.namespace.clone(),
        project_slug: row.project_slug.clone(),
        owner: row.user_id,
    }
}

async fn next_change(changes: &mut Option<broadcast::Receiver<Change>>) {
    match changes {
        Some(rx) => match rx.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                *changes = None;
                std::future::pending::<()>().await
            }
        },
        None => std::future::pending::<()>().await,
    }
}
