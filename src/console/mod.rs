//! Every user action, once (DESIGN §1). The dashboard, the exec commands
//! and the operator CLI are front ends over this layer: they parse, call a
//! method of [`UserConsole`] (or [`OperatorConsole`]), and render its typed
//! result or its [`ConsoleError`]. No front end touches the store or a
//! driver itself.
//!
//! Every method passes the one gate ([`gate`]): `authorize` before the
//! work and `audit` after it. Rules that apply to every action (roles,
//! quotas, the audit table) are added there, once.
//!
//! Intents are recorded and the call returns; the reconcile loop does the
//! work. Attach and logs are live streams straight from a driver, opened
//! here after the same checks.

mod account;
pub mod admin;
pub mod agents;
mod audit;
pub mod error;
pub mod gate;
mod idle;
mod kubeconfig;
mod operator;
mod projects;
mod repos;
mod sessions;
mod teams;
mod templates;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use crate::driver::{SandboxLogs, SessionAttach};
use crate::k8s::kubeconfig::ApiServerPolicy;
use crate::store::Store;
use crate::store::users::User;

use crate::model::team::TeamRole;
use crate::store::projects::ProjectView;
pub use account::{ConfigSet, Quotas, Settings, TeamQuota, Whoami};
pub use admin::{AdminConsole, AdminOverview};
pub use agents::Waited;
pub use error::{ConsoleError, ConsoleResult};
pub use gate::{Access, Action, Actor, Front};
pub use operator::{NewUser, OperatorConsole};
pub use projects::{ProjectDetail, ProjectOverview};
pub use repos::{NewProject, RepoPolicy};
pub use sessions::{Attached, Restarted, Revoked, next_session, next_session_name};
pub use templates::{Catalog, TemplateInfo, TemplateScope, builtin_catalog};

/// The console's services, shared by every session of a server (cheap to clone).
#[derive(Clone)]
pub struct Console {
    store: Store,
    /// Reaches sandbox sessions (`None`: attach is unavailable here).
    sessions: Option<Arc<dyn SessionAttach>>,
    /// Follows sandbox logs (`None`: logs are unavailable here).
    logs: Option<Arc<dyn SandboxLogs>>,
    /// Where a tenant's kubeconfig may point when it is checked.
    api_servers: ApiServerPolicy,
    /// Changes to rows, for cutting an attach whose access is revoked and
    /// waking `wait` (`None`: attaches are not watched; `wait` polls).
    feed: Option<Arc<crate::store::notify::ChangeFeed>>,
    /// Where users' webhooks may point (`agents.webhook_allow_private_hosts`).
    webhook_hosts: ApiServerPolicy,
    /// The idle policy: per-project settings and extensions are checked against it.
    idle: crate::model::idle::IdlePolicy,
    /// Which repositories projects may start from.
    repos: RepoPolicy,
    /// The built-in templates (and the operator's directory of them).
    templates: Catalog,
}

impl Console {
    pub fn new(
        store: Store,
        sessions: Option<Arc<dyn SessionAttach>>,
        logs: Option<Arc<dyn SandboxLogs>>,
    ) -> Self {
        Console {
            store,
            sessions,
            logs,
            api_servers: ApiServerPolicy::default(),
            feed: None,
            webhook_hosts: ApiServerPolicy::default(),
            idle: crate::model::idle::IdlePolicy::default(),
            repos: RepoPolicy::default(),
            templates: builtin_catalog(),
        }
    }

    /// The same console, under the server's idle policy (`[idle]`).
    pub fn with_idle(mut self, policy: crate::model::idle::IdlePolicy) -> Self {
        self.idle = policy;
        self
    }

