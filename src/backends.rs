//! Which back end serves a user (DESIGN §6), first rule that applies:
//! 1. the user set a kubeconfig: that cluster, in its current context's namespace;
//! 2. the server has a cluster (in-cluster or `KUBECONFIG`): that cluster, in
//!    a namespace of the user's own, `kiln-{username}`, created and labelled;
//! 3. the local driver.
//!
//! [`Backends`] implements the driver traits by routing each resource to its
//! owner's back end, so the reconcile loop and the console stay unaware of
//! where anything runs. Clients are cached per user and rebuilt when the
//! kubeconfig changes; the cache is re-checked every few seconds, so a change
//! made through another replica is picked up too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use uuid::Uuid;

use crate::driver::{
    Attachment, DatabaseDriver, DatabaseSpec, DbCredentials, DriverError, DriverResult, LogEvent,
    Observed, ResourceRef, SandboxDriver, SandboxLogs, SandboxSpec, SessionAttach, SessionInfo,
    Viewer,
};
use crate::k8s::cluster::K8sCluster;
use crate::k8s::settings::K8sSettings;
use crate::store::Store;

/// How long a user's route is trusted before the kubeconfig is read again.
const ROUTE_TTL: Duration = Duration::from_secs(5);

/// What the router needs to know about a user.
#[derive(Clone)]
pub struct TenantInfo {
    pub username: String,
    pub kubeconfig: Option<String>,
}

/// Where tenants' details come from (the store, or a test's table).
#[async_trait]
pub trait TenantDirectory: Send + Sync + 'static {
    async fn tenant(&self, user: Uuid) -> DriverResult<TenantInfo>;
}

#[async_trait]
impl TenantDirectory for Store {
    async fn tenant(&self, user: Uuid) -> DriverResult<TenantInfo> {
        let (username, kubeconfig) = self
            .tenant_backend_inputs(user)
            .await
            .map_err(|e| DriverError::transient(format!("reading the user's back end: {e}")))?;
        Ok(TenantInfo {
            username,
            kubeconfig,
        })
    }
}

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

struct Cached {
    fetched: Instant,
    kubeconfig: Option<u64>,
    route: Route,
    /// The route's drift watch; replaced (and so stopped) with the route.
    _watch: Option<WatchGuard>,
}

/// Stops a watch task when dropped.
struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Backends {
    local: LocalBackend,
    server_cluster: Option<kube::Client>,
    settings: Arc<K8sSettings>,
    tenants: Arc<dyn TenantDirectory>,
    routes: Mutex<HashMap<Uuid, Cached>>,
    /// Where cluster watches report the resources they saw change.
    drift: Option<tokio::sync::mpsc::Sender<String>>,
}

/// The namespace a user gets on the server's cluster.
pub fn tenant_namespace(username: &str) -> String {
    format!("kiln-{}", username.to_ascii_lowercase())
}

