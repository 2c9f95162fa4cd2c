//! Attaching to a local sandbox: a `tmux attach` client in a pseudo-terminal
//! whose bytes are relayed to the viewer. Detaching ends only this client;
//! the session and its program keep running on Kiln's tmux server.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use tokio::sync::mpsc;

use super::LocalSandboxes;
use super::tmux::session_target;
use super::validate_resource_name;
use crate::driver::{
    Attachment, DriverError, DriverResult, ResourceRef, SessionAttach, SessionInfo, SessionState,
    TMUX_SESSION_FORMAT, Viewer, tmux_listing_awaits_reap,
};
use crate::model::session::check_session_name;
use crate::model::terminal;

/// Ends the tmux client (not the session) when the attachment is dropped.
struct ClientGuard {
    killer: Arc<Mutex<Box<dyn portable_pty::ChildKiller + Send + Sync>>>,
    /// Set once the client has been reaped: its pid may then belong to
    /// another process (even a sandbox's shell), which must never be signalled.
    exited: Arc<AtomicBool>,
    /// `tmux -S … detach-client -t TTY`: the server lets go of the client
    /// first. Pulling the terminal from under an attached client instead can
    /// leave an end-of-file in the pane, which ends a shell running there.
    detach: Option<std::process::Command>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let (killer, exited, detach) =
            (self.killer.clone(), self.exited.clone(), self.detach.take());
        // Off the async runtime: this runs a short tmux command and waits a little.
        std::thread::spawn(move || {
            if let Some(mut cmd) = detach {
                let _ = cmd.output();
            }
            for _ in 0..50 {
                if exited.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if let Ok(mut k) = killer.lock()
                && !exited.load(Ordering::SeqCst)
            {
                let _ = k.kill();
            }
        });
    }
}

