//! `kiln bench console`: (a) how long a status change takes from its commit
//! to being drawn on an open dashboard; (b) what idle dashboard sessions cost
//! the server (RSS, CPU). The server runs as a child `kiln serve` process so
//! its memory and CPU are measured alone.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use russh::ChannelMsg;
use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{BenchUser, Scratch, quantile};

pub async fn console(admin_url: &str, changes: usize, sessions: &[usize]) -> anyhow::Result<()> {
    let scratch = Scratch::create(admin_url).await?;
    let result = run(&scratch.url, changes, sessions).await;
    scratch.drop_database().await?;
    result
}

async fn run(url: &str, changes: usize, sessions: &[usize]) -> anyhow::Result<()> {
    let BenchUser {
        store,
        key_hex,
        id: user_id,
        key,
    } = BenchUser::create(url).await?;
    // A project without resources: nothing for the server's loop to do, so
    // every status change below is the benchmark's own.
    let project: Uuid = sqlx::query_scalar(
        "INSERT INTO projects (user_id, name, slug, status) VALUES ($1, 'bench', 'bench', 'RUNNING') RETURNING id",
    )
    .bind(user_id)
    .fetch_one(store.pool())
    .await?;

    let server = ChildServer::start(url, &key_hex).await?;

    // (a) status propagation
    let screen = Session::open(server.addr, &key).await?;
    screen
        .wait(|t| t.contains("RUNNING"), Duration::from_secs(20))
        .await?;
    let mut samples = Vec::with_capacity(changes);
    let statuses = ["STOPPED", "RUNNING"];
    for i in 0..changes {
        let status = statuses[i % 2];
        let started = Instant::now();
        sqlx::query("UPDATE projects SET status = $2 WHERE id = $1")
            .bind(project)
            .bind(status)
            .execute(store.pool())
            .await?;
        screen
            .wait(
                |t| t.lines().any(|l| l.contains("bench") && l.contains(status)),
                Duration::from_secs(10),
            )
            .await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    println!("status propagation: commit → drawn on an open dashboard, {changes} changes");
    println!(
        "  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(quantile(&samples, 0.5)),
        ms(quantile(&samples, 0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO))
    );
    drop(screen);

    // (b) idle sessions
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_rss = server.rss_kib()?;
    println!(
        "idle dashboard sessions (server RSS before any: {:.1} MiB)",
        base_rss as f64 / 1024.0
    );
    let mut open: Vec<Session> = Vec::new();
    for &n in sessions {
        while open.len() < n {
            open.push(Session::open(server.addr, &key).await?);
        }
        for s in &open {
            s.wait(|t| t.contains("bench"), Duration::from_secs(60))
                .await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = server.rss_kib()?;
        let cpu_before = server.cpu_ticks()?;
        let window = Duration::from_secs(5);
        tokio::time::sleep(window).await;
        let cpu =
            (server.cpu_ticks()? - cpu_before) as f64 / ticks_per_second() / window.as_secs_f64();
        println!(
            "  {n:>4} sessions: RSS {:.1} MiB ({:.0} KiB per session over the baseline), idle CPU {:.2}%",
            rss as f64 / 1024.0,
            (rss.saturating_sub(base_rss)) as f64 / n as f64,
            cpu * 100.0
        );
    }
    drop(open);
    server.stop().await;
    store.pool().close().await;
    Ok(())
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// `kiln serve` in a child process against the scratch database.
pub(super) struct ChildServer {
    child: tokio::process::Child,
    pub(super) addr: SocketAddr,
    pub(super) data_dir: std::path::PathBuf,
}

impl ChildServer {
    pub(super) async fn start(url: &str, key_hex: &str) -> anyhow::Result<ChildServer> {
        Self::start_with_config(url, key_hex, "").await
    }

    /// Starts with `config` (TOML) as the server's `kiln.toml`.
    pub(super) async fn start_with_config(
        url: &str,
        key_hex: &str,
        config: &str,
    ) -> anyhow::Result<ChildServer> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let data_dir =
            std::env::temp_dir().join(format!("kb-{}", &Uuid::new_v4().simple().to_string()[..8]));
        std::fs::create_dir_all(&data_dir)?;
        // Benches that do not measure the pools keep them off: they would
        // leave databases on the server after the bench's scratch one is
        // dropped, and sandboxes running after the bench.
        let config = if config.contains("[pool]") {
            config.to_string()
        } else {
            format!("{config}\n[pool]\ndatabases = 0\nsandboxes = 0\n")
        };
        std::fs::write(data_dir.join("kiln.toml"), config)?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--ssh-listen")
            .arg(addr.to_string())
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("KILN_SECRET_KEY", key_hex)
            .env("KILN_LOG", "error")
            // Named sessions start $SHELL: the same shell as the anchor's.
            .env("SHELL", "/bin/sh")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server under test")?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the server under test did not start listening on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(ChildServer {
            child,
            addr,
            data_dir,
        })
    }

    pub(super) fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server under test has exited")
    }

    pub(super) fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS")
    }

    pub(super) fn cpu_ticks(&self) -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?))?;
        // Fields after the command name (which may contain spaces) start after ')'.
        let rest = stat.rsplit_once(')').context("malformed stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11).context("utime")?.parse()?;
        let stime: u64 = fields.get(12).context("stime")?.parse()?;
        Ok(utime + stime)
    }

    pub(super) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // Our own child; if it is already gone there is nothing to stop.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        // Sandboxes (pooled ones too) outlive the server by design; a bench
        // must not leave any behind in its scratch data directory.
        let data_dir = self.data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(sandboxes) = crate::local::LocalSandboxes::new(&data_dir, Some("sh".into())) {
                sandboxes.kill_all_servers();
            }
        })
        .await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub(super) struct BenchClient;

