//! `kiln serve`: the wiring of one replica (database, drivers, router,
//! change feed, reconcile loop, SSH console) until SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::reconcile::Reconciler;
use crate::runtime::Database;

pub(super) async fn serve(config: Config) -> anyhow::Result<()> {
    let db = Database::open(&config, 30).await?;
    // Whatever stops the replica (a failure to set up included), the
    // embedded cluster it started is stopped with it.
    let served = run_replica(&db, &config).await;
    let closed = db.close().await;
    served?;
    closed
}

/// Sets up the drivers, the SSH console and the reconcile loop over `db`,
/// and runs them until shutdown or until one fails.
async fn run_replica(db: &Database, config: &Config) -> anyhow::Result<()> {
    let mut sandboxes =
        crate::local::LocalSandboxes::new(&config.data_dir, config.local.sandbox_command.clone())
            .context("setting up local sandboxes")?;
    // Claude Code's hooks in local sandboxes report through this binary
    // (`kiln hook`) and each sandbox's own socket; the intake records them.
    let (hook_tx, hook_rx) = tokio::sync::mpsc::channel(1024);
    let kiln_binary = std::env::current_exe().context("locating Kiln's own binary")?;
    sandboxes = sandboxes.with_agent_hooks(hook_tx, kiln_binary);
    let unattached_activity = crate::store::activity::ActivityRecorder::new();
    sandboxes = sandboxes.with_activity(unattached_activity.clone());
    let intake = tokio::spawn(
        crate::console::Console::new(db.store.clone(), None, None).run_hook_intake(hook_rx),
    );
    let mut databases = crate::local::LocalDatabases::connect(&db.admin_url)
        .await
        .context("connecting to the Postgres server for tenant databases")?;
    if let Some(dir) = &db.tenant_socket_dir {
        databases = databases.with_sandbox_socket_dir(dir);
        // A confined sandbox sees this one directory of the cluster's, and
        // nothing else of the data directory (Kiln's own socket included).
        sandboxes = sandboxes.with_read_only_dir(dir);
    }
    let feed = Arc::new(db.store.listen().await.context("listening for changes")?);
    let host_key = match &config.ssh_host_key_file {
        Some(path) => crate::ssh::hostkey::load_configured(path)?,
        None => crate::ssh::hostkey::load_or_create(&config.data_dir.join("ssh_host_ed25519_key"))?,
    };
    let listener = crate::ssh::server::bind(&config.ssh.listen).await?;
    let http_listener = match &config.http_listen {
        Some(addr) => Some(crate::ops::http::bind(addr).await?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let server_cluster = server_cluster_client(config.server_cluster).await?;
    let (drift_tx, drift_rx) = tokio::sync::mpsc::channel(1024);
    let drift_marker = crate::backends::spawn_drift_marker(db.store.clone(), drift_rx);
    let databases: Arc<dyn crate::driver::DatabaseDriver> = Arc::new(databases);
    let backends = Arc::new(
        crate::backends::Backends::new(
            crate::backends::LocalBackend {
                sandboxes: Arc::new(sandboxes.clone()),
                databases: databases.clone(),
                attach: Some(Arc::new(sandboxes.clone())),
            },
            server_cluster,
            Arc::new(config.kubernetes.clone()),
            Arc::new(db.store.clone()),
        )
        .with_drift_watch(drift_tx),
    );
    // With a server cluster nobody's resources are local: both pools are
    // the cluster's (`kubernetes.pool_databases`, `pool_sandboxes`), in its
    // pool namespace; the local pools are left empty.
    type Pools = (
        crate::model::pool::PoolTargets,
        Arc<dyn crate::driver::DatabaseDriver>,
        Arc<dyn crate::driver::SandboxPoolDriver>,
    );
    let (pool_target, pooled_databases, pooled_sandboxes): Pools =
        match (config.server_cluster, backends.sandbox_pool()) {
            (crate::config::ServerCluster::None, _) | (_, None) => {
                (config.pool, databases, Arc::new(sandboxes.clone()))
            }
            (_, Some(pool)) => (
                crate::model::pool::PoolTargets {
                    databases: config.kubernetes.pool_databases,
                    sandboxes: config.kubernetes.pool_sandboxes,
                },
                Arc::new(crate::k8s::pool::PooledDatabases(pool.clone())),
                pool,
            ),
        };
    let keeper = crate::reconcile::pool::PoolKeeper::new(
        db.store.clone(),
        pooled_databases,
        pool_target.databases,
        config.replica_id.clone(),
    )
    .with_sandboxes(pooled_sandboxes, pool_target.sandboxes)
    .with_timing(config.reconcile.lease, config.reconcile.resync);
    let reconciler = Reconciler::new(
        db.store.clone(),
        backends.clone(),
        backends.clone(),
        config.reconcile.clone(),
        config.replica_id.clone(),
    )
    .with_pool(keeper);
    crate::ops::logs::notice(&format!(
        "replica {} serving SSH on {} (data dir {})",
        config.replica_id,
        listener.local_addr()?,
        config.data_dir.display()
    ));
    let webhook_hosts = crate::k8s::kubeconfig::ApiServerPolicy {
        allow_private: config.agents.webhook_allow_private_hosts,
    };
    let drivers = crate::ssh::server::ConsoleDrivers {
        attach: Some(backends.clone()),
        logs: Some(backends.clone()),
        api_servers: config.kubernetes.api_server_policy(),
        webhook_hosts,
        repos: config.git,
        templates: Some(config.templates.clone()),
    };
    // Users' webhooks: one delivery task per replica (they share the queue).
    tokio::spawn(
        crate::console::Console::new(db.store.clone(), None, None).run_webhook_delivery(
            crate::console::webhooks::WebhookDelivery {
                hosts: webhook_hosts,
                ..Default::default()
            },
            Some(feed.subscribe()),
            shutdown.clone(),
        ),
    );
    let mut ssh_config = config.ssh.clone();
    let confinement = sandboxes.confinement();
    crate::ops::logs::notice(&confinement.describe());
    let (signup, why) = crate::config::effective_signup(
        ssh_config.signup,
        config.server_cluster,
        confinement.is_confined(),
    );
    if let Some(why) = why {
        crate::ops::logs::notice(&why);
    }
    ssh_config.signup = signup;
    // The HTTP listener outlives the shutdown signal (readiness answers
    // 503 "shutting down" while sessions are told and leases handed back)
    // and ends with this function.
    let http_stop = CancellationToken::new();
    let _http_stop = http_stop.clone().drop_guard();
    if let Some(http) = http_listener {
        crate::ops::logs::notice(&format!(
            "operator HTTP (/metrics, /livez, /readyz) on {}",
            http.local_addr()?
        ));
        let health = Arc::new(crate::ops::health::Health {
            store: db.store.clone(),
            feed: feed.clone(),
            ssh: listener.local_addr()?,
            shutdown: shutdown.clone(),
        });
        tokio::spawn(crate::ops::http::run(http, health, http_stop));
    }
    let ssh = crate::ssh::server::run(
        db.store.clone(),
        feed.clone(),
        drivers,
        ssh_config,
        host_key,
        listener,
        format!("local driver: {}", confinement.headline()),
        shutdown.clone(),
    );
    tokio::spawn(prune_audit(
        db.store.clone(),
        config.audit_retention,
        shutdown.clone(),
    ));
    tokio::spawn(prune_notifications(
        db.store.clone(),
        config.notifications_keep_for,
        shutdown.clone(),
    ));
    // A program's output while nobody is attached counts as activity too:
    // the loop's observation reads it from tmux, this writes it.
    tokio::spawn(unattached_activity.run(db.store.clone(), shutdown.clone()));
    let reconcile = reconciler.run(Some(feed.subscribe()), shutdown.clone());
    // Either one failing stops the other: a replica half-up is worse than down.
    let both = async {
        tokio::join!(
            async {
                let r = ssh.await;
                shutdown.cancel();
                r
            },
            async {
                let r = reconcile.await;
                shutdown.cancel();
                r
            }
        )
    };
    // Once told to stop, the replica is gone within the grace period,
    // whatever is still in flight.
    let grace = config.shutdown_grace;
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let (ssh_result, reconcile_result) = tokio::select! {
        r = both => r,
        _ = deadline => {
            anyhow::bail!("shutdown did not finish within the grace period of {grace:?}")
        }
    };
    drift_marker.abort();
    intake.abort();
    drop(feed);
    ssh_result?;
    reconcile_result.map(|_| ()).map_err(Into::into)
}

/// Retention of the audit trail (`audit.retention_days`): at start, then
/// hourly. Every replica does it; deleting what another replica deleted
/// deletes nothing.
async fn prune_audit(
    store: crate::store::Store,
    keep: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match store.prune_audit(keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "audit retention: old records deleted"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed; trying again in an hour"),
        }
    }
}

/// Retention of notifications (`notifications.keep_for`): at start, then
/// hourly, by every replica (deleting twice deletes nothing more).
async fn prune_notifications(
    store: crate::store::Store,
    keep: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match store.prune_notifications(keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(notifications = n, "old notifications deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "notification retention failed; trying again in an hour")
            }
        }
    }
}