    /// The same console, detaching a team member's attaches the moment
    /// they leave the team (it follows `feed` for membership changes).
    pub fn with_feed(mut self, feed: Arc<crate::store::notify::ChangeFeed>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// The same console, checking tenants' kubeconfigs against `policy`
    /// (`kubernetes.allow_private_api_servers`) instead of the default,
    /// which refuses private addresses.
    pub fn with_api_servers(mut self, policy: ApiServerPolicy) -> Self {
        self.api_servers = policy;
        self
    }

    /// The same console, letting users' webhooks point at loopback,
    /// link-local and private addresses (`agents.webhook_allow_private_hosts`).
    pub fn with_webhook_hosts(mut self, policy: ApiServerPolicy) -> Self {
        self.webhook_hosts = policy;
        self
    }

    /// The same console, letting projects clone from private hosts when
    /// `policy` says so (`git.allow_private_hosts`).
    pub fn with_repos(mut self, policy: RepoPolicy) -> Self {
        self.repos = policy;
        self
    }

    /// The same console, offering `catalog` as the built-in templates.
    pub fn with_templates(mut self, catalog: Catalog) -> Self {
        self.templates = catalog;
        self
    }

    /// The console as `user`, signed in through `front`.
    pub fn as_user(&self, user: User, front: Front) -> UserConsole {
        UserConsole {
            console: self.clone(),
            actor: Actor {
                user,
                front,
                operator: false,
                source: None,
            },
            teams: Arc::default(),
        }
    }

    /// Appends to the audit trail, and logs the same line. A failed write
    /// is logged, not returned: the action it records has happened.
    pub(crate) async fn write_audit(&self, record: &crate::store::audit::NewAuditRecord<'_>) {
        gate::log_audit(record);
        if let Err(e) = self.store.append_audit(record).await {
            tracing::error!(error = %e, action = record.action, "could not append to the audit trail");
        }
    }

    /// The operator's console (the `kiln` command line).
    pub fn operator(&self) -> OperatorConsole {
        OperatorConsole::new(self.clone())
    }

    /// Whether sandbox sessions can be reached from this server.
    pub fn has_sessions(&self) -> bool {
        self.sessions.is_some()
    }

    /// Whether sandbox logs can be followed from this server.
    pub fn has_logs(&self) -> bool {
        self.logs.is_some()
    }
}

/// Whose thing an action is about: the owner whose rows it reaches (the
/// actor, or a team's account), the project's name within that owner, and
/// the actor's standing.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub owner: uuid::Uuid,
    pub name: String,
    /// The team's name, for a team's project or the team itself.
    pub team: Option<String>,
    pub access: Access,
}

impl Scope {
    /// How the actor names the project: `TEAM/NAME` for a team's.
    pub fn shown(&self, name: &str) -> String {
        match &self.team {
            Some(t) => crate::model::team::qualified(t, name),
            None => name.to_string(),
        }
    }

    /// A project as the actor addresses it: a team's is `TEAM/NAME` (and
    /// `TEAM/SLUG`), so every hint it prints works as typed.
    pub fn present(&self, mut view: ProjectView) -> ProjectView {
        if self.team.is_some() {
            view.project.name = self.shown(&view.project.name);
            view.project.slug = self.shown(&view.project.slug);
        }
        if let Access::Team(role) = self.access {
            view.team_role = Some(role);
        }
        view
    }
}

/// The console as one actor: every method is one action, scoped to the
/// actor's user, passed through the gate.
#[derive(Clone)]
pub struct UserConsole {
    console: Console,
    actor: Actor,
    /// The accounts of the teams the actor was in at the last project list,
    /// so a dashboard knows which changes concern it.
    teams: Arc<std::sync::Mutex<Vec<uuid::Uuid>>>,
}

impl UserConsole {
    /// The same console, recording `source` as where the actor connected from.
    pub fn from_address(mut self, source: Option<std::net::IpAddr>) -> Self {
        self.actor.source = source;
        self
    }

