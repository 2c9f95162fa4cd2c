//! The one gate every console action passes: who asks ([`Actor`]), what
//! they ask for ([`Action`]), whether they may ([`authorize`], pure), and
//! the record of what happened ([`audit_record`]). Roles, quotas and the audit
//! table hook in here once, not once per action or per front end.

use crate::model::intent::Intent;
use crate::model::team::TeamRole;
use crate::store::audit::NewAuditRecord;
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
    /// The address the actor connected from, when known (SSH fronts).
    pub source: Option<std::net::IpAddr>,
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
    ShowProject {
        project: &'a str,
    },
    CreateProject {
        name: &'a str,
        team: Option<&'a str>,
    },
    Request {
        project: &'a str,
        intent: Intent,
    },
    ListEnv {
        project: &'a str,
    },
    SetEnv {
        project: &'a str,
        key: &'a str,
    },
    UnsetEnv {
        project: &'a str,
        key: &'a str,
    },
    ListEvents {
        project: &'a str,
    },
    ListKeys,
    AddKey,
    RemoveKey {
        fingerprint: &'a str,
    },
    SetPassword,
    ShowSettings,
    SetConfig {
        key: &'a str,
    },
    UnsetConfig {
        key: &'a str,
    },
    ShowKubeconfig,
    SetKubeconfig,
    UnsetKubeconfig,
    Whoami,
    /// The user's own quota and their teams'.
    ShowQuotas,
    ListSessions {
        project: &'a str,
    },
    RestartSession {
        project: &'a str,
    },
    Attach {
        project: &'a str,
        read_only: bool,
    },
    Logs {
        project: &'a str,
    },
    ListAgents,
    Inbox,
    WaitAgent {
        project: &'a str,
    },
    ListNotifications {
        all: bool,
    },
    ShowIdle {
        project: &'a str,
    },
    SetIdle {
        project: &'a str,
    },
    ExtendIdle {
        project: &'a str,
    },
    MuteAgent {
        project: &'a str,
        muted: bool,
    },
    ReadAudit,
    TeamMembers {
        team: &'a str,
    },
    TeamAdd {
        team: &'a str,
        user: &'a str,
        role: TeamRole,
    },
    TeamRemove {
        team: &'a str,
        user: &'a str,
    },
    /// The teams the actor may create projects in (the create dialog).
    ListTeams,
    /// The admin screen's data: every user, project and replica.
    AdminView,
    /// An admin's intent on any owner's project (`OWNER/NAME`).
    AdminRequest {
        project: &'a str,
        intent: Intent,
    },
    ListTemplates,
    ShowTemplate {
        name: &'a str,
    },
    SaveTemplate {
        name: &'a str,
        project: &'a str,
    },
    DeleteTemplate {
        name: &'a str,
    },
}

/// What an action is about, for finding whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// The actor's own account.
    Own,
    /// A project as named: `TEAM/NAME` for a team's, else the actor's own.
    Project(&'a str),
    /// A team by name (its members, or a project created in it).
    Team(&'a str),
}

/// The actor's standing toward an action's subject, found by the console
/// before [`authorize`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Their own account and projects.
    Own,
    /// A team's: the actor's role in it (an admin who is not a member acts
    /// as an owner).
    Team(TeamRole),
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
            Action::ShowQuotas => "quota.show",
            Action::ListSessions { .. } => "sessions.list",
            Action::RestartSession { .. } => "session.restart",
            Action::Attach {
                read_only: true, ..
            } => "session.view",
            Action::Attach { .. } => "session.attach",
            Action::Logs { .. } => "logs.follow",
            Action::ReadAudit => "audit.read",
            Action::TeamMembers { .. } => "team.members",
            Action::TeamAdd { .. } => "team.add",
            Action::TeamRemove { .. } => "team.remove",
            Action::ListTeams => "teams.list",
            Action::AdminView => "admin.view",
            Action::AdminRequest { intent, .. } => match intent {
                Intent::Start => "admin.project.start",
                Intent::Stop => "admin.project.stop",
                Intent::Delete => "admin.project.delete",
                Intent::Retry => "admin.project.retry",
            },
            Action::ListAgents => "agents.list",
            Action::Inbox => "inbox.list",
            Action::WaitAgent { .. } => "agent.wait",
            Action::ListNotifications { .. } => "notifications.list",
            Action::ShowIdle { .. } => "idle.show",
            Action::SetIdle { .. } => "idle.set",
            Action::ExtendIdle { .. } => "idle.extend",
            Action::MuteAgent { muted: true, .. } => "agent.mute",
            Action::MuteAgent { .. } => "agent.unmute",
            Action::ListTemplates => "templates.list",
            Action::ShowTemplate { .. } => "template.show",
            Action::SaveTemplate { .. } => "template.save",
            Action::DeleteTemplate { .. } => "template.delete",
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
                | Action::ShowQuotas
                | Action::ListSessions { .. }
                | Action::Logs { .. }
                | Action::ReadAudit
                | Action::TeamMembers { .. }
                | Action::ListAgents
                | Action::Inbox
                | Action::WaitAgent { .. }
                | Action::ListNotifications { .. }
                | Action::ListTeams
                | Action::AdminView
                | Action::ShowIdle { .. }
                | Action::ListTemplates
                | Action::ShowTemplate { .. }
        )
    }

    /// Whether only an admin may perform the action.
    pub fn needs_admin(&self) -> bool {
        matches!(self, Action::AdminView | Action::AdminRequest { .. })
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
            | Action::ShowIdle { project }
            | Action::SetIdle { project }
            | Action::ExtendIdle { project }
            | Action::MuteAgent { project, .. }
            | Action::AdminRequest { project, .. } => Some(project),
            Action::SetEnv { project, .. } | Action::UnsetEnv { project, .. } => Some(project),
            Action::CreateProject { name, .. } => Some(name),
            Action::TeamMembers { team }
            | Action::TeamAdd { team, .. }
            | Action::TeamRemove { team, .. } => Some(team),
            Action::RemoveKey { fingerprint } => Some(fingerprint),
            Action::SetConfig { key } | Action::UnsetConfig { key } => Some(key),
            Action::ShowTemplate { name }
            | Action::SaveTemplate { name, .. }
            | Action::DeleteTemplate { name } => Some(name),
            _ => None,
        }
    }
}

