//! A connection's channels: russh's callbacks for one connection, routing
//! each channel to the dashboard (a `shell` with a PTY), a direct attach,
//! `logs`, or an exec command. The sign-in callbacks hand over to
//! `sign_in`.

use russh::server::{Auth, Msg, Response, Session};
use russh::{Channel, ChannelId};

use super::Conn;
use super::restart::Interactive;
use crate::console::Front;
use crate::ssh::attach::{self as direct, DirectAttach};
use crate::ssh::session::{self, DashboardParams};

/// Most stdin an exec command may send (`keys add`).
const MAX_EXEC_STDIN: usize = 1024 * 1024;

pub(super) enum Chan {
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

impl russh::server::Handler for Conn {
    type Error = anyhow::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.banner())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(counted(
            "password",
            self.check_password("password", user, password).await,
        ))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(counted(
            "keyboard-interactive",
            self.keyboard_interactive(user, response).await,
        ))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.key_offered(user, offer).await)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(counted("publickey", self.check_key(user, key).await))
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
        let console = self
            .shared
            .console
            .as_user(user, Front::Dashboard)
            .from_address(self.peer);
        let tx = session::spawn(DashboardParams {
            projects: self.shared.lists.follow(&console),
            console,
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
        self.open.add(channel, Interactive::Dashboard);
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
                    console: self
                        .shared
                        .console
                        .as_user(user, Front::Stream)
                        .from_address(self.peer),
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
                    self.open.add(channel, Interactive::Attach);
                }
                Err((message, code)) => fail(handle, channel, message, code),
            }
            return Ok(());
        }
        if let Some(parsed) = crate::ssh::logs::parse(&command) {
            self.channels.insert(channel, Chan::Exec);
            let handle = session.handle();
            match parsed {
                Err(usage) => fail(handle, channel, usage, 2),
                Ok(args) => {
                    let user = self.user.clone().expect("authenticated");
                    let console = self
                        .shared
                        .console
                        .as_user(user, Front::Stream)
                        .from_address(self.peer);
                    crate::ssh::logs::start(console, args, handle, channel)
                }
            }
            return Ok(());
        }
        if crate::ssh::exec::wants_stdin(&command) {
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
        self.open.remove(channel);
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
        let console = self
            .shared
            .console
            .as_user(user, Front::Exec)
            .from_address(self.peer);
        self.open.add(channel, Interactive::Exec);
        let handle = session.handle();
        tokio::spawn(async move {
            let _open =
                crate::ops::metrics::OpenSession::open(crate::ops::metrics::SessionKind::Exec);
            let out = crate::ssh::exec::run(&console, &command, &stdin).await;
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

/// Counts a sign-in attempt's result in `kiln_signin_attempts_total` (a
/// prompt for more, `Partial`, is not a result yet).
fn counted(method: &'static str, auth: Auth) -> Auth {
    match &auth {
        Auth::Accept => crate::ops::metrics::signin(method, "success"),
        Auth::Reject { .. } => crate::ops::metrics::signin(method, "failure"),
        _ => {}
    }
    auth
}

/// Terminal sizes from the client are untrusted: keep them sane.
fn clamp(v: u32) -> u16 {
    v.clamp(1, 1000) as u16
}
