//! The SSH server: its configuration and start-up, and the state each
//! connection shares. Signing in is in `sign_in`; routing each channel to
//! the dashboard (a `shell` with a PTY) or to an exec command is in `channels`.

mod channels;
mod sign_in;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use russh::keys::PrivateKey;
use russh::server::Server as _;
use russh::{ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::ratelimit::RateLimiter;
use crate::config::SshConfig;
use crate::console::Console;
use crate::driver::SessionAttach;
use crate::store::Store;
use crate::store::activity::ActivityRecorder;
use crate::store::notify::ChangeFeed;
use crate::store::users::{User, hash_password};
use channels::Chan;

pub use sign_in::SIGNUP_MIN_PASSWORD;

struct Limits {
    by_address: RateLimiter<IpAddr>,
    by_user: RateLimiter<String>,
}

struct Shared {
    /// Sign-in only; every user action goes through `console`.
    store: Store,
    console: Console,
    feed: Arc<ChangeFeed>,
    config: SshConfig,
    limits: Mutex<Limits>,
    /// Verified against when the user does not exist, so an unknown name
    /// costs the same time as a wrong password.
    decoy_hash: String,
    notice: String,
    /// Sessions note their terminal activity here; a task writes it.
    activity: ActivityRecorder,
}

/// What the console reaches the back ends through: the two live paths that
/// bypass the store (DESIGN §1), sessions and logs.
#[derive(Clone, Default)]
pub struct ConsoleDrivers {
    pub attach: Option<Arc<dyn SessionAttach>>,
    pub logs: Option<Arc<dyn crate::driver::SandboxLogs>>,
    /// Where tenants' kubeconfigs may point (`kubernetes.allow_private_api_servers`).
    pub api_servers: crate::k8s::kubeconfig::ApiServerPolicy,
}

impl From<Option<Arc<dyn SessionAttach>>> for ConsoleDrivers {
    fn from(attach: Option<Arc<dyn SessionAttach>>) -> Self {
        ConsoleDrivers {
            attach,
            ..ConsoleDrivers::default()
        }
    }
}

/// Runs the SSH server on `listener` until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: Store,
    feed: Arc<ChangeFeed>,
    drivers: impl Into<ConsoleDrivers>,
    config: SshConfig,
    host_key: PrivateKey,
    listener: TcpListener,
    notice: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let russh_config = russh::server::Config {
        keys: vec![host_key],
        methods: all_methods(),
        auth_rejection_time: config.rejection_delay,
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        inactivity_timeout: None,
        keepalive_interval: Some(std::time::Duration::from_secs(30)),
        nodelay: true,
        ..Default::default()
    };
    let limits = Limits {
        by_address: RateLimiter::new(config.max_failures_per_address, config.failure_window),
        by_user: RateLimiter::new(config.max_failures_per_user, config.failure_window),
    };
    let ConsoleDrivers {
        attach,
        logs,
        api_servers,
    } = drivers.into();
    let activity = ActivityRecorder::new();
    tokio::spawn(activity.clone().run(store.clone(), shutdown.clone()));
    let shared = Arc::new(Shared {
        activity,
        console: Console::new(store.clone(), attach, logs).with_api_servers(api_servers),
        store,
        feed,
        decoy_hash: hash_password("kiln decoy password").await?,
        config,
        limits: Mutex::new(limits),
        notice,
    });
    let mut server = SshServer { shared };
    let running = server.run_on_socket(Arc::new(russh_config), &listener);
    let handle = running.handle();
    tokio::select! {
        r = running => r?,
        _ = shutdown.cancelled() => handle.shutdown("Kiln is shutting down".into()),
    }
    Ok(())
}

fn all_methods() -> MethodSet {
    MethodSet::from(
        &[
            MethodKind::PublicKey,
            MethodKind::KeyboardInteractive,
            MethodKind::Password,
        ][..],
    )
}

struct SshServer {
    shared: Arc<Shared>,
}

impl russh::server::Server for SshServer {
    type Handler = Conn;
    fn new_client(&mut self, peer: Option<SocketAddr>) -> Conn {
        Conn {
            shared: self.shared.clone(),
            peer: peer.map(|p| p.ip()),
            user: None,
            limited_for: None,
            channels: HashMap::new(),
        }
    }
}

/// One connection: who signed in, and its channels.
pub struct Conn {
    shared: Arc<Shared>,
    peer: Option<IpAddr>,
    user: Option<User>,
    /// Set when the last attempt was refused by the rate limiter.
    limited_for: Option<std::time::Duration>,
    channels: HashMap<ChannelId, Chan>,
}

/// Binds the listener (separate so tests can take a free port first).
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for SSH on {addr}"))
}
