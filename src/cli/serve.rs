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
    let host_key =
        crate::ssh::hostkey::load_or_create(&config.data_dir.join("ssh_host_ed25519_key"))?;
    let listener = crate::ssh::server::bind(&config.ssh.listen).await?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let server_cluster = server_cluster_client(config.server_cluster).await?;
    let (drift_tx, drift_rx) = tokio::sync::mpsc::channel(1024);
    let drift_marker = crate::backends::spawn_drift_marker(db.store.clone(), drift_rx);
    let backends = Arc::new(
        crate::backends::Backends::new(
            crate::backends::LocalBackend {
                sandboxes: Arc::new(sandboxes.clone()),
                databases: Arc::new(databases),
                attach: Some(Arc::new(sandboxes.clone())),
            },
            server_cluster,
            Arc::new(config.kubernetes.clone()),
            Arc::new(db.store.clone()),
        )
        .with_drift_watch(drift_tx),
    );
    let reconciler = Reconciler::new(
        db.store.clone(),
        backends.clone(),
        backends.clone(),
        config.reconcile.clone(),
        config.replica_id.clone(),
    );
    eprintln!(
        "kiln: replica {} serving SSH on {} (data dir {})",
        config.replica_id,
        listener.local_addr()?,
        config.data_dir.display()
    );
    let drivers = crate::ssh::server::ConsoleDrivers {
        attach: Some(backends.clone()),
        logs: Some(backends.clone()),
        api_servers: config.kubernetes.api_server_policy(),
    };
    let mut ssh_config = config.ssh.clone();
    let confinement = sandboxes.confinement();
    eprintln!("kiln: {}", confinement.describe());
    let (signup, why) = crate::config::effective_signup(
        ssh_config.signup,
        config.server_cluster,
        confinement.is_confined(),
    );
    if let Some(why) = why {
        eprintln!("kiln: {why}");
    }
    ssh_config.signup = signup;
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
    let reconcile = reconciler.run(Some(feed.subscribe()), shutdown.clone());
    // Either one failing stops the other: a replica half-up is worse than down.
    let (ssh_result, reconcile_result) = tokio::join!(
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
    );
    drift_marker.abort();
    intake.abort();
    drop(feed);
    ssh_result?;
    reconcile_result.map(|_| ()).map_err(Into::into)
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
    eprintln!(
        "kiln: server cluster: Kubernetes {}.{}",
        version.major, version.minor
    );
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
        eprintln!("kiln: shutting down (releasing leases)");
        shutdown.cancel();
    });
}
