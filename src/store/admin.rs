//! What the admin screen reads across every tenant: users with their
//! project counts and last sign-in, and every project with its owner and
//! its newest error. Only the console's admin side calls these.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreResult, parse};
use crate::model::ProjectStatus;

/// One user as the admin sees them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserOverview {
    pub username: String,
    pub role: String,
    pub disabled: bool,
    pub projects: i64,
    pub last_sign_in: Option<DateTime<Utc>>,
}

/// One project of any user or team.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProjectOverview {
    /// The owning account (a user's or a team's name).
    pub owner: String,
    pub team: bool,
    pub name: String,
    pub status: ProjectStatus,
    /// The newest error of its resources, if any has one.
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Every user (teams are owners, not users: they show with their
    /// projects), by name.
    pub async fn users_overview(&self) -> StoreResult<Vec<UserOverview>> {
        let rows = sqlx::query(
            "SELECT u.username, u.role, u.disabled_at IS NOT NULL AS disabled,
                    (SELECT count(*) FROM projects p WHERE p.user_id = u.id) AS projects,
                    (SELECT max(a.at) FROM audit a WHERE a.user_id = u.id
                       AND a.action = 'sign_in' AND a.result = 'ok') AS last_sign_in
             FROM users u WHERE u.role <> 'team' ORDER BY u.username",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UserOverview {
                    username: r.try_get("username")?,
                    role: r.try_get("role")?,
                    disabled: r.try_get("disabled")?,
                    projects: r.try_get("projects")?,
                    last_sign_in: r.try_get("last_sign_in")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Every project of every owner, by owner then name.
    pub async fn projects_overview(&self) -> StoreResult<Vec<ProjectOverview>> {
        let rows = sqlx::query(
            "SELECT u.username AS owner, u.role = 'team' AS team, p.name, p.status, p.updated_at,
                    (SELECT e.last_error FROM (
                        SELECT last_error, updated_at FROM sandboxes
                          WHERE project_id = p.id AND last_error IS NOT NULL
                        UNION ALL
                        SELECT last_error, updated_at FROM databases
                          WHERE project_id = p.id AND last_error IS NOT NULL) e
                     ORDER BY e.updated_at DESC LIMIT 1) AS last_error
             FROM projects p JOIN users u ON u.id = p.user_id
             ORDER BY u.username, lower(p.name)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProjectOverview {
                    owner: r.try_get("owner")?,
                    team: r.try_get("team")?,
                    name: r.try_get("name")?,
                    status: parse(r.try_get("status")?)?,
                    last_error: r.try_get("last_error")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
