//! Projects: list, show, create, intents (start/stop/delete/retry), env
//! and events.

use crate::driver::{AppEndpoint, SessionInfo};
use crate::model::intent::Intent;
use crate::model::{ProjectStatus, ResourceStatus};
use crate::store::env::EnvVar;
use crate::store::events::Event;
use crate::store::projects::ProjectView;

use super::{Action, ConsoleResult, UserConsole};

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
}

impl UserConsole {
    pub async fn projects(&self) -> ConsoleResult<Vec<ProjectView>> {
        self.gated(Action::ListProjects, async {
            Ok(self.store().list_projects(self.user_id()).await?)
        })
        .await
    }

    /// One project, its variables and its newest `events`.
    pub async fn project(&self, name: &str, events: i64) -> ConsoleResult<ProjectOverview> {
        self.gated(Action::ShowProject { project: name }, async {
            let view = self.store().find_project(self.user_id(), name).await?;
            let env = self
                .store()
                .list_env(self.user_id(), &view.project.slug)
                .await?;
            let events = self
                .store()
                .list_events(self.user_id(), view.project.id, events)
                .await?;
            Ok(ProjectOverview { view, env, events })
        })
        .await
    }

    /// What the dashboard's detail screen shows, sessions included (best
    /// effort: a detail screen without its session list is still useful).
    pub async fn project_detail(&self, name: &str) -> ConsoleResult<ProjectDetail> {
        self.gated(Action::ShowProject { project: name }, async {
            let (store, user) = (self.store(), self.user_id());
            let view = store.find_project(user, name).await?;
            let env = store.list_env(user, &view.project.slug).await?;
            let events = store
                .list_events(user, view.project.id, DETAIL_EVENTS)
                .await?;
            let database_url = store.database_url(user, view.project.id).await?;
            let running = super::sessions::sandbox_ref(&view, user)
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
            Ok(ProjectDetail {
                view,
                env,
                events,
                database_url,
                sessions,
                app,
            })
        })
        .await
    }

    /// Creates a project (a sandbox and a database heading for RUNNING).
    pub async fn create(&self, name: &str, description: &str) -> ConsoleResult<ProjectView> {
        self.gated(Action::CreateProject { name }, async {
            let p = self
                .store()
                .create_project(self.user_id(), name, description, self.actor.event_name())
                .await?;
            Ok(self.store().find_project(self.user_id(), &p.slug).await?)
        })
        .await
    }

    /// Records an intent; the project's status right after it.
    pub async fn request(&self, name: &str, intent: Intent) -> ConsoleResult<ProjectStatus> {
        self.gated(
            Action::Request {
                project: name,
                intent,
            },
            async {
                Ok(self
                    .store()
                    .record_intent(self.user_id(), name, intent, self.actor.event_name())
                    .await?)
            },
        )
        .await
    }

    /// The newest `limit` events of a project, oldest first.
    pub async fn events(&self, name: &str, limit: i64) -> ConsoleResult<Vec<Event>> {
        self.gated(Action::ListEvents { project: name }, async {
            let view = self.store().find_project(self.user_id(), name).await?;
            Ok(self
                .store()
                .list_events(self.user_id(), view.project.id, limit)
                .await?)
        })
        .await
    }

    pub async fn env(&self, name: &str) -> ConsoleResult<Vec<EnvVar>> {
        self.gated(Action::ListEnv { project: name }, async {
            Ok(self.store().list_env(self.user_id(), name).await?)
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
        self.gated(Action::SetEnv { project: name, key }, async {
            Ok(self
                .store()
                .set_env(self.user_id(), name, key, value, secret)
                .await?)
        })
        .await
    }

    pub async fn unset_env(&self, name: &str, key: &str) -> ConsoleResult<()> {
        self.gated(Action::UnsetEnv { project: name, key }, async {
            Ok(self.store().unset_env(self.user_id(), name, key).await?)
        })
        .await
    }
}
