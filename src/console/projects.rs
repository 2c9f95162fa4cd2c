//! Projects: list, show, create, intents (start/stop/delete/retry), env
//! and events.

use crate::driver::{AppEndpoint, SessionInfo};
use crate::model::intent::Intent;
use crate::model::{ProjectStatus, ResourceStatus};
use crate::store::env::EnvVar;
use crate::store::events::Event;
use crate::store::projects::ProjectView;

use super::{Access, Action, ConsoleError, ConsoleResult, Scope, UserConsole};

/// How many events the dashboard's detail screen keeps.
const DETAIL_EVENTS: i64 = 100;
/// How long the detail screen's load waits for the sandbox's session list.
const DETAIL_SESSIONS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One project with its variables and its newest events (exec `project NAME`).
#[derive(Debug)]
pub struct ProjectOverview {
    pub view: ProjectView,
    pub env: Vec<EnvVar>,
    pub events: Vec<Event>,
}

/// Everything the dashboard's detail and env screens show for one project.
#[derive(Debug)]
pub struct ProjectDetail {
    pub view: ProjectView,
    pub env: Vec<EnvVar>,
    pub events: Vec<Event>,
    /// Connection string with the password; shown masked until the user asks.
    pub database_url: Option<String>,
    /// The sandbox's terminal sessions (empty when it is not running).
    pub sessions: Vec<SessionInfo>,
    /// Where its app is reachable from Kiln's host, when forwarded.
    pub app: Option<AppEndpoint>,
    /// Its idle stop: the setting, and when it stops if unused (best effort).
    pub idle: Option<crate::store::idle::IdleState>,
}

impl UserConsole {
    /// The actor's projects, then those of each of their teams (named
    /// `TEAM/NAME`, grouped by team).
    pub async fn projects(&self) -> ConsoleResult<Vec<ProjectView>> {
        self.gated(Action::ListProjects, async {
            let store = self.store();
            let mut all = store.list_projects(self.user_id()).await?;
            let teams = store.teams_of(self.user_id()).await?;
            if let Ok(mut known) = self.teams.lock() {
                *known = teams.iter().map(|m| m.team_id).collect();
            }
            for m in teams {
                let scope = Scope {
                    owner: m.team_id,
                    name: String::new(),
                    team: Some(m.team.clone()),
                    access: Access::Team(m.role),
                };
                let mut views = store.list_projects(m.team_id).await?;
                views.sort_by(|a, b| a.project.name.cmp(&b.project.name));
                all.extend(views.into_iter().map(|v| scope.present(v)));
            }
            Ok(all)
        })
        .await
    }

    /// One project, its variables and its newest `events`.
    pub async fn project(&self, name: &str, events: i64) -> ConsoleResult<ProjectOverview> {
        self.gated_in(Action::ShowProject { project: name }, |s| async move {
            let view = self.store().find_project(s.owner, &s.name).await?;
            let env = if sees_env(&s) {
                self.store().list_env(s.owner, &view.project.slug).await?
            } else {
                Vec::new()
            };
            let events = self
                .store()
                .list_events(s.owner, view.project.id, events)
                .await?;
            Ok(ProjectOverview {
                view: s.present(view),
                env,
                events,
            })
        })
        .await
    }

