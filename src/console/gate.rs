//! The one gate every console action passes: who asks ([`Actor`]), what
//! they ask for ([`Action`]), whether they may ([`authorize`], pure), and
//! the record of what happened ([`audit`]). Roles, quotas and the audit
//! table hook in here once, not once per action or per front end.

use crate::model::intent::Intent;
use crate::store::users::User;

use super::error::ConsoleError;

/// Which front end a request came through (for the audit record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    Dashboard,
    Exec,
    /// `ssh -t … attach` and `ssh … logs`: live streams outside the exec commands.
    Stream,
    /// The operator's `kiln` command line.
    Cli,
}

impl Front {
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Dashboard => "dashboard",
            Front::Exec => "exec",
            Front::Stream => "stream",
            Front::Cli => "cli",
        }
    }
}

/// Who performs an action: a signed-in user, or the operator acting on a
/// user's behalf (the `kiln` CLI). Resources are always the user's.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: User,
    pub front: Front,
    pub operator: bool,
}

impl Actor {
    /// The name written into a project's events.
    pub fn event_name(&self) -> &str {
        if self.operator {
            "operator"
        } else {
            &self.user.username
        }
    }
}

/// Every action the console performs, as data: what the gate and the
/// audit record see. Secret values never appear here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    ListProjects,
    ShowProject { project: &'a str },
    CreateProject { name: &'a str },
    Request { project: &'a str, intent: Intent },
    ListEnv { project: &'a str },
    SetEnv { project: &'a str, key: &'a str },
    UnsetEnv { project: &'a str, key: &'a str },
    ListEvents { project: &'a str },
    ListKeys,
    AddKey,
    RemoveKey { fingerprint: &'a str },
    SetPassword,
    ShowSettings,
    SetConfig { key: &'a str },
    UnsetConfig { key: &'a str },
    ShowKubeconfig,
    SetKubeconfig,
    UnsetKubeconfig,
    Whoami,
    ListSessions { project: &'a str },
    RestartSession { project: &'a str },
    Attach { project: &'a str, read_only: bool },
    Logs { project: &'a str },
    ListAgents,
    Inbox,
    WaitAgent { project: &'a str },
    ListNotifications,
    MuteAgent { project: &'a str, muted: bool },
}

impl Action<'_> {
    /// A stable name for the audit record.
    pub fn name(&self) -> &'static str {
        match self {
            Action::ListProjects => "projects.list",
            Action::ShowProject { .. } => "project.show",
            Action::CreateProject { .. } => "project.create",
            Action::Request { intent, .. } => match intent {
                Intent::Start => "project.start",
                Intent::Stop => "project.stop",
                Intent::Delete => "project.delete",
                Intent::Retry => "project.retry",
            },
            Action::ListEnv { .. } => "env.list",
            Action::SetEnv { .. } => "env.set",
            Action::UnsetEnv { .. } => "env.unset",
            Action::ListEvents { .. } => "events.list",
            Action::ListKeys => "keys.list",
            Action::AddKey => "keys.add",
            Action::RemoveKey { .. } => "keys.remove",
            Action::SetPassword => "password.set",
            Action::ShowSettings => "settings.show",
            Action::SetConfig { .. } => "config.set",
            Action::UnsetConfig { .. } => "config.unset",
            Action::ShowKubeconfig => "kubeconfig.show",
            Action::SetKubeconfig => "kubeconfig.set",
            Action::UnsetKubeconfig => "kubeconfig.unset",
            Action::Whoami => "whoami",
            Action::ListSessions { .. } => "sessions.list",
            Action::RestartSession { .. } => "session.restart",
            Action::Attach {
                read_only: true, ..
            } => "session.view",
            Action::Attach { .. } => "session.attach",
            Action::Logs { .. } => "logs.follow",
            Action::ListAgents => "agents.list",
            Action::Inbox => "inbox.list",
            Action::WaitAgent { .. } => "agent.wait",
            Action::ListNotifications => "notifications.list",
            Action::MuteAgent { muted: true, .. } => "agent.mute",
            Action::MuteAgent { .. } => "agent.unmute",
        }
    }

    /// Whether the action changes anything (or opens a live session):
    /// those are the ones an audit trail keeps.
    pub fn is_change(&self) -> bool {
        !matches!(
            self,
            Action::ListProjects
                | Action::ShowProject { .. }
                | Action::ListEnv { .. }
                | Action::ListEvents { .. }
                | Action::ListKeys
                | Action::ShowSettings
                | Action::ShowKubeconfig
                | Action::Whoami
                | Action::ListSessions { .. }
                | Action::Logs { .. }
                | Action::ListAgents
                | Action::Inbox
                | Action::WaitAgent { .. }
                | Action::ListNotifications
        )
    }

    /// What the action is about, as the actor named it.
    pub fn target(&self) -> Option<&str> {
        match *self {
            Action::ShowProject { project }
            | Action::Request { project, .. }
            | Action::ListEnv { project }
            | Action::ListEvents { project }
            | Action::ListSessions { project }
            | Action::RestartSession { project }
            | Action::Attach { project, .. }
            | Action::Logs { project }
            | Action::WaitAgent { project }
            | Action::MuteAgent { project, .. } => Some(project),
            Action::SetEnv { project, .. } | Action::UnsetEnv { project, .. } => Some(project),
            Action::CreateProject { name } => Some(name),
            Action::RemoveKey { fingerprint } => Some(fingerprint),
            Action::SetConfig { key } | Action::UnsetConfig { key } => Some(key),
            _ => None,
        }
    }
}

/// May `actor` perform `action`? Pure: everything it needs is in its
/// arguments. Tenant scoping itself is the store's (every query is by the
/// owner's id), so a user never reaches another's rows whatever this says.
pub fn authorize(actor: &Actor, action: &Action<'_>) -> Result<(), ConsoleError> {
    // A user disabled by an operator keeps no way to act, even through a
    // connection that was open before (the operator acts for them still).
    if actor.user.disabled_at.is_some() && !actor.operator {
        return Err(ConsoleError::refused(format!(
            "the account {} is disabled: ask an operator",
            actor.user.username
        )));
    }
    let _ = action;
    Ok(())
}

/// Records what an actor did and how it ended. Today the record is a
/// structured log line (target `kiln::audit`); it never holds a secret.
pub fn audit<T>(actor: &Actor, action: &Action<'_>, result: &Result<T, ConsoleError>) {
    if !action.is_change() && result.is_ok() {
        return;
    }
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    tracing::info!(
        target: "kiln::audit",
        user = %actor.user.username,
        operator = actor.operator,
        front = actor.front.as_str(),
        action = action.name(),
        target = action.target().map(|t| crate::model::naming::printable(t, 100)).unwrap_or_default(),
        outcome,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(disabled: bool, operator: bool) -> Actor {
        Actor {
            user: User {
                id: uuid::Uuid::nil(),
                username: "alice".into(),
                role: "member".into(),
                disabled_at: disabled.then(chrono::Utc::now),
                created_at: chrono::Utc::now(),
            },
            front: Front::Exec,
            operator,
        }
    }

    #[test]
    fn a_disabled_user_is_refused_every_action_but_the_operator_is_not() {
        let a = Action::Request {
            project: "blog",
            intent: Intent::Start,
        };
        assert!(authorize(&actor(false, false), &a).is_ok());
        let refused = authorize(&actor(true, false), &Action::ListProjects).unwrap_err();
        assert!(refused.to_string().contains("disabled"), "{refused}");
        assert!(authorize(&actor(true, true), &a).is_ok());
    }

    #[test]
    fn events_name_the_operator_when_it_acts() {
        assert_eq!(actor(false, false).event_name(), "alice");
        assert_eq!(actor(false, true).event_name(), "operator");
    }

    #[test]
    fn reads_are_not_changes_and_attaching_is() {
        assert!(!Action::ListProjects.is_change());
        assert!(
            Action::Attach {
                project: "p",
                read_only: true
            }
            .is_change()
        );
        assert_eq!(
            Action::Attach {
                project: "p",
                read_only: true
            }
            .name(),
            "session.view"
        );
        assert_eq!(
            Action::SetEnv {
                project: "p",
                key: "K"
            }
            .target(),
            Some("p")
        );
    }
}