/// A stable fingerprint of a kubeconfig, to notice a change without keeping
/// a second copy of the secret around.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Backends {
    pub fn new(
        local: LocalBackend,
        server_cluster: Option<kube::Client>,
        settings: Arc<K8sSettings>,
        tenants: Arc<dyn TenantDirectory>,
    ) -> Self {
        Self {
            local,
            server_cluster,
            settings,
            tenants,
            routes: Mutex::new(HashMap::new()),
            drift: None,
        }
    }

    /// Watches every cluster route and sends the names of resources whose
    /// objects changed, so the caller can look at them at once.
    pub fn with_drift_watch(mut self, names: tokio::sync::mpsc::Sender<String>) -> Self {
        self.drift = Some(names);
        self
    }

    /// Where `owner`'s resources live, from the cache when it is fresh.
    pub async fn route(&self, owner: Uuid) -> DriverResult<Route> {
        let cached = {
            let routes = self.routes.lock().expect("routes lock");
            routes.get(&owner).map(|c| {
                (
                    c.fetched.elapsed() < ROUTE_TTL,
                    c.kubeconfig,
                    c.route.clone(),
                )
            })
        };
        if let Some((true, _, route)) = &cached {
            return Ok(route.clone());
        }
        let tenant = self.tenants.tenant(owner).await?;
        let print = tenant.kubeconfig.as_deref().map(fingerprint);
        if let Some((_, old, route)) = cached
            && old == print
        {
            // Same kubeconfig as before: keep the client, its connections
            // and its watch.
            if let Some(c) = self.routes.lock().expect("routes lock").get_mut(&owner) {
                c.fetched = Instant::now();
            }
            return Ok(route);
        }
        let route = self.build(&tenant).await?;
        let watch = match (&route, &self.drift) {
            (Route::Cluster(c), Some(tx)) => Some(WatchGuard(
                crate::k8s::watch::spawn_drift_watch(c, tx.clone()),
            )),
            _ => None,
        };
        self.routes.lock().expect("routes lock").insert(
            owner,
            Cached {
                fetched: Instant::now(),
                kubeconfig: print,
                route: route.clone(),
                _watch: watch,
            },
        );
        Ok(route)
    }

    /// Drops a user's cached route (their kubeconfig just changed here).
    pub fn forget(&self, owner: Uuid) {
        self.routes.lock().expect("routes lock").remove(&owner);
    }

    async fn build(&self, tenant: &TenantInfo) -> DriverResult<Route> {
        if let Some(yaml) = &tenant.kubeconfig {
            let parsed = crate::k8s::kubeconfig::parse(yaml).map_err(|e| {
                DriverError::permanent(format!(
                    "your kubeconfig cannot be used ({e}); set a working one in Settings"
                ))
            })?;
            let client = parsed.client().await.map_err(|e| {
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
            let ns = tenant_namespace(&tenant.username);
            let cluster = K8sCluster::new(client.clone(), ns, self.settings.clone());
            ensure_namespace(&cluster, &tenant.username).await?;
            return Ok(Route::Cluster(Arc::new(cluster)));
        }
        Ok(Route::Local)
    }

    /// Resources grouped by the back end that serves them, so observation
    /// stays one call per back end, not one per resource.
    async fn group(&self, rs: &[ResourceRef]) -> DriverResult<Vec<(Route, Vec<ResourceRef>)>> {
        let mut by_owner: HashMap<Uuid, Vec<ResourceRef>> = HashMap::new();
        for r in rs {
            by_owner.entry(r.owner).or_default().push(r.clone());
        }
        let mut local = Vec::new();
        let mut clusters: Vec<(Arc<K8sCluster>, Vec<ResourceRef>)> = Vec::new();
        for (owner, refs) in by_owner {
            match self.route(owner).await? {
                Route::Local => local.extend(refs),
                Route::Cluster(c) => match clusters.iter_mut().find(|(k, _)| Arc::ptr_eq(k, &c)) {
                    Some((_, v)) => v.extend(refs),
                    None => clusters.push((c, refs)),
                },
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

    fn local_attach(&self) -> DriverResult<&Arc<dyn SessionAttach>> {
        self.local.attach.as_ref().ok_or_else(|| {
            DriverError::permanent("attach is not available on this server's local driver")
        })
    }
}

/// Turns watch reports into due rows: names are gathered for a moment (a
/// pod restart touches the pod and its StatefulSet several times) and
/// marked in one statement.
pub fn spawn_drift_marker(
    store: Store,
    mut names: tokio::sync::mpsc::Receiver<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(first) = names.recv().await {
            let mut batch = vec![first];
            let gather = tokio::time::sleep(Duration::from_millis(200));
            tokio::pin!(gather);
            loop {
                tokio::select! {
                    _ = &mut gather => break,
                    more = names.recv() => match more {
                        Some(n) => batch.push(n),
                        None => break,
                    },
                }
            }
            batch.sort();
            batch.dedup();
            if let Err(e) = store.mark_due(&batch).await {
                tracing::warn!("marking {} watched resources due: {e}", batch.len());
            }
        }
    })
}

async fn ensure_namespace(cluster: &K8sCluster, username: &str) -> DriverResult<()> {
    let ns = cluster.namespace();
    let api: Api<Namespace> = Api::all(cluster.client().clone());
    let labels = [
        ("app.kubernetes.io/managed-by", "kiln"),
        ("kiln.dev/tenant", username),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let what = format!("creating namespace {ns}");
    match cluster
        .bounded(&what, api.create(&PostParams::default(), &object))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::k8s::cluster::is_already_exists(&e) => Ok(()),
        Err(e) => Err(crate::k8s::cluster::classify(e, &what)),
    }
}

#[async_trait]
impl SandboxDriver for Backends {
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.sandboxes.ensure(spec).await,
            Route::Cluster(c) => SandboxDriver::ensure(c.as_ref(), spec).await,
        }
    }

    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed> {
        match self.route(r.owner).await? {
            Route::Local => self.local.sandboxes.stop(r).await,
            Route::Cluster(c) => SandboxDriver::stop(c.as_ref(), r).await,
        }
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        match self.route(r.owner).await? {
            Route::Local => self.local.sandboxes.delete(r).await,
            Route::Cluster(c) => SandboxDriver::delete(c.as_ref(), r).await,
        }
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let mut out = HashMap::with_capacity(rs.len());
        for (route, refs) in self.group(rs).await? {
            let seen = match route {
                Route::Local => self.local.sandboxes.observe(&refs).await?,
                Route::Cluster(c) => SandboxDriver::observe(c.as_ref(), &refs).await?,
            };
            out.extend(seen);
        }
        Ok(out)
    }

    async fn sync_env(&self, spec: &SandboxSpec) -> DriverResult<()> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.sandboxes.sync_env(spec).await,
            Route::Cluster(c) => c.sync_env(spec).await,
        }
    }
}