impl<'a> Action<'a> {
    /// Whose thing the action is about.
    pub fn subject(&self) -> Subject<'a> {
        match *self {
            Action::CreateProject { team: Some(t), .. } => Subject::Team(t),
            Action::CreateProject { team: None, .. } => Subject::Own,
            Action::TeamMembers { team }
            | Action::TeamAdd { team, .. }
            | Action::TeamRemove { team, .. } => Subject::Team(team),
            Action::ShowProject { project }
            | Action::Request { project, .. }
            | Action::ListEnv { project }
            | Action::SetEnv { project, .. }
            | Action::UnsetEnv { project, .. }
            | Action::ListEvents { project }
            | Action::ListSessions { project }
            | Action::RestartSession { project }
            | Action::Attach { project, .. }
            | Action::ShowIdle { project }
            | Action::SetIdle { project }
            | Action::ExtendIdle { project }
            | Action::Logs { project }
            | Action::WaitAgent { project }
            | Action::MuteAgent { project, .. }
            | Action::SaveTemplate { project, .. } => Subject::Project(project),
            _ => Subject::Own,
        }
    }

    /// The least team role the action needs on a team's project or team:
    /// viewers see projects, events and sessions and attach read-only;
    /// members do everything to projects; owners also manage members.
    pub fn team_role_needed(&self) -> TeamRole {
        match self {
            Action::ListProjects
            | Action::ShowProject { .. }
            | Action::ListEvents { .. }
            | Action::ListSessions { .. }
            | Action::ShowIdle { .. }
            | Action::WaitAgent { .. }
            | Action::Attach {
                read_only: true, ..
            }
            | Action::TeamMembers { .. } => TeamRole::Viewer,
            Action::TeamAdd { .. } | Action::TeamRemove { .. } => TeamRole::Owner,
            _ => TeamRole::Member,
        }
    }
}

/// May `actor` perform `action`, standing as `access` toward its subject?
/// Pure: everything it needs is in its arguments. Tenant scoping itself is
/// the store's (every query is by the owner's id), and a team the actor is
/// not in is never found, so this decides only among those who may see.
pub fn authorize(actor: &Actor, action: &Action<'_>, access: Access) -> Result<(), ConsoleError> {
    // A user disabled by an operator keeps no way to act, even through a
    // connection that was open before (the operator acts for them still).
    if actor.user.disabled_at.is_some() && !actor.operator {
        return Err(ConsoleError::refused(format!(
            "the account {} is disabled: ask an operator",
            actor.user.username
        )));
    }
    // Only the console's admin side builds these; a front shows them to
    // admins alone, so a refusal here means a front end got it wrong.
    if action.needs_admin() && actor.user.role != "admin" && !actor.operator {
        return Err(ConsoleError::refused(format!(
            "{} needs the admin role",
            action.name()
        )));
    }
    match access {
        Access::Own => Ok(()),
        Access::Team(role) => {
            let needed = action.team_role_needed();
            if role >= needed {
                Ok(())
            } else {
                Err(ConsoleError::refused(format!(
                    "you are a {role} of this team: {} needs the {needed} role (ask a team owner)",
                    action.name()
                )))
            }
        }
    }
}

