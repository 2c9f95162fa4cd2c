//! Which back end serves a user (the rules are in the module doc of
//! `backends`), decided once per user and kept in the route cache.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::cache::{Lookup, RouteCache, fingerprint};
use super::namespace::{ensure_namespace, tenant_namespace};
use super::tenants::{TenantDirectory, TenantInfo};
use crate::driver::{
    DatabaseDriver, DriverError, DriverResult, ResourceRef, SandboxDriver, SessionAttach,
};
use crate::k8s::cluster::K8sCluster;
use crate::k8s::settings::K8sSettings;

/// The local back end's three faces.
#[derive(Clone)]
pub struct LocalBackend {
    pub sandboxes: Arc<dyn SandboxDriver>,
    pub databases: Arc<dyn DatabaseDriver>,
    pub attach: Option<Arc<dyn SessionAttach>>,
}

/// Where one user's resources live.
#[derive(Clone, Debug)]
pub enum Route {
    Local,
    Cluster(Arc<K8sCluster>),
}

impl Route {
    /// One line for the dashboard and `whoami`.
    pub fn describe(&self) -> String {
        match self {
            Route::Local => "local driver (this host)".into(),
            Route::Cluster(c) => format!("Kubernetes, namespace {}", c.namespace()),
        }
    }
}

pub struct Backends {
    pub(super) local: LocalBackend,
    server_cluster: Option<kube::Client>,
    settings: Arc<K8sSettings>,
    tenants: Arc<dyn TenantDirectory>,
    routes: RouteCache,
    /// Where cluster watches report the resources they saw change.
    drift: Option<tokio::sync::mpsc::Sender<String>>,
    /// The warm pool's namespace on the server's cluster, where its
    /// sandboxes run, claimed or not (`k8s::pool`).
    pool: Option<Arc<K8sCluster>>,
}

impl Backends {
    pub fn new(
        local: LocalBackend,
        server_cluster: Option<kube::Client>,
        settings: Arc<K8sSettings>,
        tenants: Arc<dyn TenantDirectory>,
    ) -> Self {
        let pool = server_cluster.as_ref().map(|client| {
            Arc::new(K8sCluster::new(
                client.clone(),
                settings.pool_namespace.clone(),
                settings.clone(),
            ))
        });
        Self {
            local,
            server_cluster,
            settings,
            tenants,
            routes: RouteCache::default(),
            drift: None,
            pool,
        }
    }

    /// The server cluster's sandbox pool (`None` without a server
    /// cluster), which the pool keeper fills and checks.
    pub fn sandbox_pool(&self) -> Option<Arc<K8sCluster>> {
        self.pool.clone()
    }

    /// Watches every cluster route and sends the names of resources whose
    /// objects changed, so the caller can look at them at once.
    pub fn with_drift_watch(mut self, names: tokio::sync::mpsc::Sender<String>) -> Self {
        self.drift = Some(names);
        self
    }

    /// Where `owner`'s resources live, from the cache when it is fresh.
    pub async fn route(&self, owner: Uuid) -> DriverResult<Route> {
        let cached = self.routes.get(owner);
        if let Some(Lookup {
            fresh: true, route, ..
        }) = &cached
        {
            return Ok(route.clone());
        }
        let tenant = self.tenants.tenant(owner).await?;
        let print = tenant.kubeconfig.as_deref().map(fingerprint);
        if let Some(c) = cached
            && c.kubeconfig == print
        {
            // Same kubeconfig as before: keep the client, its connections
            // and its watch.
            self.routes.touch(owner);
            return Ok(c.route);
        }
        let route = self.build(owner, &tenant).await?;
        let watch = match (&route, &self.drift) {
            (Route::Cluster(c), Some(tx)) => {
                Some(crate::k8s::watch::spawn_drift_watch(c, tx.clone()))
            }
            _ => None,
        };
        self.routes.insert(owner, print, route.clone(), watch);
        Ok(route)
    }

    /// The back end `owner` was last routed to, for metrics; `unknown`
    /// before the first call (never a lookup: this is on the write path).
    pub fn cached_backend(&self, owner: Uuid) -> &'static str {
        self.routes
            .get(owner)
            .map_or("unknown", |l| l.route.backend_label())
    }

    /// Drops a user's cached route (their kubeconfig just changed here).
    pub fn forget(&self, owner: Uuid) {
        self.routes.forget(owner);
    }

    async fn build(&self, owner: Uuid, tenant: &TenantInfo) -> DriverResult<Route> {
        if let Some(yaml) = &tenant.kubeconfig {
            let parsed = crate::k8s::kubeconfig::parse(yaml).map_err(|e| {
                DriverError::permanent(format!(
                    "your kubeconfig cannot be used ({e}); set a working one in Settings"
                ))
            })?;
            let client = parsed
                .client(self.settings.api_server_policy())
                .await
                .map_err(|e| {
                    DriverError::transient(format!("connecting with your kubeconfig: {e}"))
                })?;
            let ns = parsed.namespace.clone();
            return Ok(Route::Cluster(Arc::new(K8sCluster::new(
                client,
                ns,
                self.settings.clone(),
            ))));
        }
        if let Some(client) = &self.server_cluster {
            let ns = tenant_namespace(&tenant.username, owner);
            let mut cluster = K8sCluster::new(client.clone(), ns, self.settings.clone());
            if let Some(pool) = &self.pool {
                cluster = cluster.with_pool(pool.clone());
            }
            ensure_namespace(&cluster, &tenant.username, owner).await?;
            // Before any sandbox runs there: no route, no pods, until the
            // namespace is fenced off from other tenants and the cluster.
            cluster.ensure_network_policies().await?;
            return Ok(Route::Cluster(Arc::new(cluster)));
        }
        Ok(Route::Local)
    }

    /// Resources grouped by the back end that serves them, so observation
    /// stays one call per back end, not one per resource.
    pub(super) async fn group(
        &self,
        rs: &[ResourceRef],
    ) -> DriverResult<Vec<(Route, Vec<ResourceRef>)>> {
        let mut by_owner: HashMap<Uuid, Vec<ResourceRef>> = HashMap::new();
        for r in rs {
            by_owner.entry(r.owner).or_default().push(r.clone());
        }
        let mut local = Vec::new();
        let mut clusters: Vec<(Arc<K8sCluster>, Vec<ResourceRef>)> = Vec::new();
        for (owner, refs) in by_owner {
            match self.route(owner).await? {
                Route::Local => local.extend(refs),
                Route::Cluster(c) => {
                    // Sandboxes claimed from the pool are all observed
                    // together, in the pool's namespace.
                    for r in refs {
                        let home = c.pool_home(&r).unwrap_or(&c).clone();
                        match clusters.iter_mut().find(|(k, _)| Arc::ptr_eq(k, &home)) {
                            Some((_, v)) => v.push(r),
                            None => clusters.push((home, vec![r])),
                        }
                    }
                }
            }
        }
        let mut out: Vec<(Route, Vec<ResourceRef>)> = clusters
            .into_iter()
            .map(|(c, v)| (Route::Cluster(c), v))
            .collect();
        if !local.is_empty() {
            out.push((Route::Local, local));
        }
        Ok(out)
    }

    pub(super) fn local_attach(&self) -> DriverResult<&Arc<dyn SessionAttach>> {
        self.local.attach.as_ref().ok_or_else(|| {
            DriverError::permanent("attach is not available on this server's local driver")
        })
    }
}
