//! The append-only history of each project: the detail screen and the audit trail.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Store, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Project,
    Sandbox,
    Database,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Project => "project",
            EventKind::Sandbox => "sandbox",
            EventKind::Database => "database",
        }
    }
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// `None` once the project is gone (its final event).
    pub project_id: Option<Uuid>,
    pub user_id: Uuid,
    pub kind: EventKind,
    pub resource: &'a str,
    pub from_status: Option<&'a str>,
    pub to_status: Option<&'a str>,
    pub message: &'a str,
    pub actor: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub resource: String,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub message: String,
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

/// Appends inside the caller's transaction, so history and state never disagree.
pub async fn append_event(conn: &mut PgConnection, e: &NewEvent<'_>) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (project_id, user_id, kind, resource, from_status, to_status, message, actor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.project_id)
    .bind(e.user_id)
    .bind(e.kind.as_str())
    .bind(e.resource)
    .bind(e.from_status)
    .bind(e.to_status)
    .bind(e.message)
    .bind(e.actor)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// The newest `limit` events of one of the user's projects, oldest first.
    pub async fn list_events(
        &self,
        user_id: Uuid,
        project_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT * FROM (
                SELECT resource, kind, from_status, to_status, message, actor, created_at
                FROM events WHERE user_id = $1 AND project_id = $2
                ORDER BY created_at DESC, id DESC LIMIT $3
             ) newest ORDER BY created_at",
        )
        .bind(user_id)
        .bind(project_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    resource: r.try_get("resource")?,
                    kind: r.try_get("kind")?,
                    from_status: r.try_get("from_status")?,
                    to_status: r.try_get("to_status")?,
                    message: r.try_get("message")?,
                    actor: r.try_get("actor")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
