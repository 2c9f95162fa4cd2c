//! The admin's side of the console: every user, every project of every
//! user and team, the replicas with their leases and the queue, and an
//! intent (stop, retry) on any project, audited as the admin. It exists
//! only for a user whose role is admin: [`UserConsole::admin`] is `None`
//! for anyone else, so no front end can even name it for them.

use serde::Serialize;

use crate::model::ProjectStatus;
use crate::model::intent::Intent;
use crate::model::naming::printable;
use crate::store::admin::{ProjectOverview, UserOverview};
use crate::store::status::LeaseHolder;

use super::{Action, ConsoleError, ConsoleResult, UserConsole};

/// The replicas as the admin screen shows them.
#[derive(Debug, Clone, Serialize)]
pub struct Replicas {
    /// Each replica holding leases, with how many and until when.
    pub lease_holders: Vec<LeaseHolder>,
    /// Resources due for work now and not leased.
    pub queue_depth: i64,
}

/// Everything the admin screen shows, loaded at once.
#[derive(Debug, Clone)]
pub struct AdminOverview {
    pub users: Vec<UserOverview>,
    pub projects: Vec<ProjectOverview>,
    pub replicas: Replicas,
}

/// The console as an admin (cheap to clone).
#[derive(Clone)]
pub struct AdminConsole {
    console: UserConsole,
}

impl UserConsole {
    /// The admin side, for an admin (not disabled); `None` for anyone else.
    pub fn admin(&self) -> Option<AdminConsole> {
        let user = &self.actor.user;
        (user.role == "admin" && user.disabled_at.is_none()).then(|| AdminConsole {
            console: self.clone(),
        })
    }
}

impl AdminConsole {
    pub async fn users(&self) -> ConsoleResult<Vec<UserOverview>> {
        let c = &self.console;
        c.gated(Action::AdminView, async {
            Ok(c.store().users_overview().await?)
        })
        .await
    }

    pub async fn projects(&self) -> ConsoleResult<Vec<ProjectOverview>> {
        let c = &self.console;
        c.gated(Action::AdminView, async {
            Ok(c.store().projects_overview().await?)
        })
        .await
    }

    pub async fn replicas(&self) -> ConsoleResult<Replicas> {
        let c = &self.console;
        c.gated(Action::AdminView, async {
            let s = c.store().replica_status().await?;
            Ok(Replicas {
                lease_holders: s.lease_holders,
                queue_depth: s.queue_depth,
            })
        })
        .await
    }

    /// The whole admin screen.
    pub async fn overview(&self) -> ConsoleResult<AdminOverview> {
        Ok(AdminOverview {
            users: self.users().await?,
            projects: self.projects().await?,
            replicas: self.replicas().await?,
        })
    }

    /// Stops or retries any owner's project, named `OWNER/NAME` (the
    /// owner a user's or a team's name); the event and the audit record
    /// name the admin.
    pub async fn request(&self, project: &str, intent: Intent) -> ConsoleResult<ProjectStatus> {
        let c = &self.console;
        c.gated(Action::AdminRequest { project, intent }, async {
            if !matches!(intent, Intent::Stop | Intent::Retry) {
                return Err(ConsoleError::invalid(
                    "intent",
                    format!("an admin stops or retries a project; {intent} is the owner's to do"),
                ));
            }
            let missing = || {
                ConsoleError::NotFound(format!(
                    "no such project: {} (name it OWNER/NAME)",
                    printable(project, 100)
                ))
            };
            let (owner, name) = crate::model::team::split_ref(project).ok_or_else(missing)?;
            let owner = c.store().find_user(owner).await?.ok_or_else(missing)?;
            Ok(c.store()
                .record_intent(owner.id, name.trim(), intent, c.actor.event_name())
                .await?)
        })
        .await
    }
}
