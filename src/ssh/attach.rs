//! Direct attach over SSH (`ssh -t host attach NAME`): a raw pass-through to
//! the sandbox's terminal session, no TUI chrome. The prefix key (Ctrl-]
//! unless `ssh.prefix_key` says otherwise) detaches; the session keeps running.

use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::console::{Attached, ConsoleError, UserConsole};
use crate::driver::Viewer;
use crate::model::naming::printable;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachArgs {
    pub project: String,
    pub session: Option<String>,
    pub read_only: bool,
}

/// `Some` when the command line is an attach request (parsed or not).
pub fn parse(command: &str) -> Option<Result<AttachArgs, String>> {
    let words = match shell_words::split(command) {
        Ok(w) => w,
        Err(_) => return None,
    };
    if words.first().map(String::as_str) != Some("attach") {
        return None;
    }
    let mut project = None;
    let mut session = None;
    let mut read_only = false;
    let mut it = words.into_iter().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            "--read-only" | "-r" => read_only = true,
            "--session" | "-s" => match it.next() {
                Some(s) => session = Some(s),
                None => return Some(Err("--session needs a session name".into())),
            },
            "--help" | "-h" => {
                return Some(Err(
                    "usage: attach NAME [--session S] [--read-only]   (needs ssh -t; the prefix key, Ctrl-] by default, detaches)"
                        .into(),
                ));
            }
            _ if project.is_none() && !w.starts_with('-') => project = Some(w),
            other => return Some(Err(format!("unexpected argument {}", printable(other, 40)))),
        }
    }
    Some(match project {
        Some(project) => Ok(AttachArgs {
            project,
            session,
            read_only,
        }),
        None => Err("usage: attach NAME [--session S] [--read-only]".into()),
    })
}

/// Output already waiting is sent along with what came before it, up to this much.
const COALESCE_BYTES: usize = 64 * 1024;

/// A running direct attach: feed it the client's bytes and sizes.
pub struct DirectAttach {
    /// Straight to the session's terminal: a keystroke takes no detour
    /// through the relay task on its way in.
    to_session: crate::driver::SessionInput,
    pub resize: mpsc::Sender<(u16, u16)>,
    pub stop: CancellationToken,
    /// Set by the prefix key; the relay then says so and closes the channel.
    detached: CancellationToken,
    detach_byte: u8,
    read_only: bool,
    activity: crate::store::activity::ActivityTracker,
}

impl DirectAttach {
    /// The client's bytes: to the session up to the prefix key, which detaches.
    pub fn keys(&mut self, bytes: &[u8]) {
        if self.detached.is_cancelled() {
            return;
        }
        let (to_session, detach) = match bytes.iter().position(|&b| b == self.detach_byte) {
            Some(i) => (&bytes[..i], true),
            None => (bytes, false),
        };
        if !self.read_only && !to_session.is_empty() {
            self.activity.touch();
            // A full queue means the session is far behind: drop the
            // keystrokes rather than stall the whole connection.
            self.to_session.try_send(to_session.to_vec());
        }
        if detach {
            self.detached.cancel();
        }
    }
}

pub struct Params {
    /// The signed-in user's console: it checks and opens the session.
    pub console: UserConsole,
    pub args: AttachArgs,
    pub cols: u16,
    pub rows: u16,
    /// The terminal type the client named in its pty request.
    pub term: Option<String>,
    pub handle: Handle,
    pub channel: ChannelId,
    /// Detaches when it arrives.
    pub prefix: crate::tui::prefix::PrefixKey,
    /// Where the keys and the output note terminal activity.
    pub activity: crate::store::activity::ActivityRecorder,
}

/// Looks the sandbox up (as the user), attaches, and relays until detach,
/// session end or channel close. Errors come back as one line for stderr.
pub async fn start(p: Params) -> Result<DirectAttach, ConsoleError> {
    let Attached {
        mut attachment,
        resource: resource_name,
        ..
    } = p
        .console
        .attach(
            &p.args.project,
            p.args.session.as_deref(),
            &Viewer {
                cols: p.cols,
                rows: p.rows,
                read_only: p.args.read_only,
                term: p.term,
            },
        )
        .await?;
    let (stop, detached) = (CancellationToken::new(), CancellationToken::new());
    let direct = DirectAttach {
        to_session: attachment.input.clone(),
        resize: attachment.resize.clone(),
        stop: stop.clone(),
        detached: detached.clone(),
        detach_byte: p.prefix.byte(),
        read_only: p.args.read_only,
        activity: p.activity.tracker(resource_name.clone()),
    };
    let (handle, channel, name) = (p.handle, p.channel, printable(&p.args.project, 60));
    let mut activity = p.activity.tracker(resource_name);
    tokio::spawn(async move {
        let _open =
            crate::ops::metrics::OpenSession::open(crate::ops::metrics::SessionKind::Attach);
        let how = loop {
            tokio::select! {
                _ = stop.cancelled() => break End::Closed,
                _ = detached.cancelled() => break End::Detached,
                out = attachment.output.recv() => match out {
                    Some(mut bytes) => {
                        activity.touch();
                        // What else has arrived goes in the same message.
                        attachment.take_waiting(&mut bytes, COALESCE_BYTES);
                        if handle.data(channel, bytes).await.is_err() {
                            break End::Closed;
                        }
                    }
                    None => break End::SessionEnded,
                },
            }
        };
        // Dropping the attachment ends the tmux client, never the session.
        drop(attachment);
        let (message, code) = match how {
            End::Detached => (
                format!("\r\n[detached from {name}; the session stays on the server]\r\n"),
                0,
            ),
            End::SessionEnded => (format!("\r\n[the session of {name} ended]\r\n"), 0),
            End::Closed => return,
        };
        let _ = handle.data(channel, message.into_bytes()).await;
        let _ = handle.exit_status_request(channel, code).await;
        let _ = handle.eof(channel).await;
        let _ = handle.close(channel).await;
    });
    Ok(direct)
}

enum End {
    Detached,
    SessionEnded,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_command_lines() {
        assert_eq!(parse("projects"), None);
        assert_eq!(
            parse("attach blog --read-only").unwrap().unwrap(),
            AttachArgs {
                project: "blog".into(),
                session: None,
                read_only: true
            }
        );
        assert_eq!(
            parse("attach 'My Blog' -s work")
                .unwrap()
                .unwrap()
                .session
                .as_deref(),
            Some("work")
        );
        assert!(parse("attach").unwrap().is_err());
        assert!(parse("attach a b").unwrap().is_err());
        assert!(parse("attach a --session").unwrap().is_err());
    }
}
