//! The audit trail: append a record, read records back (a user's own, or
//! any for an admin), and retention, the one path that deletes. The table
//! refuses every other UPDATE and DELETE (migration 0005).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use super::{Store, StoreResult};

/// Most records one read returns.
pub const MAX_AUDIT_READ: i64 = 10_000;

/// One record to append. Every text field is what Kiln decided to keep:
/// never a secret value, never a password.
#[derive(Debug, Clone, Default)]
pub struct NewAuditRecord<'a> {
    /// The account acted as; `None` for a sign-in attempt, whose account is
    /// looked up by `username` when the record is written.
    pub user_id: Option<Uuid>,
    pub username: &'a str,
    pub operator: bool,
    pub front: &'a str,
    pub source: Option<std::net::IpAddr>,
    pub key_fingerprint: Option<&'a str>,
    pub method: Option<&'a str>,
    pub action: &'a str,
    pub project: Option<&'a str>,
    pub result: &'a str,
    pub detail: &'a str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub username: String,
    pub operator: bool,
    pub front: String,
    pub source: Option<String>,
    pub key_fingerprint: Option<String>,
    pub method: Option<String>,
    pub action: String,
    pub project: Option<String>,
    pub result: String,
    pub detail: String,
}

/// Which records to read, newest `limit` of them, returned oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this account's records (a user reading their own).
    pub user_id: Option<Uuid>,
    /// Only records under this name (an admin's filter), case-insensitive.
    pub username: Option<String>,
    /// Only records about this project (as it was named), case-insensitive.
    pub project: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

impl Store {
    /// Appends one record. A sign-in attempt (no `user_id`) is tied to the
    /// account its name belongs to, so its owner reads it among their own.
    pub async fn append_audit(&self, r: &NewAuditRecord<'_>) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit (user_id, username, operator, front, source, key_fingerprint,
                                method, action, project, result, detail)
             VALUES (coalesce($1, (SELECT id FROM users WHERE lower(username) = lower($2))),
                     left($2, 64), $3, $4, $5, left($6, 100), $7, $8, left($9, 200), $10,
                     left($11, 200))",
        )
        .bind(r.user_id)
        .bind(r.username)
        .bind(r.operator)
        .bind(r.front)
        .bind(r.source.map(|a| a.to_string()))
        .bind(r.key_fingerprint)
        .bind(r.method)
        .bind(r.action)
        .bind(r.project)
        .bind(r.result)
        .bind(r.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let mut q = QueryBuilder::new(
            "SELECT * FROM (SELECT id, at, username, operator, front, source, key_fingerprint,
                    method, action, project, result, detail FROM audit WHERE true",
        );
        if let Some(id) = f.user_id {
            q.push(" AND user_id = ").push_bind(id);
        }
        if let Some(name) = &f.username {
            q.push(" AND lower(username) = lower(")
                .push_bind(name.clone())
                .push(")");
        }
        if let Some(project) = &f.project {
            q.push(" AND lower(project) = lower(")
                .push_bind(project.clone())
                .push(")");
        }
        if let Some(since) = f.since {
            q.push(" AND at >= ").push_bind(since);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(f.limit.clamp(1, MAX_AUDIT_READ))
            .push(") newest ORDER BY id");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    username: r.try_get("username")?,
                    operator: r.try_get("operator")?,
                    front: r.try_get("front")?,
                    source: r.try_get("source")?,
                    key_fingerprint: r.try_get("key_fingerprint")?,
                    method: r.try_get("method")?,
                    action: r.try_get("action")?,
                    project: r.try_get("project")?,
                    result: r.try_get("result")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Retention: deletes the records older than `keep`; how many went.
    /// The only delete the table lets through, marked for this
    /// transaction alone.
    pub async fn prune_audit(&self, keep: std::time::Duration) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('kiln.audit_retention', 'on', true)")
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM audit WHERE at < now() - make_interval(secs => $1)")
            .bind(keep.as_secs_f64())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }
}
