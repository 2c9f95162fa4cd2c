//! The driver traits on [`Backends`]: every call goes to the back end that
//! serves the resource's owner; observation is grouped per back end.

use std::collections::HashMap;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use uuid::Uuid;

use super::router::{Backends, Route};
use crate::driver::{
    Attachment, DatabaseDriver, DatabaseSpec, DbCredentials, DriverError, DriverResult, LogEvent,
    Observed, ResourceRef, SandboxDriver, SandboxLogs, SandboxSpec, SessionAttach, SessionInfo,
    Viewer,
};
use crate::k8s::cluster::K8sCluster;

const SANDBOX: &str = "sandbox";
const DATABASE: &str = "database";

/// Times one driver call on `backend` and counts it when it fails
/// (`kiln_driver_call_duration_seconds`, `kiln_driver_errors_total`).
async fn metered<T>(
    backend: &'static str,
    kind: &'static str,
    op: &'static str,
    call: impl Future<Output = DriverResult<T>>,
) -> DriverResult<T> {
    let started = Instant::now();
    let result = call.await;
    crate::ops::metrics::driver_call(backend, kind, op, started.elapsed(), &result);
    result
}

/// Where a sandbox or database of a tenant on cluster `c` lives: the
/// pool's namespace for one claimed from the pool, the tenant's own
/// otherwise.
fn home<'a>(c: &'a Arc<K8sCluster>, r: &ResourceRef) -> &'a K8sCluster {
    c.pool_home(r).map_or(c.as_ref(), |p| p.as_ref())
}

impl Route {
    /// The back end's name in metrics: a bounded label, never a namespace.
    pub fn backend_label(&self) -> &'static str {
        match self {
            Route::Local => "local",
            Route::Cluster(_) => "kubernetes",
        }
    }
}

impl Backends {
    /// The route for a call; a user whose back end cannot be reached (a
    /// kubeconfig that no longer works) counts as a failed call of the
    /// `unrouted` back end.
    async fn routed(
        &self,
        owner: Uuid,
        kind: &'static str,
        op: &'static str,
    ) -> DriverResult<Route> {
        let started = Instant::now();
        let route = self.route(owner).await;
        if route.is_err() {
            crate::ops::metrics::driver_call("unrouted", kind, op, started.elapsed(), &route);
        }
        route
    }
}

#[async_trait]
impl SandboxDriver for Backends {
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        let route = self.routed(spec.resource.owner, SANDBOX, "ensure").await?;
        metered(route.backend_label(), SANDBOX, "ensure", async {
            match &route {
                Route::Local => self.local.sandboxes.ensure(spec).await,
                Route::Cluster(c) => match c.pool_home(&spec.resource) {
                    Some(pool) => pool.ensure_claimed(spec, c).await,
                    None => SandboxDriver::ensure(c.as_ref(), spec).await,
                },
            }
        })
        .await
    }

    /// A sandbox claimed from a pool: the local back end's, or the server
    /// cluster's (opened without a restart, see `k8s::pool`); elsewhere
    /// this is ensure.
    async fn adopt(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        let route = self.routed(spec.resource.owner, SANDBOX, "adopt").await?;
        metered(route.backend_label(), SANDBOX, "adopt", async {
            match &route {
                Route::Local => self.local.sandboxes.adopt(spec).await,
                Route::Cluster(c) => match c.pool_home(&spec.resource) {
                    Some(pool) => pool.adopt_claimed(spec, c).await,
                    None => SandboxDriver::ensure(c.as_ref(), spec).await,
                },
            }
        })
        .await
    }

    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed> {
        let route = self.routed(r.owner, SANDBOX, "stop").await?;
        metered(route.backend_label(), SANDBOX, "stop", async {
            match &route {
                Route::Local => self.local.sandboxes.stop(r).await,
                Route::Cluster(c) => SandboxDriver::stop(home(c, r), r).await,
            }
        })
        .await
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        let route = self.routed(r.owner, SANDBOX, "delete").await?;
        metered(route.backend_label(), SANDBOX, "delete", async {
            match &route {
                Route::Local => self.local.sandboxes.delete(r).await,
                Route::Cluster(c) => match c.pool_home(r) {
                    Some(pool) => pool.delete_claimed(r, c).await,
                    None => SandboxDriver::delete(c.as_ref(), r).await,
                },
            }
        })
        .await
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let mut out = HashMap::with_capacity(rs.len());
        for (route, refs) in self.group(rs).await? {
            let seen = metered(route.backend_label(), SANDBOX, "observe", async {
                match &route {
                    Route::Local => self.local.sandboxes.observe(&refs).await,
                    Route::Cluster(c) => SandboxDriver::observe(c.as_ref(), &refs).await,
                }
            })
            .await?;
            out.extend(seen);
        }
        Ok(out)
    }

    async fn sync_env(&self, spec: &SandboxSpec) -> DriverResult<()> {
        let route = self
            .routed(spec.resource.owner, SANDBOX, "sync_env")
            .await?;
        metered(route.backend_label(), SANDBOX, "sync_env", async {
            match &route {
                Route::Local => self.local.sandboxes.sync_env(spec).await,
                Route::Cluster(c) => match c.pool_home(&spec.resource) {
                    Some(pool) => pool.sync_claimed(spec).await,
                    None => c.sync_env(spec).await,
                },
            }
        })
        .await
    }

    fn backend_label(&self, owner: Uuid) -> &'static str {
        self.cached_backend(owner)
    }
}

