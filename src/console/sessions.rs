//! A project's sandbox as a live thing: its terminal sessions (list,
//! restart, attach) and its log. These are direct paths to a driver, opened
//! after the same lookup and checks as every other action.

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::driver::{Attachment, LogEvent, ResourceRef, SessionAttach, SessionInfo, Viewer};
use crate::model::ResourceStatus;
use crate::model::naming::printable;
use crate::store::projects::ProjectView;
use crate::store::resources::ResourceKind;

use super::{Action, ConsoleError, ConsoleResult, Scope, UserConsole, gate};

/// An open session: its byte stream and the sandbox it belongs to.
pub struct Attached {
    pub attachment: Attachment,
    /// The sandbox's resource name (what the activity record is keyed by).
    pub resource: String,
    /// Why the console cut the stream, once it has (the actor lost the
    /// right to it): a front end that ends the attach says this, not just
    /// that the stream closed.
    pub revoked: Revoked,
}

/// Set by the console when it ends an attach itself, before the stream closes.
pub type Revoked = std::sync::Arc<std::sync::OnceLock<String>>;

/// A session restarted in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarted {
    /// The project's name as its owner typed it.
    pub project: String,
    /// `None`: the default session.
    pub session: Option<String>,
}

/// The sandbox of one of `owner`'s projects as drivers address it, with
/// its status. The namespace is left to the router: it scopes a tenant's
/// objects to the tenant's namespace, and the local driver has none.
pub(crate) fn sandbox_ref(
    view: &ProjectView,
    owner: Uuid,
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

/// The first free name for a new session: `s1`, `s2`, …
pub fn next_session_name(existing: &[SessionInfo]) -> String {
    (1..)
        .map(|n| format!("s{n}"))
        .find(|c| !existing.iter().any(|s| s.name.as_deref() == Some(c)))
        .expect("an unbounded range has a free name")
}

/// The session after `current` in the list, wrapping around; `None` when
/// there is no other session to switch to.
pub fn next_session(existing: &[SessionInfo], current: Option<&str>) -> Option<Option<String>> {
    let i = existing
        .iter()
        .position(|s| s.name.as_deref() == current)
        .map_or(0, |i| (i + 1) % existing.len());
    let next = existing.get(i)?;
    (next.name.as_deref() != current).then(|| next.name.clone())
}

/// Records the end of an attach in the audit trail when dropped.
struct AttachEnded {
    console: UserConsole,
    project: String,
    read_only: bool,
}

impl Drop for AttachEnded {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(project = %self.project, "attach ended outside the runtime: not audited");
            return;
        };
        let console = self.console.clone();
        let project = std::mem::take(&mut self.project);
        let read_only = self.read_only;
        runtime.spawn(async move {
            let actor = console.actor();
            let record = crate::store::audit::NewAuditRecord {
                user_id: Some(actor.user.id),
                username: &actor.user.username,
                operator: actor.operator,
                front: actor.front.as_str(),
                source: actor.source,
                action: if read_only {
                    "session.view.end"
                } else {
                    "session.attach.end"
                },
                project: Some(&project),
                result: "ok",
                ..Default::default()
            };
            console.console.write_audit(&record).await;
        });
    }
}

