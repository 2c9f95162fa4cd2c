//! The project lock every transaction that changes a project's resources or
//! variables takes first, so concurrent writers serialise and never deadlock.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{StoreError, StoreResult, parse};
use crate::model::ProjectStatus;

pub(crate) fn no_such_project(name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no such project: {}",
        crate::model::naming::printable(name, 60)
    ))
}

/// Locks one of the user's projects for the rest of the transaction. Every
/// transaction that changes a project's resources takes this lock first, so
/// concurrent writers serialise and never deadlock.
pub(crate) async fn lock_project_by_name(
    conn: &mut PgConnection,
    user_id: Uuid,
    name: &str,
) -> StoreResult<(Uuid, String, ProjectStatus)> {
    let row = sqlx::query(
        "SELECT id, slug, status FROM projects
         WHERE user_id = $1 AND (lower(name) = lower($2) OR slug = $2)
         ORDER BY (slug = $2) DESC LIMIT 1 FOR UPDATE",
    )
    .bind(user_id)
    .bind(name.trim())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| no_such_project(name))?;
    Ok((
        row.try_get("id")?,
        row.try_get("slug")?,
        parse(row.try_get("status")?)?,
    ))
}

/// Locks the projects of the sandboxes named by id or by resource name (one
/// list may be empty), in id order (the order the reconcile loop's outcome
/// writes take them), before a transaction writes those sandboxes' rows: a
/// writer that took a sandbox row first and its project after would
/// deadlock with an outcome write of the same project.
pub(crate) async fn lock_projects_of_sandboxes(
    conn: &mut PgConnection,
    ids: &[Uuid],
    names: &[String],
) -> StoreResult<()> {
    sqlx::query(
        "SELECT 1 FROM projects
         WHERE id IN (SELECT project_id FROM sandboxes
                      WHERE id = ANY($1) OR resource_name = ANY($2))
         ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .bind(names)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
