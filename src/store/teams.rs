//! Teams and their members. A team is an account with role `team`
//! (migration 0005): its projects are keyed by its id like a user's.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::users::check_new_username;
use super::{Store, StoreError, StoreResult, conflict_or, parse};
use crate::model::team::TeamRole;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Team {
    pub id: Uuid,
    pub name: String,
    pub members: i64,
    pub projects: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Member {
    pub username: String,
    pub role: TeamRole,
}

/// A team one user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub team_id: Uuid,
    pub team: String,
    pub role: TeamRole,
}

fn no_such_team(name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no such team: {}",
        crate::model::naming::printable(name, 40)
    ))
}

impl Store {
    pub async fn create_team(&self, name: &str) -> StoreResult<Team> {
        let name = check_new_username(name)?;
        let row = sqlx::query(
            "INSERT INTO users (username, role) VALUES ($1, 'team') RETURNING id, created_at",
        )
        .bind(&name)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!("the name {name} is taken by a user or a team")
            })
        })?;
        Ok(Team {
            id: row.try_get("id")?,
            name,
            members: 0,
            projects: 0,
            created_at: row.try_get("created_at")?,
        })
    }

    /// Deletes a team that has no projects left (their sandboxes must be
    /// torn down first, which only deleting them does).
    pub async fn delete_team(&self, name: &str) -> StoreResult<()> {
        let team = self.require_team(name).await?;
        let mut tx = self.pool.begin().await?;
        let projects: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE user_id = $1")
            .bind(team)
            .fetch_one(&mut *tx)
            .await?;
        if projects > 0 {
            return Err(StoreError::Conflict(format!(
                "team {name} still has {projects} project(s): delete them first"
            )));
        }
        sqlx::query("DELETE FROM users WHERE id = $1 AND role = 'team'")
            .bind(team)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_teams(&self) -> StoreResult<Vec<Team>> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.created_at,
                    (SELECT count(*) FROM team_members m WHERE m.team_id = u.id) AS members,
                    (SELECT count(*) FROM projects p WHERE p.user_id = u.id) AS projects
             FROM users u WHERE u.role = 'team' ORDER BY u.username",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Team {
                    id: r.try_get("id")?,
                    name: r.try_get("username")?,
                    members: r.try_get("members")?,
                    projects: r.try_get("projects")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The team's id; a user's name is no team.
    pub async fn require_team(&self, name: &str) -> StoreResult<Uuid> {
        sqlx::query_scalar(
            "SELECT id FROM users WHERE lower(username) = lower($1) AND role = 'team'",
        )
        .bind(name.trim())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| no_such_team(name))
    }

    /// Adds `username` to the team with `role`, or changes their role.
    pub async fn set_member(&self, team: Uuid, username: &str, role: TeamRole) -> StoreResult<()> {
        let user: Uuid = sqlx::query_scalar(
            "SELECT id FROM users WHERE lower(username) = lower($1) AND role <> 'team'",
        )
        .bind(username.trim())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "no such user: {}",
                crate::model::naming::printable(username, 40)
            ))
        })?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(team)
        .bind(user)
        .bind(role.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_member(&self, team: Uuid, username: &str) -> StoreResult<()> {
        let gone = sqlx::query(
            "DELETE FROM team_members m USING users u
             WHERE m.team_id = $1 AND m.user_id = u.id AND lower(u.username) = lower($2)",
        )
        .bind(team)
        .bind(username.trim())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if gone == 0 {
            return Err(StoreError::NotFound(format!(
                "{} is not a member of this team",
                crate::model::naming::printable(username, 40)
            )));
        }
        Ok(())
    }

    pub async fn team_members(&self, team: Uuid) -> StoreResult<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT u.username, m.role FROM team_members m JOIN users u ON u.id = m.user_id
             WHERE m.team_id = $1 ORDER BY u.username",
        )
        .bind(team)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    username: r.try_get("username")?,
                    role: parse(r.try_get("role")?)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The user's role in the team named `team`, if they are a member.
    pub async fn membership(&self, user: Uuid, team: &str) -> StoreResult<Option<Membership>> {
        let row = sqlx::query(
            "SELECT t.id, t.username, m.role FROM users t
             JOIN team_members m ON m.team_id = t.id AND m.user_id = $1
             WHERE lower(t.username) = lower($2) AND t.role = 'team'",
        )
        .bind(user)
        .bind(team.trim())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| membership_from_row(&r)).transpose()
    }

    /// Every team the user belongs to, by name.
    pub async fn teams_of(&self, user: Uuid) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT t.id, t.username, m.role FROM team_members m
             JOIN users t ON t.id = m.team_id WHERE m.user_id = $1 ORDER BY t.username",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(membership_from_row).collect()
    }
}

fn membership_from_row(r: &sqlx::postgres::PgRow) -> StoreResult<Membership> {
    Ok(Membership {
        team_id: r.try_get("id")?,
        team: r.try_get("username")?,
        role: parse(r.try_get("role")?)?,
    })
}