impl UserConsole {
    /// Ends a team project's attach as soon as the actor loses the right
    /// to it (removed from the team, or made a viewer while typing): the
    /// session's output passes through a relay that follows membership
    /// changes of this user, says why, and closes the stream.
    fn watch_membership(
        &self,
        attachment: &mut crate::driver::Attachment,
        team: String,
        read_only: bool,
        feed: &crate::store::notify::ChangeFeed,
        revoked: Revoked,
    ) {
        let mut changes = feed.subscribe();
        let (tx, rx) = mpsc::channel(64);
        let mut output = std::mem::replace(&mut attachment.output, rx);
        let console = self.clone();
        let me = self.user_id();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // The viewer went away: stop relaying (and following).
                    _ = tx.closed() => return,
                    chunk = output.recv() => match chunk {
                        Some(bytes) => if tx.send(bytes).await.is_err() { return },
                        None => return,
                    },
                    change = changes.recv() => {
                        let ours = match &change {
                            Ok(c) => c.table == "team_members" && c.user_id == Some(me),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
                        };
                        if !ours || console.may_still_attach(&team, read_only).await {
                            continue;
                        }
                        let why = format!("you no longer have access to team {team}: detached");
                        let _ = revoked.set(why.clone());
                        let _ = tx.send(format!("\r\n[kiln] {why}\r\n").into_bytes()).await;
                        return;
                    }
                }
            }
        });
    }

    /// Whether the actor still holds a role in `team` that allows this
    /// attach. A failed lookup keeps the attach (it is re-checked at the
    /// next change).
    async fn may_still_attach(&self, team: &str, read_only: bool) -> bool {
        let needed = gate::Action::Attach {
            project: "",
            read_only,
        }
        .team_role_needed();
        match self.team_access(team).await {
            Ok(Some((_, _, role))) => role >= needed,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    fn session_driver(&self) -> ConsoleResult<&dyn SessionAttach> {
        self.console.sessions.as_deref().ok_or_else(|| {
            ConsoleError::unavailable("terminal sessions are not available on this server")
        })
    }

    /// One of the user's projects and its sandbox. Another tenant's project
    /// behaves exactly like a missing one.
    async fn sandbox(
        &self,
        s: &Scope,
    ) -> ConsoleResult<(ProjectView, ResourceRef, ResourceStatus)> {
        let view = s.present(self.store().find_project(s.owner, &s.name).await?);
        let (r, status) = sandbox_ref(&view, s.owner).ok_or_else(|| {
            ConsoleError::refused(format!(
                "{} has no sandbox, so it has no sessions",
                printable(&view.project.name, 100)
            ))
        })?;
        Ok((view, r, status))
    }

    /// The sandbox, which must be running for its sessions to exist.
    async fn running_sandbox(&self, s: &Scope) -> ConsoleResult<(ProjectView, ResourceRef)> {
        let (view, r, status) = self.sandbox(s).await?;
        if status != ResourceStatus::Running {
            return Err(ConsoleError::refused(format!(
                "{} is {}: its sessions exist only while its sandbox runs (start it with `start {}`)",
                printable(&view.project.name, 100),
                view.project.status,
                view.project.slug
            )));
        }
        Ok((view, r))
    }

    /// The sandbox's terminal sessions, default first.
    pub async fn sessions(&self, project: &str) -> ConsoleResult<Vec<SessionInfo>> {
        self.gated_in(Action::ListSessions { project }, |s| async move {
            let driver = self.session_driver()?;
            let (_, r) = self.running_sandbox(&s).await?;
            driver
                .sessions(&r)
                .await
                .map_err(|e| ConsoleError::driver("cannot list sessions", e))
        })
        .await
    }

    /// Restarts an exited session in place (`None`: the default one); a
    /// running one is never restarted.
    pub async fn restart(&self, project: &str, session: Option<&str>) -> ConsoleResult<Restarted> {
        self.gated_in(Action::RestartSession { project }, |s| async move {
            let driver = self.session_driver()?;
            if let Some(s) = session {
                // The driver's own rule, checked before anything is looked up.
                crate::model::session::check_session_name(s)
                    .map_err(|e| ConsoleError::invalid("session", e.to_string()))?;
            }
            let (view, r) = self.running_sandbox(&s).await?;
            // What the exited program said is stale, but only that: the new
            // program's first report (SessionStart) may land before the
            // restart returns, so only what was written before is cleared.
            let before = self.store().clock().await?;
            driver
                .restart(&r, session)
                .await
                .map_err(|e| ConsoleError::driver("cannot restart", e))?;
            self.store()
                .clear_agent_state(&r.resource_name, session, before)
                .await?;
            Ok(Restarted {
                project: view.project.name,
                session: session.map(str::to_string),
            })
        })
        .await
    }

    /// Opens a session of the project's running sandbox (`None`: the
    /// default one) for `viewer`.
    pub async fn attach(
        &self,
        project: &str,
        session: Option<&str>,
        viewer: &Viewer,
    ) -> ConsoleResult<Attached> {
        let action = Action::Attach {
            project,
            read_only: viewer.read_only,
        };
        self.gated_in(action, |s| async move {
            let driver = self
                .console
                .sessions
                .as_deref()
                .ok_or_else(|| ConsoleError::unavailable("attach is not available on this server"))?;
            let (view, r, status) = self.sandbox(&s).await?;
            if status != ResourceStatus::Running {
                return Err(ConsoleError::refused(format!(
                    "cannot attach: {} is {}; start it first (s in the dashboard, or ssh … start {})",
                    printable(&view.project.name, 60),
                    view.project.status,
                    view.project.slug
                )));
            }
            let mut attachment = driver
                .attach(&r, session, viewer)
                .await
                .map_err(|e| ConsoleError::driver("cannot attach", e))?;
            // The end of the attach is recorded when its stream is dropped,
            // however that happens (detach, closed connection, session end).
            let guard = std::mem::replace(&mut attachment.guard, Box::new(()));
            attachment.guard = Box::new((
                guard,
                AttachEnded {
                    console: self.clone(),
                    project: project.to_string(),
                    read_only: viewer.read_only,
                },
            ));
            let revoked = Revoked::default();
            if let (Some(team), Some(feed)) = (&s.team, &self.console.feed) {
                let why = revoked.clone();
                self.watch_membership(&mut attachment, team.clone(), viewer.read_only, feed, why);
            }
            Ok(Attached {
                attachment,
                resource: r.resource_name,
                revoked,
            })
        })
        .await
    }

    /// Follows the sandbox's log: the last `tail` lines (all: `None`), then,
    /// with `follow`, what comes.
    pub async fn logs(
        &self,
        project: &str,
        tail: Option<i64>,
        follow: bool,
    ) -> ConsoleResult<mpsc::Receiver<LogEvent>> {
        self.gated_in(Action::Logs { project }, |s| async move {
            let logs = self.console.logs.as_deref().ok_or_else(|| {
                ConsoleError::unavailable("logs are not available on this server")
            })?;
            let (_, r, _) = self.sandbox(&s).await?;
            logs.logs(&r, tail, follow)
                .await
                .map_err(|e| ConsoleError::unavailable(e.to_string()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_and_cycling() {
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
}