impl client::Handler for BenchClient {
    type Error = anyhow::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// One dashboard as a client sees it.
pub(super) struct Session {
    _handle: client::Handle<BenchClient>,
    parser: Arc<Mutex<vt100::Parser>>,
    drawn: Arc<Notify>,
}

impl Session {
    async fn open(addr: SocketAddr, key: &Arc<PrivateKey>) -> anyhow::Result<Session> {
        Self::open_as(addr, key, "bench").await
    }

    /// A dashboard signed in as `user` with `key`.
    pub(super) async fn open_as(
        addr: SocketAddr,
        key: &Arc<PrivateKey>,
        user: &str,
    ) -> anyhow::Result<Session> {
        let mut handle =
            client::connect(Arc::new(client::Config::default()), addr, BenchClient).await?;
        let auth = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), None))
            .await?;
        if !auth.success() {
            bail!("key authentication failed");
        }
        let channel = handle.channel_open_session().await?;
        channel
            .request_pty(true, "xterm-256color", 100, 30, 0, 0, &[])
            .await?;
        channel.request_shell(true).await?;
        let parser = Arc::new(Mutex::new(vt100::Parser::new(30, 100, 0)));
        let drawn = Arc::new(Notify::new());
        let (p, d) = (parser.clone(), drawn.clone());
        let (mut read, _write) = channel.split();
        tokio::spawn(async move {
            let _keep = _write;
            while let Some(msg) = read.wait().await {
                if let ChannelMsg::Data { data } = msg {
                    p.lock().expect("parser").process(&data);
                    d.notify_waiters();
                }
            }
        });
        Ok(Session {
            _handle: handle,
            parser,
            drawn,
        })
    }

    /// What the screen shows now.
    pub(super) fn text(&self) -> String {
        self.parser.lock().expect("parser").screen().contents()
    }

    pub(super) async fn wait(
        &self,
        pred: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.drawn.notified();
            if pred(&self.parser.lock().expect("parser").screen().contents()) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for the dashboard to draw");
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
        }
    }
}