    /// What the dashboard's detail screen shows, sessions included (best
    /// effort: a detail screen without its session list is still useful).
    pub async fn project_detail(&self, name: &str) -> ConsoleResult<ProjectDetail> {
        self.gated_in(Action::ShowProject { project: name }, |s| async move {
            let (store, owner) = (self.store(), s.owner);
            let view = store.find_project(owner, &s.name).await?;
            // A viewer sees neither the variables nor the database's password.
            let (env, database_url) = if sees_env(&s) {
                (
                    store.list_env(owner, &view.project.slug).await?,
                    store.database_url(owner, view.project.id).await?,
                )
            } else {
                (Vec::new(), None)
            };
            let events = store
                .list_events(owner, view.project.id, DETAIL_EVENTS)
                .await?;
            let running = super::sessions::sandbox_ref(&view, owner)
                .filter(|(_, status)| *status == ResourceStatus::Running);
            // Bounded: a cluster that does not answer costs the screen its
            // session list (the detail screen polls it again), not the rest.
            let (sessions, app) = match (&self.console.sessions, running) {
                (Some(a), Some((r, _))) => {
                    let listed = async {
                        let sessions = a.sessions(&r).await.unwrap_or_default();
                        let app = a.app_endpoint(&r).await.ok().flatten();
                        (sessions, app)
                    };
                    tokio::time::timeout(DETAIL_SESSIONS_WAIT, listed)
                        .await
                        .unwrap_or_default()
                }
                _ => (Vec::new(), None),
            };
            let idle = store
                .idle_state(owner, view.project.id, &self.console.idle)
                .await
                .ok();
            Ok(ProjectDetail {
                idle,
                view: s.present(view),
                env,
                events,
                database_url,
                sessions,
                app,
            })
        })
        .await
    }

    /// Creates a project (a sandbox and a database heading for RUNNING),
    /// the actor's own or, with `team`, the team's.
    pub async fn create(
        &self,
        name: &str,
        description: &str,
        team: Option<&str>,
    ) -> ConsoleResult<ProjectView> {
        let new = super::NewProject {
            description: description.to_string(),
            team: team.map(str::to_string),
            ..Default::default()
        };
        self.create_from(name, &new).await
    }

    /// Records an intent; the project's status right after it.
    pub async fn request(&self, name: &str, intent: Intent) -> ConsoleResult<ProjectStatus> {
        let action = Action::Request {
            project: name,
            intent,
        };
        self.gated_in(action, |s| async move {
            Ok(self
                .store()
                .record_intent(s.owner, &s.name, intent, self.actor.event_name())
                .await?)
        })
        .await
    }

    /// The newest `limit` events of a project, oldest first.
    pub async fn events(&self, name: &str, limit: i64) -> ConsoleResult<Vec<Event>> {
        self.gated_in(Action::ListEvents { project: name }, |s| async move {
            let view = self.store().find_project(s.owner, &s.name).await?;
            Ok(self
                .store()
                .list_events(s.owner, view.project.id, limit)
                .await?)
        })
        .await
    }

    pub async fn env(&self, name: &str) -> ConsoleResult<Vec<EnvVar>> {
        self.gated_in(Action::ListEnv { project: name }, |s| async move {
            Ok(self.store().list_env(s.owner, &s.name).await?)
        })
        .await
    }

    /// Sets a variable; running sandboxes pick it up on their next sync.
    pub async fn set_env(
        &self,
        name: &str,
        key: &str,
        value: &str,
        secret: bool,
    ) -> ConsoleResult<()> {
        self.gated_in(Action::SetEnv { project: name, key }, |s| async move {
            Ok(self
                .store()
                .set_env(s.owner, &s.name, key, value, secret)
                .await?)
        })
        .await
    }

    pub async fn unset_env(&self, name: &str, key: &str) -> ConsoleResult<()> {
        self.gated_in(Action::UnsetEnv { project: name, key }, |s| async move {
            Ok(self.store().unset_env(s.owner, &s.name, key).await?)
        })
        .await
    }
}

/// A new project's name may not look like a team's project.
pub(super) fn check_new_name(name: &str) -> ConsoleResult<()> {
    if name.contains('/') {
        return Err(ConsoleError::invalid(
            "name",
            "a project name cannot contain '/': TEAM/NAME names a team's project \
             (create one with --team TEAM)",
        ));
    }
    Ok(())
}

/// Whether the actor sees a project's variables (a team's viewer does not).
fn sees_env(s: &Scope) -> bool {
    match s.access {
        Access::Own => true,
        Access::Team(role) => role >= crate::model::team::TeamRole::Member,
    }
}