/// The sessions of one sandbox in `tmux list-sessions` output
/// ([`TMUX_SESSION_FORMAT`] lines). Pure, so it is tested as a table.
fn sessions_of(resource: &str, listing: &str) -> Vec<SessionInfo> {
    let prefix = format!("{resource}--");
    let mut out: Vec<SessionInfo> = listing
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let full = f.next()?;
            let name = if full == resource {
                None
            } else {
                Some(full.strip_prefix(&prefix)?.to_string())
            };
            let last_activity = f.next().and_then(|v| v.parse().ok());
            let viewers = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let state = SessionState::from_tmux(f.next(), f.next());
            Some(SessionInfo {
                name,
                last_activity,
                viewers,
                state,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What a named session runs: the user's shell, with the sandbox's env.
const NAMED_SESSION_COMMAND: &str =
    "sh -c '[ -r ./.kiln-env ] && . ./.kiln-env; exec \"${SHELL:-/bin/sh}\"'";

/// The tmux session behind `session` of sandbox `r`: the sandbox's own name
/// for the default one, `{resource}--{name}` for a named one. Named sessions
/// live under the sandbox's name, so a session name can never reach another
/// sandbox's (or tenant's) session.
fn tmux_session(r: &ResourceRef, session: Option<&str>) -> DriverResult<String> {
    validate_resource_name(&r.resource_name)?;
    match session {
        None => Ok(r.resource_name.clone()),
        Some(s) => {
            check_session_name(s)?;
            Ok(format!("{}--{s}", r.resource_name))
        }
    }
}

/// `tmux -S SOCKET VERB -t TTY`: a command about the tmux client on `tty`
/// (tmux names a client by its terminal), with no terminal of its own.
fn client_command(tmux: super::tmux::Tmux, verb: &str, tty: &Path) -> std::process::Command {
    let mut cmd = tmux.std_command();
    cmd.arg(verb)
        .arg("-t")
        .arg(tty)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

fn pty_size(cols: u16, rows: u16) -> PtySize {
    PtySize {
        rows: rows.max(1),
        cols: cols.max(1),
        pixel_width: 0,
        pixel_height: 0,
    }
}

#[async_trait]
impl SessionAttach for LocalSandboxes {
    async fn sessions(&self, r: &ResourceRef) -> DriverResult<Vec<SessionInfo>> {
        validate_resource_name(&r.resource_name)?;
        let resource = &r.resource_name;
        let mut listing = self
            .list_sessions_with(resource, TMUX_SESSION_FORMAT)
            .await?;
        if tmux_listing_awaits_reap(&listing) {
            // Have tmux reap what has exited, so the status is shown.
            self.reap_exited(resource).await;
            listing = self
                .list_sessions_with(resource, TMUX_SESSION_FORMAT)
                .await?;
        }
        Ok(sessions_of(&r.resource_name, &listing))
    }

    async fn app_endpoint(
        &self,
        r: &ResourceRef,
    ) -> DriverResult<Option<crate::driver::AppEndpoint>> {
        validate_resource_name(&r.resource_name)?;
        Ok(self
            .app_port(&r.resource_name)
            .map(|port| crate::driver::AppEndpoint {
                host_address: format!("127.0.0.1:{port}"),
                sandbox_port: super::network::APP_PORT,
            }))
    }

    async fn git_state(
        &self,
        r: &ResourceRef,
    ) -> DriverResult<Option<crate::model::git::GitState>> {
        LocalSandboxes::git_state(self, r).await
    }

    async fn restart(&self, r: &ResourceRef, session: Option<&str>) -> DriverResult<()> {
        let name = tmux_session(r, session)?;
        let shown = crate::model::naming::printable(session.unwrap_or("default"), 30);
        match self.respawn_dead_pane(&r.resource_name, &name).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_pane_still_active() => Err(DriverError::permanent(format!(
                "session {shown} is still running; only an exited session can be restarted"
            ))),
            Err(e) if e.is_missing_session() => Err(DriverError::permanent(match session {
                None => "the sandbox has no default session: it is not running".to_string(),
                Some(_) => format!("no session {shown} in this sandbox"),
            })),
            Err(e) => Err(e.into_driver_error(&format!("restarting session {shown}"))),
        }
    }

    async fn attach(
        &self,
        r: &ResourceRef,
        session: Option<&str>,
        viewer: &Viewer,
    ) -> DriverResult<Attachment> {
        let &Viewer {
            cols,
            rows,
            read_only,
            ..
        } = viewer;
        let name = tmux_session(r, session)?;
        let dir = self.sandbox_dir(r);
        let pty = native_pty_system()
            .openpty(pty_size(cols, rows))
            .map_err(|e| DriverError::transient(format!("cannot open a terminal: {e}")))?;
        // A client of the sandbox's own server, under the identity it
        // admits; `-N`: never a server of its own (it would be unconfined).
        let mut argv = self.client_argv(&r.resource_name).into_iter();
        let mut cmd = CommandBuilder::new(argv.next().expect("a program"));
        cmd.args(argv);
        if session.is_some() && !read_only {
            // A named session is created on first use (a shell in the
            // sandbox's directory), then reattached like any other.
            cmd.args(["new-session", "-A", "-s", &name, "-c"]);
            cmd.arg(dir.as_os_str());
            // Which session Claude Code's hooks report about (the default
            // session has none); checked again by Kiln when it arrives.
            cmd.arg("-e");
            cmd.arg(format!("KILN_SESSION={}", session.unwrap_or_default()));
            // The project's environment comes from the file the driver keeps
            // current; the command is Kiln's own text, not user input.
            cmd.arg(NAMED_SESSION_COMMAND);
            // The pane stays when the shell exits, so it can be restarted.
            cmd.arg(super::tmux::SEPARATOR);
            cmd.args(super::sandbox::remain_on_exit(&name));
        } else {
            cmd.arg("attach-session");
            if read_only {
                cmd.arg("-r");
            }
            cmd.args(["-t", &session_target(&name)]);
        }
        // tmux draws for the viewer's own terminal, as it would under sshd.
        cmd.env(
            "TERM",
            terminal::for_viewer(viewer.term.as_deref(), super::terminfo::known),
        );
        let mut child = pty.slave.spawn_command(cmd).map_err(|e| {
            DriverError::permanent(format!(
                "cannot run tmux to attach (is tmux installed?): {e}"
            ))
        })?;
        drop(pty.slave);
        let killer = child.clone_killer();
        let client = pty.master.tty_name();
        let detach = client
            .as_ref()
            .map(|tty| client_command(self.tmux(&r.resource_name), "detach-client", tty));
        let catch_up = client.map(|tty| {
            let tmux = self.tmux(&r.resource_name);
            Box::new(move || {
                let mut refresh = client_command(tmux.clone(), "refresh-client", &tty);
                // Off the runtime: a fork and a short wait for tmux. It fails
                // only when the client has just gone, which needs no redraw.
                tokio::task::spawn_blocking(move || match refresh.status() {
                    Ok(s) if s.success() => {}
                    other => tracing::debug!(?other, "tmux refresh-client after output"),
                });
            }) as super::pty_io::CatchUp
        });
        let master = pty.master;
        let fd = master
            .as_raw_fd()
            .ok_or_else(|| DriverError::transient("the terminal has no descriptor"))?;
        let streams = super::pty_io::relay(fd, read_only, catch_up)
            .map_err(|e| DriverError::transient(format!("terminal relay: {e}")))?;

        // Reap the client so it never lingers as a zombie. The kill lock is
        // held while marking it gone, so a concurrent kill sees one or the other.
        let exited = Arc::new(AtomicBool::new(false));
        let killer = Arc::new(Mutex::new(killer));
        let (reaped, reaper_lock) = (exited.clone(), killer.clone());
        std::thread::spawn(move || {
            let _ = child.wait();
            let _held = reaper_lock.lock();
            reaped.store(true, Ordering::SeqCst);
        });

        let (resize_tx, mut resize_rx) = mpsc::channel::<(u16, u16)>(16);
        tokio::spawn(async move {
            while let Some((c, r)) = resize_rx.recv().await {
                // TIOCSWINSZ: tmux sees SIGWINCH and resizes the session.
                let _ = master.resize(pty_size(c, r));
            }
        });
        Ok(Attachment {
            output: streams.output,
            input: streams.input,
            resize: resize_tx,
            guard: Box::new(ClientGuard {
                killer,
                exited,
                detach,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_sandboxs_sessions_default_first() {
        let listing = "a-agentruntime-x\t100\t1\na-agentruntime-x--work\t90\t0\n\
                       b-agentruntime-y\t80\t0\na-agentruntime-x-other\t70\t0\n";
        let s = sessions_of("a-agentruntime-x", listing);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, None);
        assert_eq!(s[0].viewers, 1);
        assert_eq!(s[0].state, SessionState::Running);
        assert_eq!(s[1].name.as_deref(), Some("work"));
        assert_eq!(s[1].last_activity, Some(90));
    }

    #[test]
    fn exited_sessions_carry_their_status() {
        let listing = "a-agentruntime-x\t100\t0\t1\t3\n\
                       a-agentruntime-x--s1\t90\t0\t1\t\n\
                       a-agentruntime-x--s2\t90\t0\t0\t\n";
        let s = sessions_of("a-agentruntime-x", listing);
        assert_eq!(s[0].state, SessionState::Exited { status: Some(3) });
        assert_eq!(s[1].state, SessionState::Exited { status: None });
        assert_eq!(s[2].state, SessionState::Running);
    }

    #[test]
    fn session_names_stay_inside_their_sandbox() {
        let r = ResourceRef {
            resource_name: "a-agentruntime-x".into(),
            namespace: String::new(),
            project_slug: "a".into(),
            owner: uuid::Uuid::nil(),
        };
        assert_eq!(tmux_session(&r, None).unwrap(), "a-agentruntime-x");
        assert_eq!(
            tmux_session(&r, Some("work")).unwrap(),
            "a-agentruntime-x--work"
        );
        // Another sandbox's name is just a session name inside this one.
        assert_eq!(
            tmux_session(&r, Some("b-agentruntime-y")).unwrap(),
            "a-agentruntime-x--b-agentruntime-y"
        );
        for bad in ["", "../x", "=x", "x:", "UP", "a;b"] {
            assert!(tmux_session(&r, Some(bad)).is_err(), "{bad}");
        }
    }
}
