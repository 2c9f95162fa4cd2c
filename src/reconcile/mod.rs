//! The reconcile loop (DESIGN §5): lease due rows, observe them in batches,
//! plan each one, act through the driver, write the outcome fenced.

pub mod backoff;
pub mod outcome;
pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::driver::{
    DatabaseDriver, DatabaseSpec, DriverError, DriverResult, Observed, ResourceRef, SandboxDriver,
    SandboxSpec,
};
use crate::model::ResourceStatus;
use crate::store::notify::Change;
use crate::store::resources::{Leased, ResourceKind, WriteResult};
use crate::store::{Store, StoreError, StoreResult};
use outcome::Schedule;
use plan::{Action, PlanInput, plan};

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
    pub schedule: Schedule,
    /// How long a pass in flight at shutdown may take to finish before it is
    /// dropped. Every driver call has its own timeout, so a pass normally
    /// ends well within this.
    pub shutdown_grace: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(3),
            batch_size: 64,
            lease: Duration::from_secs(30),
            concurrency: 16,
            schedule: Schedule {
                observe_interval: Duration::from_secs(60),
                poll_interval: Duration::from_secs(1),
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(60),
            },
            shutdown_grace: Duration::from_secs(10),
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
}

impl CycleStats {
    fn add(&mut self, o: &CycleStats) {
        self.leased += o.leased;
        self.queries += o.queries;
        self.driver_calls += o.driver_calls;
        self.transitions += o.transitions;
        self.superseded += o.superseded;
        self.lease_lost += o.lease_lost;
        self.failures += o.failures;
    }
}

/// The plan for a row and what the batch observation saw, or why observing failed.
type Decision = Result<(Action, Observed), DriverError>;

