//! The operator's console (`kiln user …`, `kiln project … --user U`,
//! `kiln status`): managing users, and acting on a user's projects through
//! the same [`UserConsole`] the user has, marked as the operator's doing.

use crate::store::status::ReplicaStatus;
use crate::store::users::User;

use super::{Actor, Console, ConsoleError, ConsoleResult, Front, UserConsole};

/// A user to create. The key line, when given, is registered with the
/// user; if it is refused, nothing is created.
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password: Option<&'a str>,
    pub admin: bool,
    pub ssh_key: Option<&'a str>,
}

pub struct OperatorConsole {
    console: Console,
}

impl OperatorConsole {
    pub(super) fn new(console: Console) -> Self {
        OperatorConsole { console }
    }

    pub(super) fn store(&self) -> &crate::store::Store {
        &self.console.store
    }

    /// The built-in templates this console offers.
    pub(super) fn catalog(&self) -> &super::Catalog {
        &self.console.templates
    }

    /// An operator's change in the audit trail, under the user it concerns.
    pub(super) async fn record(
        &self,
        user_id: Option<uuid::Uuid>,
        username: &str,
        action: &str,
        project: Option<&str>,
        detail: &str,
    ) {
        let record = crate::store::audit::NewAuditRecord {
            user_id,
            username,
            operator: true,
            front: Front::Cli.as_str(),
            action,
            project,
            result: "ok",
            detail,
            ..Default::default()
        };
        self.console.write_audit(&record).await;
    }

    /// Acts on `username`'s projects as the operator.
    pub async fn for_user(&self, username: &str) -> ConsoleResult<UserConsole> {
        let user = self.console.store.require_user(username).await?;
        Ok(UserConsole {
            console: self.console.clone(),
            actor: Actor {
                user,
                front: Front::Cli,
                operator: true,
                source: None,
            },
            teams: Default::default(),
        })
    }

    pub async fn add_user(&self, new: NewUser<'_>) -> ConsoleResult<User> {
        let store = &self.console.store;
        if new.password.is_none() && new.ssh_key.is_none() {
            return Err(ConsoleError::invalid(
                "password",
                "a user needs a way in: give a password or an SSH key",
            ));
        }
        crate::store::users::check_new_username(new.username)?;
        if let Some(line) = new.ssh_key {
            // Checked before anything is created.
            crate::store::keys::parse_public_key(line)?;
        }
        let user = store
            .create_user(new.username, new.password, new.admin)
            .await?;
        if let Some(line) = new.ssh_key
            && let Err(e) = store.add_ssh_key(user.id, line).await
        {
            // Keep "nothing was created" true: undo the user.
            let _ = store.delete_user(user.id).await;
            return Err(match ConsoleError::from(e) {
                ConsoleError::Internal => ConsoleError::Internal,
                e => ConsoleError::refused(format!(
                    "registering the SSH key; nothing was created: {e}"
                )),
            });
        }
        self.record(Some(user.id), &user.username, "user.add", None, "")
            .await;
        Ok(user)
    }

    /// Sets the quota of a user (`team: false`) or a team; `None`: no limit.
    pub async fn set_quota(
        &self,
        name: &str,
        team: bool,
        limits: crate::model::quota::Limits,
    ) -> ConsoleResult<(crate::model::quota::Limits, crate::model::quota::Usage)> {
        let store = &self.console.store;
        let owner = store
            .find_user(name)
            .await?
            .filter(|u| (u.role == "team") == team)
            .ok_or_else(|| {
                ConsoleError::NotFound(format!(
                    "no such {}: {}",
                    if team { "team" } else { "user" },
                    crate::model::naming::printable(name, 40)
                ))
            })?;
        for (flag, v) in [
            ("--projects", limits.projects),
            ("--running", limits.running),
        ] {
            if v.is_some_and(|n| !(0..=1_000_000).contains(&n)) {
                return Err(ConsoleError::invalid(
                    "quota",
                    format!("{flag} takes 0 to 1000000"),
                ));
            }
        }
        store.set_quota(owner.id, limits).await?;
        let shown = |v: Option<i64>, f: fn(i64) -> String| v.map_or("none".to_string(), f);
        let detail = format!(
            "projects={} running={} cpu={} memory={}",
            shown(limits.projects, |n| n.to_string()),
            shown(limits.running, |n| n.to_string()),
            shown(limits.cpu_millis, crate::model::quota::show_cpu),
            shown(limits.memory_bytes, crate::model::quota::show_memory),
        );
        self.record(Some(owner.id), &owner.username, "quota.set", None, &detail)
            .await;
        Ok(store.quota_usage(owner.id).await?)
    }

    pub async fn users(&self) -> ConsoleResult<Vec<User>> {
        Ok(self.console.store.list_users().await?)
    }

    pub async fn disable_user(&self, username: &str) -> ConsoleResult<()> {
        self.console.store.disable_user(username).await?;
        self.record(None, username, "user.disable", None, "").await;
        Ok(())
    }

    /// What the replicas are doing: leases, queue depth, recent errors.
    pub async fn status(&self) -> ConsoleResult<ReplicaStatus> {
        Ok(self.console.store.replica_status().await?)
    }
}
