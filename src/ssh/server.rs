//! The SSH server: authentication, and one handler per connection that
//! routes each channel to the dashboard (a `shell` with a PTY) or to an exec
//! command.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, Response, Server as _, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::attach::{self as direct, DirectAttach};
use super::ratelimit::RateLimiter;
use super::session::{self, DashboardParams};
use crate::config::{Signup, SshConfig};
use crate::console::{Console, Front};
use crate::driver::SessionAttach;
use crate::store::Store;
use crate::store::activity::ActivityRecorder;
use crate::store::notify::ChangeFeed;
use crate::store::users::{User, hash_password, normalize_username, verify_password};

/// Passwords shorter than this cannot create an account under open sign-up.
pub const SIGNUP_MIN_PASSWORD: usize = 12;
/// Most stdin an exec command may send (`keys add`).
const MAX_EXEC_STDIN: usize = 1024 * 1024;

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
}

impl From<Option<Arc<dyn SessionAttach>>> for ConsoleDrivers {
    fn from(attach: Option<Arc<dyn SessionAttach>>) -> Self {
        ConsoleDrivers { attach, logs: None }
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
    let ConsoleDrivers { attach, logs } = drivers.into();
    let activity = ActivityRecorder::new();
    tokio::spawn(activity.clone().run(store.clone(), shutdown.clone()));
    let shared = Arc::new(Shared {
        activity,
        console: Console::new(store.clone(), attach, logs),
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

/// Rejects but keeps every method on offer, so a wrong password can be
/// retried on the same connection.
fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(all_methods()),
        partial_success: false,
    }
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

enum Chan {
    /// Opened; waiting for pty/env/shell/exec requests.
    Fresh {
        pty: Option<(u16, u16)>,
        /// The terminal type the pty request named, when it is a plain
        /// name (see [`crate::model::terminal`]).
        term: Option<String>,
        no_color: bool,
    },
    Dashboard(session::DashboardInput),
    /// `attach NAME`: a raw pass-through to a sandbox session.
    Attached(DirectAttach),
    /// An exec command that reads stdin: collecting it until EOF.
    CollectingStdin {
        command: String,
        stdin: Vec<u8>,
    },
    Exec,
}

pub struct Conn {
    shared: Arc<Shared>,
    peer: Option<IpAddr>,
    user: Option<User>,
    /// Set when the last attempt was refused by the rate limiter.
    limited_for: Option<std::time::Duration>,
    channels: HashMap<ChannelId, Chan>,
}

impl Conn {
    fn rate_limited(&self, username: &str) -> Option<std::time::Duration> {
        let now = Instant::now();
        let mut limits = self.shared.limits.lock().expect("limits lock");
        let by_addr = self
            .peer
            .and_then(|ip| limits.by_address.check(&ip, now).err());
        let by_user = limits.by_user.check(&username.to_string(), now).err();
        by_addr.max(by_user)
    }

    fn record(&self, username: &str, ok: bool) {
        let now = Instant::now();
        let mut limits = self.shared.limits.lock().expect("limits lock");
        match (ok, self.peer) {
            (true, ip) => {
                if let Some(ip) = ip {
                    limits.by_address.record_success(&ip);
                }
                limits.by_user.record_success(&username.to_string());
            }
            (false, ip) => {
                if let Some(ip) = ip {
                    limits.by_address.record_failure(ip, now);
                }
                limits.by_user.record_failure(username.to_string(), now);
            }
        }
    }

    /// The password check shared by `password` and `keyboard-interactive`.
    /// Unknown, disabled and wrong all take the same path and the same time.
    async fn check_password(&mut self, username: &str, password: &str) -> Auth {
        let key = username.to_ascii_lowercase();
        if let Some(wait) = self.rate_limited(&key) {
            self.limited_for = Some(wait);
            return reject();
        }
        self.limited_for = None;
        let store = &self.shared.store;
        let found = store.password_hash(username).await.unwrap_or_else(|e| {
            tracing::warn!("password lookup failed: {e}");
            None
        });
        let (user, ok) = match found {
            Some((user, hash)) => {
                let ok = verify_password(password, &hash).await;
                (Some(user), ok)
            }
            None => {
                verify_password(password, &self.shared.decoy_hash).await;
                (None, false)
            }
        };
        if ok {
            self.record(&key, true);
            self.user = user;
            return Auth::Accept;
        }
        if user.is_none()
            && self.shared.config.signup == Signup::Open
            && password.chars().count() >= SIGNUP_MIN_PASSWORD
            && normalize_username(username).is_ok()
            && let Ok(None) = store.find_user(username).await
        {
            match store.create_user(username, Some(password), false).await {
                Ok(u) => {
                    tracing::info!(user = %u.username, "account created by sign-up");
                    self.record(&key, true);
                    self.user = Some(u);
                    return Auth::Accept;
                }
                Err(e) => tracing::warn!("sign-up failed: {e}"),
            }
        }
        self.record(&key, false);
        reject()
    }
}

impl russh::server::Handler for Conn {
    type Error = anyhow::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(match self.shared.config.signup {
            Signup::Open => Some(format!(
                "Welcome to Kiln. New here? Log in with an unused username and a password of at least \
                 {SIGNUP_MIN_PASSWORD} characters to create your account.\r\n"
            )),
            Signup::Closed => None,
        })
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.check_password(user, password).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(mut response) = response else {
            let instructions = match self.rate_limited(&user.to_ascii_lowercase()) {
                Some(wait) => format!(
                    "Too many failed logins; try again in {} s.",
                    wait.as_secs().max(1)
                ),
                None => String::new(),
            };
            return Ok(Auth::Partial {
                name: "Kiln".into(),
                instructions: instructions.into(),
                prompts: vec![("Password: ".into(), false)].into(),
            });
        };
        let answer = response.next().unwrap_or_default();
        let password = String::from_utf8_lossy(&answer).into_owned();
        Ok(self.check_password(user, &password).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Unknown keys are declined before the client signs; not counted as failures.
        let known = self
            .shared
            .store
            .user_by_key(offer.public_key)
            .await
            .ok()
            .flatten()
            .is_some_and(|u| u.username.eq_ignore_ascii_case(user));
        Ok(if known { Auth::Accept } else { reject() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let key_name = user.to_ascii_lowercase();
        if let Some(wait) = self.rate_limited(&key_name) {
            self.limited_for = Some(wait);
            return Ok(reject());
        }
        match self.shared.store.user_by_key(key.public_key).await {
            Ok(Some(u)) if u.username.eq_ignore_ascii_case(user) => {
                self.record(&key_name, true);
                self.user = Some(u);
                Ok(Auth::Accept)
            }
            _ => {
                self.record(&key_name, false);
                Ok(reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(
            channel.id(),
            Chan::Fresh {
                pty: None,
                term: None,
                no_color: false,
            },
        );
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Chan::Fresh { pty, term: t, .. }) = self.channels.get_mut(&channel) {
            *pty = Some((clamp(cols), clamp(rows)));
            *t = crate::model::terminal::is_plain_name(term).then(|| term.to_string());
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(Chan::Fresh { no_color, .. }) if name == "NO_COLOR" => {
                *no_color = true;
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(user), Some(Chan::Fresh { pty, no_color, .. })) =
            (self.user.clone(), self.channels.remove(&channel))
        else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let handle = session.handle();
        let Some((cols, rows)) = pty else {
            self.channels.insert(channel, Chan::Exec);
            tokio::spawn(async move {
                let msg = "Kiln's dashboard needs a terminal: use `ssh -t`, or run a command such as \
                           `ssh -p 2222 you@host projects` (try `help`).\r\n";
                let _ = handle
                    .extended_data(channel, 1, msg.as_bytes().to_vec())
                    .await;
                let _ = handle.exit_status_request(channel, 1).await;
                let _ = handle.eof(channel).await;
                let _ = handle.close(channel).await;
            });
            return Ok(());
        };
        let tx = session::spawn(DashboardParams {
            console: self.shared.console.as_user(user, Front::Dashboard),
            changes: self.shared.feed.subscribe(),
            handle,
            channel,
            cols,
            rows,
            no_color,
            notice: self.shared.notice.clone(),
            prefix: self.shared.config.prefix_key,
            activity: self.shared.activity.clone(),
        });
        self.channels.insert(channel, Chan::Dashboard(tx));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.user.is_none() || !matches!(self.channels.get(&channel), Some(Chan::Fresh { .. })) {
            session.channel_failure(channel)?;
            return Ok(());
        }
        session.channel_success(channel)?;
        let command = String::from_utf8_lossy(data).into_owned();
        if let Some(parsed) = direct::parse(&command) {
            let Some(Chan::Fresh { pty, term, .. }) = self.channels.remove(&channel) else {
                return Ok(());
            };
            self.channels.insert(channel, Chan::Exec);
            let handle = session.handle();
            let user = self.user.clone().expect("authenticated");
            let started = match (parsed, pty) {
                (Err(usage), _) => Err((usage, 2)),
                (Ok(_), None) => Err((
                    "attach needs a terminal: run it as `ssh -t … attach NAME`".to_string(),
                    2,
                )),
                (Ok(args), Some((cols, rows))) => direct::start(direct::Params {
                    console: self.shared.console.as_user(user, Front::Stream),
                    args,
                    cols,
                    rows,
                    term,
                    handle: handle.clone(),
                    channel,
                    prefix: self.shared.config.prefix_key,
                    activity: self.shared.activity.clone(),
                })
                .await
                .map_err(|e| (e.to_string(), 1)),
            };
            match started {
                Ok(running) => {
                    self.channels.insert(channel, Chan::Attached(running));
                }
                Err((message, code)) => fail(handle, channel, message, code),
            }
            return Ok(());
        }
        if let Some(parsed) = super::logs::parse(&command) {
            self.channels.insert(channel, Chan::Exec);
            let handle = session.handle();
            match parsed {
                Err(usage) => fail(handle, channel, usage, 2),
                Ok(args) => {
                    let user = self.user.clone().expect("authenticated");
                    let console = self.shared.console.as_user(user, Front::Stream);
                    super::logs::start(console, args, handle, channel)
                }
            }
            return Ok(());
        }
        if super::exec::wants_stdin(&command) {
            self.channels.insert(
                channel,
                Chan::CollectingStdin {
                    command,
                    stdin: Vec::new(),
                },
            );
        } else {
            self.channels.insert(channel, Chan::Exec);
            self.spawn_exec(channel, command, Vec::new(), session);
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(Chan::Dashboard(d)) => d.bytes(data),
            Some(Chan::Attached(a)) => a.keys(data),
            Some(Chan::CollectingStdin { stdin, command }) => {
                if stdin.len() + data.len() > MAX_EXEC_STDIN {
                    let command = std::mem::take(command);
                    self.channels.insert(channel, Chan::Exec);
                    let handle = session.handle();
                    tokio::spawn(async move {
                        let msg = format!(
                            "error: more than {} KiB on stdin for `{}`\n",
                            MAX_EXEC_STDIN / 1024,
                            crate::model::naming::printable(&command, 40)
                        );
                        let _ = handle.extended_data(channel, 1, msg.into_bytes()).await;
                        let _ = handle.exit_status_request(channel, 1).await;
                        let _ = handle.eof(channel).await;
                        let _ = handle.close(channel).await;
                    });
                } else {
                    stdin.extend_from_slice(data);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Chan::CollectingStdin { command, stdin }) = self.channels.remove(&channel) {
            self.channels.insert(channel, Chan::Exec);
            self.spawn_exec(channel, command, stdin, session);
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get(&channel) {
            Some(Chan::Dashboard(d)) => d.resize(clamp(cols), clamp(rows)),
            Some(Chan::Attached(a)) => {
                let _ = a.resize.try_send((clamp(cols), clamp(rows)));
            }
            _ => {}
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Dropping the dashboard's sender ends its task; an attach's tmux
        // client is ended too (the session itself keeps running).
        if let Some(Chan::Attached(a)) = self.channels.remove(&channel) {
            a.stop.cancel();
        }
        Ok(())
    }
}

impl Conn {
    fn spawn_exec(
        &self,
        channel: ChannelId,
        command: String,
        stdin: Vec<u8>,
        session: &mut Session,
    ) {
        let user = self.user.clone().expect("exec runs after authentication");
        let console = self.shared.console.as_user(user, Front::Exec);
        let handle = session.handle();
        tokio::spawn(async move {
            let out = super::exec::run(&console, &command, &stdin).await;
            if !out.stdout.is_empty() {
                let _ = handle.data(channel, out.stdout).await;
            }
            if !out.stderr.is_empty() {
                let _ = handle.extended_data(channel, 1, out.stderr).await;
            }
            let _ = handle.exit_status_request(channel, out.code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
    }
}

/// Ends an exec channel with one line on stderr and `code`.
fn fail(handle: russh::server::Handle, channel: ChannelId, message: String, code: u32) {
    tokio::spawn(async move {
        let line = format!("error: {message}\r\n");
        let _ = handle.extended_data(channel, 1, line.into_bytes()).await;
        let _ = handle.exit_status_request(channel, code).await;
        let _ = handle.eof(channel).await;
        let _ = handle.close(channel).await;
    });
}

/// Terminal sizes from the client are untrusted: keep them sane.
fn clamp(v: u32) -> u16 {
    v.clamp(1, 1000) as u16
}

/// Binds the listener (separate so tests can take a free port first).
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for SSH on {addr}"))
}