    /// Whether a change to rows of `owner` concerns this actor's screens:
    /// their own, or a team's they were in at the last project list.
    pub fn concerns(&self, owner: uuid::Uuid) -> bool {
        owner == self.user_id()
            || self
                .teams
                .lock()
                .map(|t| t.contains(&owner))
                .unwrap_or(false)
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn user(&self) -> &User {
        &self.actor.user
    }

    fn store(&self) -> &Store {
        &self.console.store
    }

    fn user_id(&self) -> uuid::Uuid {
        self.actor.user.id
    }

    fn own(&self, name: &str) -> Scope {
        Scope {
            owner: self.user_id(),
            name: name.to_string(),
            team: None,
            access: Access::Own,
        }
    }

    /// The actor's role in the team named `team`: a member's own, an
    /// admin's (or the operator's) as owner; `None` for anyone else, to
    /// whom the team does not exist.
    async fn team_access(
        &self,
        team: &str,
    ) -> ConsoleResult<Option<(uuid::Uuid, String, TeamRole)>> {
        let store = self.store();
        if let Some(m) = store.membership(self.user_id(), team).await? {
            return Ok(Some((m.team_id, m.team, m.role)));
        }
        if self.actor.user.role == "admin" || self.actor.operator {
            return Ok(match store.require_team(team).await {
                Ok(id) => Some((id, team.trim().to_ascii_lowercase(), TeamRole::Owner)),
                Err(crate::store::StoreError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            });
        }
        Ok(None)
    }

    /// Whose an action's subject is. `TEAM/NAME` names a team's project
    /// only for the team's members; for anyone else it is a name of their
    /// own, which does not exist: exactly what a missing project answers.
    async fn resolve(&self, subject: gate::Subject<'_>) -> ConsoleResult<Scope> {
        match subject {
            gate::Subject::Own => Ok(self.own("")),
            gate::Subject::Project(p) => match crate::model::team::split_ref(p) {
                Some((team, name)) => Ok(match self.team_access(team).await? {
                    Some((owner, team, role)) => Scope {
                        owner,
                        name: name.trim().to_string(),
                        team: Some(team),
                        access: Access::Team(role),
                    },
                    None => self.own(p),
                }),
                None => Ok(self.own(p)),
            },
            gate::Subject::Team(t) => match self.team_access(t).await? {
                Some((owner, team, role)) => Ok(Scope {
                    owner,
                    name: String::new(),
                    team: Some(team),
                    access: Access::Team(role),
                }),
                None => Err(ConsoleError::NotFound(format!(
                    "no such team: {}",
                    crate::model::naming::printable(t, 40)
                ))),
            },
        }
    }

    /// An action on the actor's own account (no project or team in it).
    async fn gated<T>(
        &self,
        action: Action<'_>,
        work: impl Future<Output = ConsoleResult<T>>,
    ) -> ConsoleResult<T> {
        debug_assert_eq!(action.subject(), gate::Subject::Own, "{action:?}");
        self.gated_in(action, |_| work).await
    }

    /// The gate's decision for `action`, before any work: whose subject it
    /// is, and whether the actor may. (`kiln bench teams` times this.)
    pub(crate) async fn check(&self, action: &Action<'_>) -> ConsoleResult<Scope> {
        let scope = self.resolve(action.subject()).await?;
        gate::authorize(&self.actor, action, scope.access)?;
        Ok(scope)
    }

    /// The one path of every action: find whose subject it is, authorize,
    /// do the work in that scope, audit.
    async fn gated_in<T, F, Fut>(&self, action: Action<'_>, work: F) -> ConsoleResult<T>
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future<Output = ConsoleResult<T>>,
    {
        // Every line logged during the action names who and which project
        // (by name as typed: the console sees names, not ids).
        let span = tracing::info_span!(
            "action",
            user_id = %self.actor.user.id,
            project = action.target().map(|t| crate::model::naming::printable(t, 100)),
        );
        let decided = async {
            let scope = self.check(&action).await?;
            // A team's missing project is named as the actor typed it
            // (`TEAM/NAME`), word for word what anyone else is told.
            let in_team = scope.team.is_some();
            match (work(scope).await, action.subject()) {
                (Err(ConsoleError::NotFound(m)), gate::Subject::Project(p))
                    if in_team && m.starts_with("no such project") =>
                {
                    Err(crate::store::project_lock::no_such_project(p).into())
                }
                (result, _) => result,
            }
        };
        let result = tracing::Instrument::instrument(decided, span.clone()).await;
        if let Some(record) = gate::audit_record(&self.actor, &action, &result) {
            tracing::Instrument::instrument(self.console.write_audit(&record), span).await;
        }
        crate::ops::metrics::console_action(
            action.name(),
            self.actor.front.as_str(),
            result.as_ref().map_or_else(|e| e.kind(), |_| "ok"),
        );
        result
    }
}