pub struct Reconciler {
    store: Store,
    sandboxes: Arc<dyn SandboxDriver>,
    databases: Arc<dyn DatabaseDriver>,
    cfg: ReconcileConfig,
    replica: String,
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
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Runs until `shutdown`, then gives back every lease this replica holds.
    /// Wakes on a change notification, at the resync interval, or when a
    /// retry it scheduled falls due, whichever is first.
    pub async fn run(
        &self,
        mut changes: Option<broadcast::Receiver<Change>>,
        shutdown: CancellationToken,
    ) -> StoreResult<CycleStats> {
        let mut total = CycleStats::default();
        while !shutdown.is_cancelled() {
            let mut wake_at = Instant::now() + self.cfg.resync;
            let Some(pass) = self.finish_pass(&shutdown).await else {
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
                Err(e) => tracing::warn!(replica = %self.replica, "reconcile pass failed: {e}"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake_at.into()) => {}
                _ = next_change(&mut changes) => {}
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
    ) -> Option<StoreResult<(CycleStats, Option<Instant>)>> {
        let drain = self.drain_until(shutdown);
        tokio::pin!(drain);
        tokio::select! {
            pass = &mut drain => Some(pass),
            _ = shutdown.cancelled() => tokio::time::timeout(self.cfg.shutdown_grace, drain).await.ok(),
        }
    }

    /// Passes until a pass finds less than a full batch: a backlog is worked
    /// off without waiting for the next wake-up.
    pub async fn drain(&self) -> StoreResult<(CycleStats, Option<Instant>)> {
        self.drain_until(&CancellationToken::new()).await
    }

    async fn drain_until(
        &self,
        shutdown: &CancellationToken,
    ) -> StoreResult<(CycleStats, Option<Instant>)> {
        let mut total = CycleStats::default();
        let mut soonest: Option<Instant> = None;
        loop {
            let (stats, s, full) = self.pass().await?;
            total.add(&stats);
            soonest = match (soonest, s) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if !full || shutdown.is_cancelled() {
                return Ok((total, soonest));
            }
        }
    }

    /// One pass: lease a batch of each kind, observe, plan, act, write.
    /// Returns the stats, the soonest retry it scheduled, and whether a
    /// batch came back full (more work is likely waiting).
    pub async fn pass(&self) -> StoreResult<(CycleStats, Option<Instant>, bool)> {
        let mut stats = CycleStats::default();
        let (sandboxes, databases) = tokio::try_join!(
            self.store.lease_batch(
                ResourceKind::Sandbox,
                &self.replica,
                self.cfg.lease,
                self.cfg.batch_size
            ),
            self.store.lease_batch(
                ResourceKind::Database,
                &self.replica,
                self.cfg.lease,
                self.cfg.batch_size
            ),
        )?;
        stats.queries += 2;
        let full = sandboxes.len() as i64 >= self.cfg.batch_size
            || databases.len() as i64 >= self.cfg.batch_size;
        stats.leased = sandboxes.len() + databases.len();
        if stats.leased == 0 {
            return Ok((stats, None, false));
        }

        // One observation per kind for the whole batch.
        let sandbox_refs: Vec<ResourceRef> = sandboxes.iter().map(resource_ref).collect();
        let database_refs: Vec<ResourceRef> = databases.iter().map(resource_ref).collect();
        let (seen_sandboxes, seen_databases) = tokio::join!(
            async {
                if sandbox_refs.is_empty() {
                    Ok(HashMap::new())
                } else {
                    self.sandboxes.observe(&sandbox_refs).await
                }
            },
            async {
                if database_refs.is_empty() {
                    Ok(HashMap::new())
                } else {
                    self.databases.observe(&database_refs).await
                }
            },
        );
        stats.driver_calls +=
            usize::from(!sandboxes.is_empty()) + usize::from(!databases.is_empty());

        let mut unchanged: Vec<(&Leased, Duration)> = Vec::new();
        let mut work: Vec<(Leased, Decision)> = Vec::new();
        for (rows, seen) in [(&sandboxes, &seen_sandboxes), (&databases, &seen_databases)] {
            for row in rows.iter() {
                let input = plan_input(row);
                let decided = match seen {
                    Ok(map) => {
                        let observed = map
                            .get(&row.resource_name)
                            .cloned()
                            .unwrap_or(Observed::Absent);
                        Ok((plan(input, &observed), observed))
                    }
                    Err(e) => Err(e.clone()),
                };
                let quiet = match &decided {
                    Ok((Action::Nothing, _)) => true,
                    Ok((Action::Settle, _)) => {
                        row.status == crate::model::ResourceStatus::settled_at(row.desired)
                            && row.last_error.is_none()
                            && row.attempts == 0
                    }
                    _ => false,
                };
                if quiet {
                    let jitter = backoff::unit_random();
                    let interval = self.cfg.schedule.observe_interval;
                    unchanged.push((row, interval.mul_f64(0.9 + 0.2 * jitter)));
                } else {
                    work.push((row.clone(), decided));
                }
            }
        }

        for kind in ResourceKind::ALL {
            let (rows, delays): (Vec<&Leased>, Vec<Duration>) = unchanged
                .iter()
                .filter(|(r, _)| r.kind == kind)
                .cloned()
                .unzip();
            if !rows.is_empty() {
                self.store.release_unchanged(kind, &rows, &delays).await?;
                stats.queries += 1;
            }
        }

        let results: Vec<StoreResult<(CycleStats, Option<Duration>)>> = futures::stream::iter(work)
            .map(|(row, decided)| async move { self.work_row(&row, decided).await })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await;
        let mut soonest: Option<Duration> = None;
        for r in results {
            let (s, next) = r?;
            stats.add(&s);
            if let Some(n) = next {
                soonest = Some(soonest.map_or(n, |m| m.min(n)));
            }
        }
        Ok((stats, soonest.map(|d| Instant::now() + d), full))
    }

    /// Acts on one row and writes the outcome.
    async fn work_row(
        &self,
        row: &Leased,
        decided: Decision,
    ) -> StoreResult<(CycleStats, Option<Duration>)> {
        let mut stats = CycleStats::default();
        let input = plan_input(row);
        let mut applied_env_version = None;
        let mut connection = None;
        let result: DriverResult<Observed> = match decided {
            Err(e) => Err(e),
            Ok((action, observed)) => {
                let r = self
                    .act(
                        row,
                        &action,
                        observed,
                        &mut stats,
                        &mut applied_env_version,
                        &mut connection,
                    )
                    .await;
                match r {
                    Err(ActError::Store(e)) => return Err(e),
                    Err(ActError::Driver(e)) => Err(e),
                    Ok(o) => Ok(o),
                }
            }
        };
        if result.is_err() {
            stats.failures += 1;
        }
        let mut out = outcome::outcome(
            input,
            row.attempts,
            &result,
            &self.cfg.schedule,
            backoff::unit_random(),
        );
        if result.is_ok() {
            out.applied_env_version = applied_env_version;
            out.connection = connection;
        }
        let written = self.store.record_outcome(row, &out, &self.replica).await?;
        stats.queries += 1;
        match written {
            WriteResult::Written if out.status != row.status => stats.transitions += 1,
            WriteResult::Written => {}
            WriteResult::Superseded => stats.superseded += 1,
            WriteResult::LeaseLost => stats.lease_lost += 1,
        }
        Ok((stats, out.next_attempt_in))
    }

    async fn act(
        &self,
        row: &Leased,
        action: &Action,
        observed: Observed,
        stats: &mut CycleStats,
        applied_env_version: &mut Option<i64>,
        connection: &mut Option<(String, i32, String, String)>,
    ) -> Result<Observed, ActError> {
        let r = resource_ref(row);
        match (row.kind, action) {
            // A database that has just come up: it is RUNNING only once its
            // connection details can be read (the seed keeps STARTING too).
            (ResourceKind::Database, Action::Nothing | Action::Wait | Action::Settle)
                if observed == Observed::Running && row.status != ResourceStatus::Running =>
            {
                let spec = self.database_spec(row, r)?;
                stats.driver_calls += 1;
                self.with_credentials(&spec, observed, connection).await
            }
            // The batch observation already says where it is.
            (_, Action::Nothing | Action::Wait | Action::Settle) => Ok(observed),
            (_, Action::Forget) => Ok(Observed::Absent),
            (_, Action::Fail(reason)) => Ok(Observed::Failed(reason.clone())),
            (ResourceKind::Sandbox, Action::Ensure | Action::SyncEnv) => {
                let (version, spec) = self.sandbox_spec(row, &r, stats).await?;
                stats.driver_calls += 1;
                let observed = if *action == Action::Ensure {
                    self.sandboxes.ensure(&spec).await?
                } else {
                    self.sandboxes.sync_env(&spec).await?;
                    Observed::Running
                };
                *applied_env_version = Some(version);
                Ok(observed)
            }
            (ResourceKind::Sandbox, Action::Stop) => {
                stats.driver_calls += 1;
                Ok(self.sandboxes.stop(&r).await?)
            }
            (ResourceKind::Sandbox, Action::Delete) => {
                stats.driver_calls += 1;
                self.sandboxes.delete(&r).await?;
                Ok(Observed::Absent)
            }
            (ResourceKind::Database, Action::Ensure) => {
                let spec = self.database_spec(row, r)?;
                stats.driver_calls += 2;
                let observed = self.databases.ensure(&spec).await?;
                self.with_credentials(&spec, observed, connection).await
            }
            (ResourceKind::Database, Action::Stop) => {
                let spec = self.database_spec(row, r)?;
                stats.driver_calls += 1;
                Ok(self.databases.stop(&spec).await?)
            }
            (ResourceKind::Database, Action::Delete) => {
                stats.driver_calls += 1;
                self.databases.delete(&r).await?;
                Ok(Observed::Absent)
            }
            (ResourceKind::Database, Action::SyncEnv) => Ok(Observed::Running),
        }
    }

    /// A running database's connection details, or `Starting` while they
    /// cannot be read yet.
    async fn with_credentials(
        &self,
        spec: &DatabaseSpec,
        observed: Observed,
        connection: &mut Option<(String, i32, String, String)>,
    ) -> Result<Observed, ActError> {
        if observed != Observed::Running {
            return Ok(observed);
        }
        match self.databases.credentials(spec).await? {
            Some(c) => {
                *connection = Some((c.host, i32::from(c.port), c.database, c.user));
                Ok(Observed::Running)
            }
            None => Ok(Observed::Starting),
        }
    }

    /// The sandbox's spec: the project's variables plus what Kiln injects.
    async fn sandbox_spec(
        &self,
        row: &Leased,
        r: &ResourceRef,
        stats: &mut CycleStats,
    ) -> Result<(i64, SandboxSpec), ActError> {
        let inputs = self.store.sandbox_inputs(row.project_id).await?;
        stats.queries += 1;
        let (version, mut env, mut secret_keys) =
            (inputs.env_version, inputs.env, inputs.secret_keys);
        if let Some((name, namespace, sealed)) = inputs.database {
            let password = self
                .store
                .key()
                .decrypt_string(&sealed, &ResourceKind::Database.password_context(&name))?;
            let spec = DatabaseSpec {
                resource: ResourceRef {
                    resource_name: name,
                    namespace,
                    project_slug: row.project_slug.clone(),
                    owner: row.user_id,
                },
                password: password.into(),
            };
            stats.driver_calls += 1;
            if let Some(c) = self.databases.credentials(&spec).await? {
                env.push(("DATABASE_URL".into(), c.url()));
                secret_keys.insert("DATABASE_URL".into());
            }
        }
        // The user's Claude settings win over project variables of the same
        // name, as in the seed; the kubeconfig and the rest never leave.
        let configs = self.store.list_user_configs(row.user_id).await?;
        stats.queries += 1;
        for c in configs {
            if let Some(name) = crate::model::env::sandbox_name_of_user_setting(&c.key) {
                env.retain(|(k, _)| k != name);
                if c.is_secret {
                    secret_keys.insert(name.to_string());
                }
                env.push((name.to_string(), c.value.into_inner()));
            }
        }
        env.push(("PROJECT_NAME".into(), row.project_name.clone()));
        env.sort();
        Ok((
            version,
            SandboxSpec {
                resource: r.clone(),
                env,
                secret_keys,
            },
        ))
    }

    fn database_spec(&self, row: &Leased, r: ResourceRef) -> Result<DatabaseSpec, ActError> {
        let sealed = row.password_enc.as_deref().unwrap_or_default();
        let password = self.store.key().decrypt_string(
            sealed,
            &ResourceKind::Database.password_context(&row.resource_name),
        )?;
        Ok(DatabaseSpec {
            resource: r,
            password: password.into(),
        })
    }
}

/// A failure while acting: a driver error becomes the row's outcome; a store
/// error aborts the pass (the lease expires and the row is retried).
enum ActError {
    Driver(DriverError),
    Store(StoreError),
}

impl From<DriverError> for ActError {
    fn from(e: DriverError) -> Self {
        ActError::Driver(e)
    }
}

impl From<StoreError> for ActError {
    fn from(e: StoreError) -> Self {
        ActError::Store(e)
    }
}

impl From<crate::store::CryptoError> for ActError {
    fn from(e: crate::store::CryptoError) -> Self {
        ActError::Store(e.into())
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