#[async_trait]
impl DatabaseDriver for Backends {
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let route = self.routed(spec.resource.owner, DATABASE, "ensure").await?;
        metered(route.backend_label(), DATABASE, "ensure", async {
            match &route {
                Route::Local => self.local.databases.ensure(spec).await,
                Route::Cluster(c) => match c.pool_home(&spec.resource) {
                    Some(pool) => pool.ensure_claimed_database(spec, c).await,
                    None => DatabaseDriver::ensure(c.as_ref(), spec).await,
                },
            }
        })
        .await
    }

    /// Pooled databases are the local back end's; a database on a cluster
    /// is ensured (its claim is dropped by the pool keeper once settled).
    async fn adopt(&self, spec: &DatabaseSpec, pooled: &str) -> DriverResult<Observed> {
        let route = self.routed(spec.resource.owner, DATABASE, "adopt").await?;
        metered(route.backend_label(), DATABASE, "adopt", async {
            match &route {
                Route::Local => self.local.databases.adopt(spec, pooled).await,
                Route::Cluster(c) => match c.pool_home(&spec.resource) {
                    Some(pool) => pool.ensure_claimed_database(spec, c).await,
                    None => DatabaseDriver::ensure(c.as_ref(), spec).await,
                },
            }
        })
        .await
    }

    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let route = self.routed(spec.resource.owner, DATABASE, "stop").await?;
        metered(route.backend_label(), DATABASE, "stop", async {
            match &route {
                Route::Local => self.local.databases.stop(spec).await,
                Route::Cluster(c) => DatabaseDriver::stop(home(c, &spec.resource), spec).await,
            }
        })
        .await
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        let route = self.routed(r.owner, DATABASE, "delete").await?;
        metered(route.backend_label(), DATABASE, "delete", async {
            match &route {
                Route::Local => self.local.databases.delete(r).await,
                Route::Cluster(c) => match c.pool_home(r) {
                    Some(pool) => pool.delete_claimed_database(r, c).await,
                    None => DatabaseDriver::delete(c.as_ref(), r).await,
                },
            }
        })
        .await
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let mut out = HashMap::with_capacity(rs.len());
        for (route, refs) in self.group(rs).await? {
            let seen = metered(route.backend_label(), DATABASE, "observe", async {
                match &route {
                    Route::Local => self.local.databases.observe(&refs).await,
                    Route::Cluster(c) => DatabaseDriver::observe(c.as_ref(), &refs).await,
                }
            })
            .await?;
            out.extend(seen);
        }
        Ok(out)
    }

    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        let route = self
            .routed(spec.resource.owner, DATABASE, "credentials")
            .await?;
        metered(route.backend_label(), DATABASE, "credentials", async {
            match &route {
                Route::Local => self.local.databases.credentials(spec).await,
                Route::Cluster(c) => home(c, &spec.resource).credentials(spec).await,
            }
        })
        .await
    }
}

#[async_trait]
impl SessionAttach for Backends {
    async fn sessions(&self, r: &ResourceRef) -> DriverResult<Vec<SessionInfo>> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.sessions(r).await,
            Route::Cluster(c) => home(&c, r).sessions(r).await,
        }
    }

    async fn app_endpoint(
        &self,
        r: &ResourceRef,
    ) -> DriverResult<Option<crate::driver::AppEndpoint>> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.app_endpoint(r).await,
            Route::Cluster(c) => home(&c, r).app_endpoint(r).await,
        }
    }

    async fn attach(
        &self,
        r: &ResourceRef,
        session: Option<&str>,
        viewer: &Viewer,
    ) -> DriverResult<Attachment> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.attach(r, session, viewer).await,
            Route::Cluster(c) => home(&c, r).attach(r, session, viewer).await,
        }
    }

    async fn restart(&self, r: &ResourceRef, session: Option<&str>) -> DriverResult<()> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.restart(r, session).await,
            Route::Cluster(c) => home(&c, r).restart(r, session).await,
        }
    }

    async fn git_state(
        &self,
        r: &ResourceRef,
    ) -> DriverResult<Option<crate::model::git::GitState>> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.git_state(r).await,
            Route::Cluster(c) => home(&c, r).git_state(r).await,
        }
    }
}

#[async_trait]
impl SandboxLogs for Backends {
    async fn logs(
        &self,
        r: &ResourceRef,
        tail: Option<i64>,
        follow: bool,
    ) -> DriverResult<tokio::sync::mpsc::Receiver<LogEvent>> {
        match self.route(r.owner).await? {
            Route::Local => Err(DriverError::permanent(
                "logs: sandboxes on the local driver have no container log; attach to see the session",
            )),
            Route::Cluster(c) => home(&c, r).logs(r, tail, follow).await,
        }
    }
}
