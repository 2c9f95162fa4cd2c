//! An in-process Kiln (SSH server + reconcile loop with the fake driver) on
//! a free loopback port, and a real SSH client (russh) that reads the screen
//! back through a vt100 parser, as a person would see it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::config::SshConfig;
use kiln::driver::{SandboxDriver, SessionAttach};
use kiln::fake_driver::FakeDriver;
use kiln::local::LocalSandboxes;
use kiln::reconcile::{ReconcileConfig, Reconciler};
use kiln::store::Store;
use russh::ChannelMsg;
use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use tokio_util::sync::CancellationToken;

use super::TestDb;

pub struct Server {
    pub addr: SocketAddr,
    pub store: Store,
    pub fake: Arc<FakeDriver>,
    pub db: TestDb,
    /// Local sandboxes (tmux), when started with [`Server::start_local`].
    pub local: Option<LocalSandboxes>,
    pub local_dir: Option<std::path::PathBuf>,
    /// Between Kiln and its database, when started with [`Server::start_behind_proxy`].
    pub proxy: Option<super::proxy::CutProxy>,
    /// Real databases on the test server and the keeper of the warm pools,
    /// when started with [`Server::start_pooled`] or
    /// [`Server::start_sandbox_pooled`].
    pub pool: Option<Pooled>,
    feed: Arc<kiln::store::notify::ChangeFeed>,
    shutdown: CancellationToken,
    /// The tasks that start sandboxes: the reconcile loop, and the pool
    /// keeper once [`Server::keep_pool`] runs it. Dropping the server waits
    /// for them (see [`Server::wait_for_sandbox_starters`]).
    sandbox_starters: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A server's warm pools: the keeper the test drives (fills, or runs in the
/// background as `kiln serve` does) and the local databases it keeps (the
/// pooled sandboxes are `Server::local`'s).
pub struct Pooled {
    pub keeper: Arc<kiln::reconcile::pool::PoolKeeper>,
    pub databases: kiln::local::LocalDatabases,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.wait_for_sandbox_starters();
        if self.pool.is_some() {
            drop_tenant_databases(&self.db.url, &self.db.admin_url);
        }
        if let Some(l) = &self.local {
            l.kill_all_servers();
        }
        if let Some(dir) = &self.local_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The secret key of every test server's store, so a `kiln` process run
/// against the same database (`KILN_SECRET_KEY`) is accepted.
pub const TEST_SECRET_KEY: &str =
    "6b696c6e2074657374206b6579202d2d206e6f7420666f722070726f64756374";

/// Quick rejections so auth tests do not crawl; the production default is 1 s.
/// Every test connects from 127.0.0.1, and a closed client's connection may
/// still be counted for a moment on a busy machine: the pre-sign-in cap is
/// out of the way unless a test sets it.
pub fn test_ssh_config() -> SshConfig {
    SshConfig {
        listen: "127.0.0.1:0".into(),
        rejection_delay: Duration::from_millis(50),
        max_preauth_per_address: 10_000,
        max_preauth_total: 10_000,
        ..SshConfig::default()
    }
}

impl Server {
    /// Waits (30 s at most) for the tasks that start sandboxes to stop.
    /// Without it, a start in flight when a test ended (a project created
    /// in its last step) finished after `kill_all_servers` and left a
    /// confined tmux server running after the test binary, in a directory
    /// already removed. Only a multi-threaded runtime can run them while
    /// `drop` blocks; on a current-thread one they cannot move on either,
    /// and are dropped with the runtime.
    fn wait_for_sandbox_starters(&self) {
        let tasks = std::mem::take(&mut *self.sandbox_starters.lock().unwrap());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if tasks.is_empty()
            || runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread
        {
            return;
        }
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                let all = futures::future::join_all(tasks);
                let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
            })
        });
    }

    pub async fn start() -> Server {
        Self::start_with(test_ssh_config()).await
    }

    pub async fn start_with(config: SshConfig) -> Server {
        Self::start_inner(config, false).await
    }

    /// Sandboxes are real tmux sessions running `sh` (databases stay fake),
    /// and attach works.
    pub async fn start_local() -> Server {
        Self::start_inner(test_ssh_config(), true).await
    }

    /// The local driver with `config` for the SSH side.
    pub async fn start_local_with(config: SshConfig) -> Server {
        Self::start_inner(config, true).await
    }

    /// Fake sandboxes whose terminal sessions are reached through `attach`
    /// (a test's own session driver: one that hangs, say).
    pub async fn start_with_sessions(attach: Arc<dyn SessionAttach>) -> Server {
        Self::start_full(test_ssh_config(), false, Some(attach), false).await
    }

    /// Kiln reaches its database through a proxy the test can cut
    /// (`server.proxy`), as if the database went away and came back.
    pub async fn start_behind_proxy() -> Server {
        Self::start_full(test_ssh_config(), false, None, true).await
    }

    /// Fake sandboxes, real databases (and roles) on the test server, and
    /// creates claiming from a warm pool of `target` databases. The keeper
    /// does not run until the test says so ([`Server::fill_pool`],
    /// [`Server::keep_pool`]).
    pub async fn start_pooled(target: u32) -> Server {
        let targets = kiln::model::pool::PoolTargets {
            databases: target,
            sandboxes: 0,
        };
        Self::start_opts_with(
            test_ssh_config(),
            false,
            None,
            false,
            false,
            false,
            Some(targets),
        )
        .await
    }

    /// Local sandboxes (tmux, confined as on this host), real databases on
    /// the test server (no pool of them), and creates claiming from a warm
    /// pool of `target` sandboxes; projects may clone from loopback (a git
    /// server the test runs). The keeper does not run until the test says
    /// so ([`Server::fill_pool`], [`Server::keep_pool`]).
    pub async fn start_sandbox_pooled(target: u32) -> Server {
        let targets = kiln::model::pool::PoolTargets {
            databases: 0,
            sandboxes: target,
        };
        Self::start_opts_with(
            test_ssh_config(),
            true,
            None,
            false,
            false,
            true,
            Some(targets),
        )
        .await
    }

    /// Passes of the pool keeper until every slot is filled.
    pub async fn fill_pool(&self) {
        let pool = self.pool.as_ref().expect("a pooled server");
        pool.keeper.fill().await.expect("fill the pool");
    }

    /// Runs the pool keeper in the background, as `kiln serve` does.
    pub fn keep_pool(&self) {
        let pool = self.pool.as_ref().expect("a pooled server");
        let (keeper, changes, stop) = (
            pool.keeper.clone(),
            self.feed.subscribe(),
            self.shutdown.clone(),
        );
        let task = tokio::spawn(async move {
            let _ = keeper.run(Some(changes), stop).await;
        });
        self.sandbox_starters.lock().unwrap().push(task);
    }

    async fn start_inner(config: SshConfig, local: bool) -> Server {
        Self::start_full(config, local, None, false).await
    }

    /// The local driver, with projects allowed to clone from loopback
    /// (`git.allow_private_hosts`), for a git server the test runs.
    pub async fn start_local_git() -> Server {
        Self::start_opts_with(test_ssh_config(), true, None, false, false, true, None).await
    }

    /// The local driver whose sessions run the stand-in `claude`
    /// (`support/claude`), with Kiln's agent hooks installed: the hook
    /// command is the real `kiln` binary, its reports go through each
    /// sandbox's socket to the console.
    pub async fn start_agents() -> Server {
        Self::start_agents_with(test_ssh_config()).await
    }

    /// [`Server::start_agents`] with `config` for the SSH side (and its
    /// idle policy for the loop).
    pub async fn start_agents_with(config: SshConfig) -> Server {
        Self::start_opts(config, true, None, true, false).await
    }

    /// The stand-in `claude` script, as the host sees it (bound read-only
    /// at the same path in every sandbox).
    pub fn stand_in_claude() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/claude")
    }

    async fn start_full(
        config: SshConfig,
        local: bool,
        sessions: Option<Arc<dyn SessionAttach>>,
        proxied: bool,
    ) -> Server {
        Self::start_opts(config, local, sessions, false, proxied).await
    }

    async fn start_opts(
        config: SshConfig,
        local: bool,
        sessions: Option<Arc<dyn SessionAttach>>,
        agents: bool,
        proxied: bool,
    ) -> Server {
        Self::start_opts_with(config, local, sessions, agents, proxied, false, None).await
    }

    async fn start_opts_with(
        config: SshConfig,
        local: bool,
        sessions: Option<Arc<dyn SessionAttach>>,
        agents: bool,
        proxied: bool,
        private_git: bool,
        pool_targets: Option<kiln::model::pool::PoolTargets>,
    ) -> Server {
        let db = TestDb::new().await;
        let key = kiln::store::SecretKey::from_hex(TEST_SECRET_KEY).expect("test key");
        let (proxy, store) = if proxied {
            // Migrated directly; used through the proxy.
            db.store_with_key(key.clone()).await;
            let (proxy, via) = super::proxy::CutProxy::to_database(&db.url).await;
            let store = Store::connect(&via, key, 20)
                .await
                .expect("connect via proxy");
            (Some(proxy), store)
        } else {
            (None, db.store_with_key(key).await)
        };
        let store = store
            .with_pool_claims(pool_targets.is_some())
            .with_sandbox_pool_claims(pool_targets.is_some_and(|t| t.sandboxes > 0));
        let pool_databases = match pool_targets {
            Some(_) => Some(
                kiln::local::LocalDatabases::connect(&db.admin_url)
                    .await
                    .expect("local databases"),
            ),
            None => None,
        };
        let feed = Arc::new(store.listen().await.expect("listen"));
        let listener = kiln::ssh::server::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let host_key = PrivateKey::random(
            &mut russh::keys::key::safe_rng(),
            russh::keys::Algorithm::Ed25519,
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        let fake = Arc::new(FakeDriver::new());
        let mut rc = ReconcileConfig {
            resync: Duration::from_millis(100),
            ..Default::default()
        };
        rc.schedule.poll_interval = Duration::from_millis(50);
        if agents {
            // A running sandbox is looked at every second, not every
            // minute: a program whose exit tmux missed (see
            // `local::observed`) is then reported within the tests' waits.
            rc.schedule.observe_interval = Duration::from_secs(1);
        }
        rc.idle = config.idle.clone();
        let local_dir = local.then(|| {
            std::path::PathBuf::from(format!(
                "/tmp/ks-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ))
        });
        let local = local_dir.as_ref().map(|d| {
            if agents {
                let claude = Self::stand_in_claude();
                let (tx, rx) = tokio::sync::mpsc::channel(1024);
                let intake = kiln::console::Console::new(store.clone(), None, None);
                tokio::spawn(intake.run_hook_intake(rx));
                LocalSandboxes::new(d, Some(claude.to_string_lossy().into_owned()))
                    .expect("local sandboxes")
                    .with_read_only_dir(claude.parent().unwrap())
                    .with_agent_hooks(tx, env!("CARGO_BIN_EXE_kiln"))
            } else {
                LocalSandboxes::new(d, Some("sh".into())).expect("local sandboxes")
            }
        });
        // Output seen while observing counts as activity, as `kiln serve` wires it.
        let local = local.map(|l| {
            let recorder = kiln::store::activity::ActivityRecorder::new();
            tokio::spawn(recorder.clone().run(store.clone(), shutdown.clone()));
            l.with_activity(recorder)
        });
        let pool = pool_targets
            .zip(pool_databases)
            .map(|(targets, databases)| {
                let mut keeper = kiln::reconcile::pool::PoolKeeper::new(
                    store.clone(),
                    Arc::new(databases.clone()),
                    targets.databases,
                    "test-replica",
                )
                .with_timing(Duration::from_secs(30), Duration::from_millis(100));
                if let Some(l) = &local {
                    keeper = keeper.with_sandboxes(Arc::new(l.clone()), targets.sandboxes);
                }
                Pooled {
                    keeper: Arc::new(keeper),
                    databases,
                }
            });
        let sandboxes: Arc<dyn SandboxDriver> = match &local {
            Some(l) => Arc::new(l.clone()),
            None => fake.clone(),
        };
        let attach: Option<Arc<dyn SessionAttach>> = local
            .as_ref()
            .map(|l| Arc::new(l.clone()) as Arc<dyn SessionAttach>)
            .or(sessions);
        let databases: Arc<dyn kiln::driver::DatabaseDriver> = match &pool {
            Some(p) => Arc::new(p.databases.clone()),
            None => fake.clone(),
        };
        let reconciler = Reconciler::new(store.clone(), sandboxes, databases, rc, "test-replica");
        let changes = feed.subscribe();
        let stop = shutdown.clone();
        let reconcile = tokio::spawn(async move {
            let _ = reconciler.run(Some(changes), stop).await;
        });
        // Agent servers deliver users' webhooks too, to the tests' own
        // HTTP servers on loopback (the operator's switch on), retrying fast.
        let webhook_hosts = if agents {
            let hosts = kiln::k8s::kubeconfig::ApiServerPolicy::ALLOW_PRIVATE;
            let delivery = kiln::console::webhooks::WebhookDelivery {
                hosts,
                retry_base: Duration::from_millis(200),
                poll: Duration::from_millis(100),
                timeout: Duration::from_secs(5),
                concurrency: 4,
            };
            tokio::spawn(
                kiln::console::Console::new(store.clone(), None, None).run_webhook_delivery(
                    delivery,
                    Some(feed.subscribe()),
                    shutdown.clone(),
                ),
            );
            hosts
        } else {
            kiln::k8s::kubeconfig::ApiServerPolicy::default()
        };
        let (s, f, stop) = (store.clone(), feed.clone(), shutdown.clone());
        let drivers = kiln::ssh::server::ConsoleDrivers {
            attach,
            webhook_hosts,
            repos: kiln::console::RepoPolicy {
                allow_private_hosts: private_git,
            },
            ..Default::default()
        };
        tokio::spawn(async move {
            kiln::ssh::server::run(
                s,
                f,
                drivers,
                config,
                host_key,
                listener,
                String::new(),
                stop,
            )
            .await
            .expect("ssh server");
        });
        Server {
            addr,
            store,
            fake,
            db,
            local,
            local_dir,
            proxy,
            pool,
            feed,
            shutdown,
            sandbox_starters: std::sync::Mutex::new(vec![reconcile]),
        }
    }

    /// Another SSH front end on this server's database, as a second replica
    /// would run it; it stops with this server.
    pub async fn another_ssh_server(&self, config: SshConfig) -> SocketAddr {
        let feed = Arc::new(self.store.listen().await.expect("listen"));
        let listener = kiln::ssh::server::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let host_key = PrivateKey::random(
            &mut russh::keys::key::safe_rng(),
            russh::keys::Algorithm::Ed25519,
        )
        .unwrap();
        let (store, stop) = (self.store.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            kiln::ssh::server::run(
                store,
                feed,
                None::<Arc<dyn SessionAttach>>,
                config,
                host_key,
                listener,
                String::new(),
                stop,
            )
            .await
            .expect("ssh server");
        });
        addr
    }

    pub async fn user(&self, name: &str, password: &str) -> kiln::store::users::User {
        self.store
            .create_user(name, Some(password), false)
            .await
            .unwrap()
    }

    /// Creates `owner`'s project `name` and waits until its sandbox runs;
    /// returns the sandbox's resource name (its tmux session).
    pub async fn running_project(&self, owner: uuid::Uuid, name: &str) -> String {
        self.store
            .create_project(owner, name, "", "test")
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let p = self.store.find_project(owner, name).await.unwrap();
            let sb = p
                .resources
                .iter()
                .find(|r| r.kind == kiln::store::resources::ResourceKind::Sandbox)
                .unwrap();
            if sb.status == kiln::model::ResourceStatus::Running {
                return sb.resource_name.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sandbox never ran: {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub struct Handler;

impl client::Handler for Handler {
    type Error = anyhow::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

pub struct Client {
    pub handle: client::Handle<Handler>,
}

pub async fn connect(addr: SocketAddr) -> Client {
    let config = Arc::new(client::Config::default());
    let handle = client::connect(config, addr, Handler)
        .await
        .expect("connect");
    Client { handle }
}

#[derive(Debug, Default)]
pub struct ExecResult {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<u32>,
}

impl Client {
    pub async fn password(&mut self, user: &str, password: &str) -> bool {
        self.handle
            .authenticate_password(user, password)
            .await
            .expect("auth round trip")
            .success()
    }

    pub async fn key(&mut self, user: &str, key: &PrivateKey) -> bool {
        let hash = self
            .handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        self.handle
            .authenticate_publickey(
                user,
                PrivateKeyWithHashAlg::new(Arc::new(key.clone()), hash),
            )
            .await
            .expect("auth round trip")
            .success()
    }

    /// Opens the dashboard in a `cols`×`rows` terminal.
    pub async fn shell(&self, cols: u16, rows: u16) -> Screen {
        self.shell_with_env(cols, rows, &[]).await
    }

    pub async fn shell_with_env(&self, cols: u16, rows: u16, env: &[(&str, &str)]) -> Screen {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .expect("open session");
        for (k, v) in env {
            channel.set_env(true, *k, *v).await.unwrap();
        }
        channel
            .request_pty(true, "xterm-256color", cols as u32, rows as u32, 0, 0, &[])
            .await
            .unwrap();
        channel.request_shell(true).await.unwrap();
        Screen::follow(channel, cols, rows)
    }
}

impl Screen {
    /// Reads the channel into a vt100 screen in the background.
    fn follow(channel: russh::Channel<client::Msg>, cols: u16, rows: u16) -> Screen {
        let (mut read, write) = channel.split();
        let parser = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let state = Arc::new(Mutex::new(ScreenState::default()));
        let (p, st) = (parser.clone(), state.clone());
        tokio::spawn(async move {
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        p.lock().unwrap().process(&data);
                        let mut st = st.lock().unwrap();
                        st.bytes += data.len();
                        st.bells += data.iter().filter(|&&b| b == 0x07).count();
                    }
                    ChannelMsg::ExtendedData { data, .. } => {
                        st.lock()
                            .unwrap()
                            .stderr
                            .push_str(&String::from_utf8_lossy(&data));
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        st.lock().unwrap().exit = Some(exit_status)
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            st.lock().unwrap().closed = true;
        });
        Screen {
            write,
            parser,
            state,
        }
    }
}

impl Client {
    /// Runs an exec command in a `cols`×`rows` terminal (like `ssh -t`).
    pub async fn exec_tty(&self, command: &str, cols: u16, rows: u16) -> Screen {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .expect("open session");
        channel
            .request_pty(true, "xterm-256color", cols as u32, rows as u32, 0, 0, &[])
            .await
            .unwrap();
        channel.exec(true, command).await.unwrap();
        Screen::follow(channel, cols, rows)
    }

    /// Runs an exec command, sending `stdin` then EOF.
    pub async fn exec(&self, command: &str, stdin: &[u8]) -> ExecResult {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .expect("open session");
        channel.exec(true, command).await.unwrap();
        if !stdin.is_empty() {
            channel.data_bytes(stdin.to_vec()).await.unwrap();
        }
        channel.eof().await.unwrap();
        let mut out = ExecResult::default();
        let collect = async {
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        out.stdout.push_str(&String::from_utf8_lossy(&data))
                    }
                    ChannelMsg::ExtendedData { data, .. } => {
                        out.stderr.push_str(&String::from_utf8_lossy(&data))
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.code = Some(exit_status),
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), collect)
            .await
            .expect("exec finished");
        out
    }
}

#[derive(Debug, Default)]
pub struct ScreenState {
    pub exit: Option<u32>,
    pub closed: bool,
    pub bytes: usize,
    /// BEL bytes received (the dashboard rings the bell with a bare BEL).
    pub bells: usize,
    pub stderr: String,
}

pub struct Screen {
    write: russh::ChannelWriteHalf<client::Msg>,
    pub parser: Arc<Mutex<vt100::Parser>>,
    pub state: Arc<Mutex<ScreenState>>,
}

impl Screen {
    pub async fn send(&self, bytes: &[u8]) {
        self.write
            .data_bytes(bytes.to_vec())
            .await
            .expect("send keys");
    }

    /// What a person sees: the screen's text, row by row.
    pub fn text(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    pub fn alternate_screen(&self) -> bool {
        self.parser.lock().unwrap().screen().alternate_screen()
    }

    pub async fn resize(&self, cols: u16, rows: u16) {
        self.parser
            .lock()
            .unwrap()
            .screen_mut()
            .set_size(rows, cols);
        self.write
            .window_change(cols as u32, rows as u32, 0, 0)
            .await
            .unwrap();
    }

    /// Waits (bounded) until the screen satisfies `pred`; panics showing the screen.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_until_within(what, Duration::from_secs(15), pred)
            .await
    }

    /// [`Screen::wait_until`] with its own bound, for what takes longer by
    /// design (a pool's acquire timeout, a retry's backoff).
    pub async fn wait_until_within(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let text = self.text();
            if pred(&text) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_for(&self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?} on screen"), |t| t.contains(needle))
            .await
    }

    pub async fn wait_closed(&self) -> Option<u32> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            {
                let st = self.state.lock().unwrap();
                if st.closed {
                    return st.exit;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the session did not close; screen:\n{}", self.text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The row of the screen that contains `needle`.
pub fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(needle))
}

/// Drops every database and role a pooled server made on the shared test
/// server (projects' and pooled ones), named in its store.
pub fn drop_tenant_databases(url: &str, admin_url: &str) {
    use sqlx::Connection;
    let (url, admin_url) = (url.to_string(), admin_url.to_string());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // The loop and the keeper stop at once; give a call in flight a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let Ok(mut kiln) = sqlx::PgConnection::connect(&url).await else {
                return;
            };
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT resource_name FROM databases
                 UNION SELECT pooled_from FROM databases WHERE pooled_from IS NOT NULL
                 UNION SELECT resource_name FROM pool_databases",
            )
            .fetch_all(&mut kiln)
            .await
            .unwrap_or_default();
            let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await else {
                return;
            };
            for name in names {
                for sql in [
                    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    format!("DROP ROLE IF EXISTS \"{name}\""),
                ] {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut admin)
                        .await;
                }
            }
        });
    })
    .join();
}
