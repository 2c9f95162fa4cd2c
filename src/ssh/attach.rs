//! Direct attach over SSH (`ssh -t host attach NAME`): a raw pass-through to
//! the sandbox's terminal session, no TUI chrome. The prefix key (Ctrl-]
//! unless `ssh.prefix_key` says otherwise) detaches; the session keeps running.

use std::sync::Arc;

use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::driver::{ResourceRef, SessionAttach, Viewer};
use crate::model::ResourceStatus;
use crate::model::naming::printable;
use crate::store::Store;
use crate::store::projects::ProjectView;
use crate::store::resources::ResourceKind;
use crate::store::users::User;

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
    pub store: Store,
    pub user: User,
    pub attach: Arc<dyn SessionAttach>,
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

/// Attaches to a session of one of `user`'s projects, if its sandbox is
/// running. Another tenant's project behaves exactly like a missing one.
/// Returns the attachment and the sandbox's resource name.
pub async fn attach_project(
    store: &Store,
    user: &User,
    attach: &dyn SessionAttach,
    project: &str,
    session: Option<&str>,
    viewer: &Viewer,
) -> Result<(crate::driver::Attachment, String), String> {
    let (view, r, status) = find_sandbox(store, user, project).await?;
    if status != ResourceStatus::Running {
        return Err(format!(
            "cannot attach: {} is {}; start it first (s in the dashboard, or ssh … start {})",
            printable(&view.project.name, 60),
            view.project.status,
            view.project.slug
        ));
    }
    let attachment = attach
        .attach(&r, session, viewer)
        .await
        .map_err(|e| format!("cannot attach: {e}"))?;
    Ok((attachment, r.resource_name))
}

/// The sandbox of one of `owner`'s projects as drivers address it, with its
/// status. The namespace is left to the router: it scopes a tenant's
/// objects to the tenant's namespace, and the local driver has none.
pub(crate) fn sandbox_ref(
    view: &ProjectView,
    owner: uuid::Uuid,
) -> Option<(ResourceRef, ResourceStatus)> {
    view.resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .map(|sb| {
            let r = ResourceRef {
                resource_name: sb.resource_name.clone(),
                namespace: String::new(),
                project_slug: view.project.slug.clone(),
                owner,
            };
            (r, sb.status)
        })
}

/// One of `user`'s projects and its sandbox. Another tenant's project
/// behaves exactly like a missing one.
pub(crate) async fn find_sandbox(
    store: &Store,
    user: &User,
    project: &str,
) -> Result<(ProjectView, ResourceRef, ResourceStatus), String> {
    let view = store
        .find_project(user.id, project)
        .await
        .map_err(|e| e.to_string())?;
    let (r, status) =
        sandbox_ref(&view, user.id).ok_or_else(|| "this project has no sandbox".to_string())?;
    Ok((view, r, status))
}

/// The sessions of one of `user`'s running sandboxes.
pub async fn project_sessions(
    store: &Store,
    user: &User,
    attach: &dyn SessionAttach,
    project: &str,
) -> Result<Vec<crate::driver::SessionInfo>, String> {
    let (_, r, _) = find_sandbox(store, user, project).await?;
    attach
        .sessions(&r)
        .await
        .map_err(|e| format!("cannot list sessions: {e}"))
}

/// Restarts an exited session of one of `user`'s running sandboxes
/// (`None` = the default session). Another tenant's project behaves
/// exactly like a missing one. Returns a line saying what was restarted.
pub async fn restart_session(
    store: &Store,
    user: &User,
    attach: &dyn SessionAttach,
    project: &str,
    session: Option<&str>,
) -> Result<String, String> {
    let (view, r, status) = find_sandbox(store, user, project).await?;
    if status != ResourceStatus::Running {
        return Err(format!(
            "cannot restart a session: {} is {}; start it first",
            printable(&view.project.name, 60),
            view.project.status,
        ));
    }
    attach
        .restart(&r, session)
        .await
        .map_err(|e| format!("cannot restart: {e}"))?;
    Ok(format!(
        "restarted session {} of {}",
        printable(session.unwrap_or("default"), 30),
        printable(&view.project.name, 60)
    ))
}

/// The first free name for a new session: `s1`, `s2`, …
pub fn next_session_name(existing: &[crate::driver::SessionInfo]) -> String {
    (1..)
        .map(|n| format!("s{n}"))
        .find(|c| !existing.iter().any(|s| s.name.as_deref() == Some(c)))
        .expect("an unbounded range has a free name")
}

/// The session after `current` in the list, wrapping around; `None` when
/// there is no other session to switch to.
pub fn next_session(
    existing: &[crate::driver::SessionInfo],
    current: Option<&str>,
) -> Option<Option<String>> {
    let i = existing
        .iter()
        .position(|s| s.name.as_deref() == current)
        .map_or(0, |i| (i + 1) % existing.len());
    let next = existing.get(i)?;
    (next.name.as_deref() != current).then(|| next.name.clone())
}

/// Looks the sandbox up (as the user), attaches, and relays until detach,
/// session end or channel close. Errors come back as one line for stderr.
pub async fn start(p: Params) -> Result<DirectAttach, String> {
    let (mut attachment, resource_name) = attach_project(
        &p.store,
        &p.user,
        p.attach.as_ref(),
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
    fn session_names_and_cycling() {
        use crate::driver::SessionInfo;
        let s = |n: Option<&str>| SessionInfo {
            name: n.map(str::to_string),
            last_activity: None,
            viewers: 0,
            state: crate::driver::SessionState::Running,
        };
        let list = vec![s(None), s(Some("s1")), s(Some("work"))];
        assert_eq!(next_session_name(&list), "s2");
        assert_eq!(next_session(&list, None), Some(Some("s1".into())));
        assert_eq!(next_session(&list, Some("work")), Some(None));
        assert_eq!(next_session(&[], None), None);
        // Alone in its sandbox, a session has nothing to switch to; a
        // session that has gone switches to the first one.
        assert_eq!(next_session(&list[..1], None), None);
        assert_eq!(next_session(&list[1..], None), Some(Some("s1".into())));
    }

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
