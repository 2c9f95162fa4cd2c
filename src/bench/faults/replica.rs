//! A replica as its own process: `kiln bench faults-replica` runs only the
//! reconcile loop, against the scratch database, with the counting driver
//! of `world`. The suite starts, kills (SIGKILL) and restarts these.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::world::WorldDriver;
use crate::reconcile::{ReconcileConfig, Reconciler};
use crate::store::{SecretKey, Store};

/// The environment variables that hand the scratch secret key and the
/// database URLs (a private cluster's holds its superuser password) to a
/// replica: never on the command line, where `ps` would show them.
pub const KEY_ENV: &str = "KILN_FAULTS_SECRET_KEY";
pub const DATABASE_URL_ENV: &str = "KILN_FAULTS_DATABASE_URL";
pub const WORLD_URL_ENV: &str = "KILN_FAULTS_WORLD_URL";

/// How a replica process is set up; the same for every replica of a run.
#[derive(Debug, Clone)]
pub struct ReplicaArgs {
    pub database_url: String,
    pub world_url: String,
    pub lease: Duration,
    pub latency: Duration,
}

/// The loop's settings for the suite: short lease, quick polls and retries,
/// so a killed replica's rows are taken over within seconds.
pub fn reconcile_config(lease: Duration) -> ReconcileConfig {
    let mut c = ReconcileConfig {
        resync: Duration::from_millis(250),
        batch_size: 32,
        lease,
        concurrency: 16,
        shutdown_grace: Duration::from_secs(5),
        ..ReconcileConfig::default()
    };
    c.schedule.poll_interval = Duration::from_millis(100);
    c.schedule.backoff_base = Duration::from_millis(50);
    c.schedule.backoff_cap = Duration::from_secs(1);
    c
}

/// The body of `kiln bench faults-replica`: runs until SIGTERM or SIGINT.
pub async fn run_replica(args: ReplicaArgs, replica: String) -> anyhow::Result<()> {
    let key_text = std::env::var(KEY_ENV).with_context(|| format!("{KEY_ENV} is not set"))?;
    let key = SecretKey::from_hex(&key_text)?;
    let store = Store::connect(&args.database_url, key, 5).await?;
    let feed = store.listen().await?;
    let world = Arc::new(WorldDriver::connect(&args.world_url, &replica, args.latency).await?);
    let rec = Reconciler::new(
        store.clone(),
        world.clone(),
        world,
        reconcile_config(args.lease),
        replica,
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    rec.run(Some(feed.subscribe()), shutdown).await?;
    Ok(())
}

/// The body of `kiln bench faults-front`: an SSH front end (dashboards and
/// exec commands, no reconcile loop) on the scratch database, until SIGTERM.
pub async fn run_front(database_url: &str, listen: &str) -> anyhow::Result<()> {
    let key_text = std::env::var(KEY_ENV).with_context(|| format!("{KEY_ENV} is not set"))?;
    let store = Store::connect(database_url, SecretKey::from_hex(&key_text)?, 20).await?;
    let feed = Arc::new(store.listen().await?);
    let listener = crate::ssh::server::bind(listen).await?;
    let host_key = russh::keys::PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )?;
    let config = crate::config::SshConfig {
        listen: listen.to_string(),
        ..crate::config::SshConfig::default()
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        term.recv().await;
        stop.cancel();
    });
    crate::ssh::server::run(
        store,
        feed,
        None::<Arc<dyn crate::driver::SessionAttach>>,
        config,
        host_key,
        listener,
        String::new(),
        shutdown,
    )
    .await
}

/// A process's resident set, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One replica slot: a process that is killed and restarted under a new
/// generation (`r0.g3`), as a restarted pod gets a new name.
pub struct Replica {
    pub slot: usize,
    pub generation: usize,
    child: Child,
}

/// Starts replica processes from one binary with one set of arguments.
pub struct Spawner {
    pub exe: PathBuf,
    pub args: ReplicaArgs,
    pub key_hex: String,
    pub log_dir: PathBuf,
}

impl Spawner {
    pub fn spawn(&self, slot: usize, generation: usize) -> anyhow::Result<Replica> {
        let id = format!("r{slot}.g{generation}");
        let mut cmd = Command::new(&self.exe);
        cmd.arg("bench")
            .arg("faults-replica")
            .arg("--replica-id")
            .arg(&id)
            .arg("--lease-ms")
            .arg(self.args.lease.as_millis().to_string())
            .arg("--latency-ms")
            .arg(self.args.latency.as_millis().to_string());
        self.start(cmd, &id, slot, generation)
    }

    /// The SSH front end as its own process (slot 99), listening on `listen`.
    pub fn spawn_front(&self, listen: &str) -> anyhow::Result<Replica> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("bench")
            .arg("faults-front")
            .arg("--listen")
            .arg(listen);
        self.start(cmd, "r99.g0", 99, 0)
    }

    fn start(
        &self,
        mut cmd: Command,
        id: &str,
        slot: usize,
        generation: usize,
    ) -> anyhow::Result<Replica> {
        let log = std::fs::File::create(self.log_dir.join(format!("{id}.log")))?;
        let child = cmd
            .env(KEY_ENV, &self.key_hex)
            .env(DATABASE_URL_ENV, &self.args.database_url)
            .env(WORLD_URL_ENV, &self.args.world_url)
            .env("KILN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        Ok(Replica {
            slot,
            generation,
            child,
        })
    }
}

impl Replica {
    /// SIGKILL, then reap.
    pub async fn kill9(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM (the replica gives its leases back), then reap.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => self.child.start_kill()?,
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process died on its own (a crash the suite did not cause).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// The tail of a replica's log, for a failure report.
pub fn log_tail(dir: &Path, slot: usize, generation: usize) -> String {
    let text =
        std::fs::read_to_string(dir.join(format!("r{slot}.g{generation}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
