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
pub mod agents;
pub mod error;
pub mod gate;
mod kubeconfig;
mod operator;
mod projects;
mod sessions;

use std::future::Future;
use std::sync::Arc;

use crate::driver::{SandboxLogs, SessionAttach};
use crate::k8s::kubeconfig::ApiServerPolicy;
use crate::store::Store;
use crate::store::users::User;

pub use account::{ConfigSet, Settings, Whoami};
pub use agents::Waited;
pub use error::{ConsoleError, ConsoleResult};
pub use gate::{Action, Actor, Front};
pub use operator::{NewUser, OperatorConsole};
pub use projects::{ProjectDetail, ProjectOverview};
pub use sessions::{Attached, Restarted, next_session, next_session_name};

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
    /// The process's change feed, which wakes `wait` (`None`: it polls).
    changes: Option<Arc<crate::store::notify::ChangeFeed>>,
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
            changes: None,
        }
    }

    /// The same console, woken by `feed` where it waits for a change.
    pub fn with_changes(mut self, feed: Arc<crate::store::notify::ChangeFeed>) -> Self {
        self.changes = Some(feed);
        self
    }

    /// The same console, checking tenants' kubeconfigs against `policy`
    /// (`kubernetes.allow_private_api_servers`) instead of the default,
    /// which refuses private addresses.
    pub fn with_api_servers(mut self, policy: ApiServerPolicy) -> Self {
        self.api_servers = policy;
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
            },
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

/// The console as one actor: every method is one action, scoped to the
/// actor's user, passed through the gate.
#[derive(Clone)]
pub struct UserConsole {
    console: Console,
    actor: Actor,
}

impl UserConsole {
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

    /// The one path of every action: authorize, do the work, audit.
    async fn gated<T>(
        &self,
        action: Action<'_>,
        work: impl Future<Output = ConsoleResult<T>>,
    ) -> ConsoleResult<T> {
        let result = match gate::authorize(&self.actor, &action) {
            Ok(()) => work.await,
            Err(refused) => Err(refused),
        };
        gate::audit(&self.actor, &action, &result);
        result
    }
}