/// Whether and what the audit trail keeps of an action: every change or
/// live session, and every action refused or failed (a probe of another
/// tenant's project is one). Successful reads are not kept. Pure; the
/// record holds names, never a value (an env set records its key).
pub fn audit_record<'a, T>(
    actor: &'a Actor,
    action: &'a Action<'_>,
    result: &Result<T, ConsoleError>,
) -> Option<NewAuditRecord<'a>> {
    if !action.is_change() && result.is_ok() {
        return None;
    }
    let (project, detail) = match *action {
        Action::SetEnv { project, key } | Action::UnsetEnv { project, key } => (Some(project), key),
        Action::SetConfig { key } | Action::UnsetConfig { key } => (None, key),
        Action::RemoveKey { fingerprint } => (None, fingerprint),
        _ => (action.target(), ""),
    };
    Some(NewAuditRecord {
        user_id: Some(actor.user.id),
        username: &actor.user.username,
        operator: actor.operator,
        front: actor.front.as_str(),
        source: actor.source,
        action: action.name(),
        project,
        result: match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        },
        detail,
        ..NewAuditRecord::default()
    })
}

/// The structured log line beside the audit row (target `kiln::audit`),
/// for operators who follow the log; it holds no more than the row.
pub fn log_audit(record: &NewAuditRecord<'_>) {
    tracing::info!(
        target: "kiln::audit",
        user = %record.username,
        operator = record.operator,
        front = record.front,
        source = ?record.source,
        action = record.action,
        target = record.project.map(|t| crate::model::naming::printable(t, 100)).unwrap_or_default(),
        detail = %crate::model::naming::printable(record.detail, 100),
        outcome = record.result,
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
            source: None,
        }
    }

    #[test]
    fn a_disabled_user_is_refused_every_action_but_the_operator_is_not() {
        let a = Action::Request {
            project: "blog",
            intent: Intent::Start,
        };
        assert!(authorize(&actor(false, false), &a, Access::Own).is_ok());
        let refused =
            authorize(&actor(true, false), &Action::ListProjects, Access::Own).unwrap_err();
        assert!(refused.to_string().contains("disabled"), "{refused}");
        assert!(authorize(&actor(true, true), &a, Access::Own).is_ok());
    }

    /// Every action × every team role: the role matrix.
    #[test]
    fn the_role_matrix() {
        use TeamRole::*;
        let a = actor(false, false);
        let p = "acme/blog";
        let ro = |read_only| Action::Attach {
            project: p,
            read_only,
        };
        let req = |intent| Action::Request { project: p, intent };
        // (action, least role allowed)
        let table: Vec<(Action, TeamRole)> = vec![
            (Action::ShowProject { project: p }, Viewer),
            (Action::ListEvents { project: p }, Viewer),
            (Action::ListSessions { project: p }, Viewer),
            (ro(true), Viewer),
            (Action::TeamMembers { team: "acme" }, Viewer),
            (ro(false), Member),
            (req(Intent::Start), Member),
            (req(Intent::Stop), Member),
            (req(Intent::Delete), Member),
            (req(Intent::Retry), Member),
            (
                Action::CreateProject {
                    name: "x",
                    team: Some("acme"),
                },
                Member,
            ),
            (Action::ListEnv { project: p }, Member),
            (
                Action::SetEnv {
                    project: p,
                    key: "K",
                },
                Member,
            ),
            (
                Action::UnsetEnv {
                    project: p,
                    key: "K",
                },
                Member,
            ),
            (Action::RestartSession { project: p }, Member),
            (Action::Logs { project: p }, Member),
            (
                Action::TeamAdd {
                    team: "acme",
                    user: "bob",
                    role: Viewer,
                },
                Owner,
            ),
            (
                Action::TeamRemove {
                    team: "acme",
                    user: "bob",
                },
                Owner,
            ),
        ];
        for (action, least) in table {
            for role in TeamRole::ALL {
                let allowed = authorize(&a, &action, Access::Team(role)).is_ok();
                assert_eq!(allowed, role >= least, "{action:?} as {role}");
            }
            // One's own things are one's own.
            assert!(authorize(&a, &action, Access::Own).is_ok());
        }
        let refused = authorize(&a, &req(Intent::Stop), Access::Team(Viewer)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "you are a viewer of this team: project.stop needs the member role (ask a team owner)"
        );
    }

    #[test]
    fn admin_actions_need_the_admin_role_whatever_the_standing() {
        let stop = Action::AdminRequest {
            project: "alice/blog",
            intent: Intent::Stop,
        };
        for action in [Action::AdminView, stop] {
            assert!(action.needs_admin());
            let refused = authorize(&actor(false, false), &action, Access::Own).unwrap_err();
            assert!(
                refused.to_string().contains("needs the admin role"),
                "{refused}"
            );
            let mut admin = actor(false, false);
            admin.user.role = "admin".into();
            assert!(authorize(&admin, &action, Access::Own).is_ok());
            // A disabled admin is refused like anyone disabled.
            admin.user.disabled_at = Some(chrono::Utc::now());
            assert!(authorize(&admin, &action, Access::Own).is_err());
        }
        assert!(stop.is_change() && !Action::AdminView.is_change());
        assert_eq!(stop.name(), "admin.project.stop");
        assert_eq!(stop.target(), Some("alice/blog"));
        assert!(!Action::ListTeams.needs_admin() && !Action::ListTeams.is_change());
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