/// The server's own cluster client, when configured; a configured cluster
/// that cannot be reached stops Kiln at start rather than failing every
/// project later.
async fn server_cluster_client(
    mode: crate::config::ServerCluster,
) -> anyhow::Result<Option<kube::Client>> {
    use crate::config::ServerCluster;
    let config = match mode {
        ServerCluster::None => return Ok(None),
        ServerCluster::InCluster => kube::Config::incluster()
            .context("server_cluster = in-cluster, but this is not a pod with a service account")?,
        ServerCluster::Kubeconfig => kube::Config::from_kubeconfig(
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .context(
            "server_cluster = kubeconfig, but KUBECONFIG (or ~/.kube/config) cannot be used",
        )?,
    };
    let client = kube::Client::try_from(config).context("building the cluster client")?;
    let version = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        client.apiserver_version(),
    )
    .await
    .context("the server's cluster did not answer within 15 s")?
    .context("the server's cluster does not answer")?;
    crate::ops::logs::notice(&format!(
        "server cluster: Kubernetes {}.{}",
        version.major, version.minor
    ));
    Ok(Some(client))
}

/// Shown on every dashboard while sandboxes run on this host.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        crate::ops::logs::notice("shutting down: telling sessions, handing back leases");
        shutdown.cancel();
    });
}