#[async_trait]
impl DatabaseDriver for Backends {
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.databases.ensure(spec).await,
            Route::Cluster(c) => DatabaseDriver::ensure(c.as_ref(), spec).await,
        }
    }

    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.databases.stop(spec).await,
            Route::Cluster(c) => DatabaseDriver::stop(c.as_ref(), spec).await,
        }
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        match self.route(r.owner).await? {
            Route::Local => self.local.databases.delete(r).await,
            Route::Cluster(c) => DatabaseDriver::delete(c.as_ref(), r).await,
        }
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let mut out = HashMap::with_capacity(rs.len());
        for (route, refs) in self.group(rs).await? {
            let seen = match route {
                Route::Local => self.local.databases.observe(&refs).await?,
                Route::Cluster(c) => DatabaseDriver::observe(c.as_ref(), &refs).await?,
            };
            out.extend(seen);
        }
        Ok(out)
    }

    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.databases.credentials(spec).await,
            Route::Cluster(c) => c.credentials(spec).await,
        }
    }
}

#[async_trait]
impl SessionAttach for Backends {
    async fn sessions(&self, r: &ResourceRef) -> DriverResult<Vec<SessionInfo>> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.sessions(r).await,
            Route::Cluster(c) => c.sessions(r).await,
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
            Route::Cluster(c) => c.attach(r, session, viewer).await,
        }
    }

    async fn restart(&self, r: &ResourceRef, session: Option<&str>) -> DriverResult<()> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.restart(r, session).await,
            Route::Cluster(c) => c.restart(r, session).await,
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
            Route::Cluster(c) => c.logs(r, tail, follow).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_get_their_own_namespace() {
        assert_eq!(tenant_namespace("alice"), "kiln-alice");
        assert_ne!(tenant_namespace("alice"), tenant_namespace("bob"));
    }

    #[test]
    fn a_changed_kubeconfig_has_a_new_fingerprint() {
        assert_eq!(fingerprint("a: 1"), fingerprint("a: 1"));
        assert_ne!(fingerprint("a: 1"), fingerprint("a: 2"));
    }
}
