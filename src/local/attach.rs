//! Attaching to a local sandbox: a `tmux attach` client in a pseudo-terminal
//! whose bytes are relayed to the viewer. Detaching ends only this client;
//! the session and its program keep running on Kiln's tmux server.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use tokio::sync::mpsc;

use super::LocalSandboxes;
use super::tmux::session_target;
use super::validate_resource_name;
use crate::driver::{
    Attachment, DriverError, DriverResult, ResourceRef, SessionAttach, SessionInfo,
};

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
/// (`name<TAB>activity<TAB>attached` lines). Pure, so it is tested as a table.
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
            Some(SessionInfo {
                name,
                last_activity: f.next().and_then(|v| v.parse().ok()),
                viewers: f.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What a named session runs: the user's shell, with the sandbox's env.
const NAMED_SESSION_COMMAND: &str =
    "sh -c '[ -r ./.kiln-env ] && . ./.kiln-env; exec \"${SHELL:-/bin/sh}\"'";

/// A session name a user may choose: short, lowercase, `[a-z0-9-]`.
pub(crate) fn check_session_name(s: &str) -> Result<(), DriverError> {
    let ok = !s.is_empty()
        && s.len() <= 20
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DriverError::permanent(format!(
            "invalid session name {:?}: use 1 to 20 characters from a-z, 0-9 and -",
            crate::model::naming::printable(s, 30)
        )))
    }
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
        let listing = self
            .list_sessions_with("#{session_name}\t#{session_activity}\t#{session_attached}")
            .await?;
        Ok(sessions_of(&r.resource_name, &listing))
    }

    async fn attach(
        &self,
        r: &ResourceRef,
        session: Option<&str>,
        cols: u16,
        rows: u16,
        read_only: bool,
    ) -> DriverResult<Attachment> {
        validate_resource_name(&r.resource_name)?;
        // Named sessions live under the sandbox's own name, so a session
        // name can never reach another sandbox's session.
        let name = match session {
            None => r.resource_name.clone(),
            Some(s) => {
                check_session_name(s)?;
                format!("{}--{s}", r.resource_name)
            }
        };
        let dir = self.sandbox_dir(r);
        let pty = native_pty_system()
            .openpty(pty_size(cols, rows))
            .map_err(|e| DriverError::transient(format!("cannot open a terminal: {e}")))?;
        let mut cmd = CommandBuilder::new(self.tmux_binary());
        cmd.args(["-S", &self.socket_path().to_string_lossy()]);
        cmd.args(["-f", &self.conf_path().to_string_lossy()]);
        if session.is_some() && !read_only {
            // A named session is created on first use (a shell in the
            // sandbox's directory), then reattached like any other.
            cmd.args(["new-session", "-A", "-s", &name, "-c"]);
            cmd.arg(dir.as_os_str());
            // The project's environment comes from the file the driver keeps
            // current; the command is Kiln's own text, not user input.
            cmd.arg(NAMED_SESSION_COMMAND);
        } else {
            cmd.arg("attach-session");
            if read_only {
                cmd.arg("-r");
            }
            cmd.args(["-t", &session_target(&name)]);
        }
        cmd.env("TERM", "xterm-256color");
        let mut child = pty.slave.spawn_command(cmd).map_err(|e| {
            DriverError::permanent(format!(
                "cannot run tmux to attach (is tmux installed?): {e}"
            ))
        })?;
        drop(pty.slave);
        let killer = child.clone_killer();
        let mut reader = pty
            .master
            .try_clone_reader()
            .map_err(|e| DriverError::transient(format!("terminal reader: {e}")))?;
        let mut writer = pty
            .master
            .take_writer()
            .map_err(|e| DriverError::transient(format!("terminal writer: {e}")))?;
        let detach = pty.master.tty_name().map(|tty| {
            let mut cmd = std::process::Command::new(self.tmux_binary());
            cmd.arg("-S")
                .arg(self.socket_path())
                .arg("detach-client")
                .arg("-t")
                .arg(tty)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            cmd
        });
        let master = pty.master;

        // Output: a blocking read loop on its own thread (the PTY is a plain fd).
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(64);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out_tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
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

        let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(256);
        let client_gone = exited.clone();
        tokio::task::spawn_blocking(move || {
            while let Some(bytes) = in_rx.blocking_recv() {
                if read_only {
                    continue;
                }
                if writer
                    .write_all(&bytes)
                    .and_then(|_| writer.flush())
                    .is_err()
                {
                    break;
                }
            }
            // portable-pty's writer sends "\n" + EOF when dropped; while the
            // client is attached that would reach the session and end its
            // shell. Keep it until the client is gone.
            for _ in 0..1000 {
                if client_gone.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if !client_gone.load(Ordering::SeqCst) {
                // Never risk typing EOF into a live session.
                std::mem::forget(writer);
            }
        });
        let (resize_tx, mut resize_rx) = mpsc::channel::<(u16, u16)>(16);
        tokio::spawn(async move {
            while let Some((c, r)) = resize_rx.recv().await {
                // TIOCSWINSZ: tmux sees SIGWINCH and resizes the session.
                let _ = master.resize(pty_size(c, r));
            }
        });
        Ok(Attachment {
            output: out_rx,
            input: in_tx,
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
        assert_eq!(s[1].name.as_deref(), Some("work"));
        assert_eq!(s[1].last_activity, Some(90));
    }
}
