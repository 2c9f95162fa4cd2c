//! The SSH server: its configuration and start-up, and the state each
//! connection shares. Signing in is in `sign_in`; routing each channel to
//! the dashboard (a `shell` with a PTY) or to an exec command is in `channels`.

mod accept;
mod channels;
pub mod restart;
mod sign_in;
mod verify;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use russh::keys::PrivateKey;
use russh::{ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ratelimit::{Budget, PreauthCaps};
use crate::config::SshConfig;
use crate::console::Console;
use crate::driver::SessionAttach;
use crate::ssh::project_lists::ProjectLists;
use crate::store::Store;
use crate::store::activity::ActivityRecorder;
use crate::store::notify::ChangeFeed;
use crate::store::users::{User, hash_password};
use channels::Chan;

pub use sign_in::SIGNUP_MIN_PASSWORD;

struct Shared {
    /// Sign-in only; every user action goes through `console`.
    store: Store,
    console: Console,
    /// Each signed-in user's project list, shared by their dashboards.
    lists: ProjectLists,
    config: SshConfig,
    /// How many failed password sign-ins each bucket allows per window.
    budget: Budget,
    /// argon2 takes tens of megabytes and a core for a while: at most one
    /// sign-in per core looks up and verifies at once, the rest wait their
    /// turn...
    verifying: Semaphore,
    /// ...and the checks themselves run on one thread per core, so their
    /// memory stays that of one check per core.
    verifier: verify::Verifier,
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
    /// Where users' webhooks may point (`agents.webhook_allow_private_hosts`).
    pub webhook_hosts: crate::k8s::kubeconfig::ApiServerPolicy,
    /// Which repositories projects may start from (`git.allow_private_hosts`).
    pub repos: crate::console::RepoPolicy,
    /// The built-in templates (`None`: those compiled in).
    pub templates: Option<crate::console::Catalog>,
}

impl From<Option<Arc<dyn SessionAttach>>> for ConsoleDrivers {
    fn from(attach: Option<Arc<dyn SessionAttach>>) -> Self {
        ConsoleDrivers {
            attach,
            ..ConsoleDrivers::default()
        }
    }
}

/// Password checks running at once, at most (fewer with fewer cores).
const MAX_CONCURRENT_CHECKS: usize = 4;

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
    let budget = Budget {
        per_address: config.max_failures_per_address,
        per_user: config.max_failures_per_user,
        throttle_base: config.throttle_base,
    };
    // One per core, but few even on a big machine: each check holds ~19 MB.
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_CONCURRENT_CHECKS);
    let ConsoleDrivers {
        attach,
        logs,
        api_servers,
        webhook_hosts,
        repos,
        templates,
    } = drivers.into();
    let activity = ActivityRecorder::new();
    tokio::spawn(activity.clone().run(store.clone(), shutdown.clone()));
    let shared = Arc::new(Shared {
        activity,
        console: Console::new(store.clone(), attach, logs)
            .with_api_servers(api_servers)
            .with_webhook_hosts(webhook_hosts)
            .with_idle(config.idle.clone())
            .with_repos(repos)
            .with_templates(templates.unwrap_or_else(crate::console::builtin_catalog))
            .with_feed(feed.clone()),
        store,
        lists: ProjectLists::new(feed),
        decoy_hash: hash_password("kiln decoy password").await?,
        config,
        budget,
        verifying: Semaphore::new(cores),
        verifier: verify::Verifier::start(cores)?,
        notice,
    });
    let waiting = accept::Waiting::new(PreauthCaps {
        per_address: shared.config.max_preauth_per_address,
        total: shared.config.max_preauth_total,
    });
    accept::accept_loop(
        &listener,
        Arc::new(russh_config),
        waiting,
        |peer| Conn::new(shared.clone(), peer),
        shutdown,
    )
    .await;
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

impl Conn {
    fn new(shared: Arc<Shared>, peer: SocketAddr) -> Conn {
        Conn {
            shared,
            peer: Some(peer.ip()),
            user: None,
            limited_for: None,
            waiting: None,
            channels: HashMap::new(),
            open: restart::OpenChannels::default(),
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
    /// Until sign-in: its place among the connections waiting to sign in.
    waiting: Option<accept::WaitingForSignIn>,
    channels: HashMap<ChannelId, Chan>,
    /// The interactive channels, told when this replica shuts down.
    open: restart::OpenChannels,
}

/// Binds the listener (separate so tests can take a free port first).
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for SSH on {addr}"))
}
