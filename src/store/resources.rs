//! The reconcile loop's side of sandboxes and databases: leasing, fenced
//! writes of outcomes, lease release.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::events::{EventKind, NewEvent, append_event};
use super::projects::{parse, reaggregate};
use super::{Store, StoreResult};
use crate::model::{Desired, ResourceStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Sandbox,
    Database,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 2] = [ResourceKind::Sandbox, ResourceKind::Database];

    pub fn table(self) -> &'static str {
        match self {
            ResourceKind::Sandbox => "sandboxes",
            ResourceKind::Database => "databases",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Sandbox => "sandbox",
            ResourceKind::Database => "database",
        }
    }

    pub fn event_kind(self) -> EventKind {
        match self {
            ResourceKind::Sandbox => EventKind::Sandbox,
            ResourceKind::Database => EventKind::Database,
        }
    }

    /// Associated data for a database password: binds the ciphertext to its row.
    pub fn password_context(self, resource_name: &str) -> String {
        format!("{}.password:{resource_name}", self.table())
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceKind {
    type Err = crate::model::status::UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sandbox" => Ok(Self::Sandbox),
            "database" => Ok(Self::Database),
            _ => Err(crate::model::status::UnknownStatus(s.to_string())),
        }
    }
}

/// A resource row this replica holds a lease on.
#[derive(Debug, Clone)]
pub struct Leased {
    pub kind: ResourceKind,
    pub id: Uuid,
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub resource_name: String,
    pub namespace: String,
    pub project_slug: String,
    pub project_name: String,
    pub desired: Desired,
    pub status: ResourceStatus,
    pub intent_seq: i64,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The project's env version when leased (sandboxes only need it).
    pub env_version: i64,
    /// What the sandbox last applied (0 for databases).
    pub applied_env_version: i64,
    /// Database password, still sealed (databases only).
    pub password_enc: Option<Vec<u8>>,
    /// The lease's fencing token: shared by the batch, new for every lease.
    pub lease_token: Uuid,
}

impl Leased {
    pub fn env_drift(&self) -> bool {
        self.kind == ResourceKind::Sandbox && self.applied_env_version < self.env_version
    }
}

/// What the loop learned and decided about one leased row.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The row's new status; `Terminated` removes the row.
    pub status: ResourceStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// When to look at the row again; `None` = only when someone asks (ERROR).
    pub next_attempt_in: Option<Duration>,
    /// Sandbox env version now applied.
    pub applied_env_version: Option<i64>,
    /// Database connection details to record (host, port, database, user).
    pub connection: Option<(String, i32, String, String)>,
    /// For the event history; an event is written when the status changes or
    /// a new error appears.
    pub message: String,
}

/// How a fenced write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    Written,
    /// A user intent arrived while the work ran: nothing written but the
    /// lease release; the row is due again at once.
    Superseded,
    /// Another replica holds (or finished with) the row: nothing written.
    LeaseLost,
}

impl Store {
    /// Leases up to `limit` due rows of one kind in one statement
    /// (`FOR UPDATE SKIP LOCKED`: concurrent replicas never get the same row).
    pub async fn lease_batch(
        &self,
        kind: ResourceKind,
        owner: &str,
        lease_for: Duration,
        limit: i64,
    ) -> StoreResult<Vec<Leased>> {
        let token = Uuid::new_v4();
        let (extra_cols, env_cols) = match kind {
            ResourceKind::Sandbox => ("NULL::bytea AS password_enc", "r.applied_env_version"),
            ResourceKind::Database => ("r.password_enc", "0::bigint AS applied_env_version"),
        };
        let sql = format!(
            "UPDATE {table} r
                SET lease_owner = $1, lease_token = $2,
                    lease_until = now() + make_interval(secs => $3)
               FROM projects p
              WHERE p.id = r.project_id
                AND r.id IN (SELECT id FROM {table}
                              WHERE next_attempt_at <= now()
                                AND (lease_until IS NULL OR lease_until < now())
                              ORDER BY next_attempt_at
                              LIMIT $4
                              FOR UPDATE SKIP LOCKED)
          RETURNING r.id, r.project_id, r.user_id, r.resource_name, r.namespace, r.desired,
                    r.status, r.intent_seq, r.attempts, r.last_error, {env_cols},
                    p.env_version, p.slug, p.name, {extra_cols}",
            table = kind.table()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(token)
            .bind(lease_for.as_secs_f64())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Leased {
                    kind,
                    id: r.try_get("id")?,
                    project_id: r.try_get("project_id")?,
                    user_id: r.try_get("user_id")?,
                    resource_name: r.try_get("resource_name")?,
                    namespace: r.try_get("namespace")?,
                    project_slug: r.try_get("slug")?,
                    project_name: r.try_get("name")?,
                    desired: parse(r.try_get("desired")?)?,
                    status: parse(r.try_get("status")?)?,
                    intent_seq: r.try_get("intent_seq")?,
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    env_version: r.try_get("env_version")?,
                    applied_env_version: r.try_get("applied_env_version")?,
                    password_enc: r.try_get("password_enc")?,
                    lease_token: token,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Writes one outcome, fenced by the lease token and the intent sequence,
    /// then re-aggregates the project and appends events, all in one transaction.
    pub async fn record_outcome(
        &self,
        row: &Leased,
        outcome: &Outcome,
        actor: &str,
    ) -> StoreResult<WriteResult> {
        let table = row.kind.table();
        let mut tx = self.pool.begin().await?;
        // The project lock first, as every writer of a project's resources does.
        let project: Option<String> =
            sqlx::query_scalar("SELECT status FROM projects WHERE id = $1 FOR UPDATE")
                .bind(row.project_id)
                .fetch_optional(&mut *tx)
                .await?;
        if project.is_none() {
            return Ok(WriteResult::LeaseLost);
        }
        let written = if outcome.status == ResourceStatus::Terminated {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE id = $1 AND lease_token = $2 AND intent_seq = $3"
            )))
            .bind(row.id)
            .bind(row.lease_token)
            .bind(row.intent_seq)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            // $5 is the delay in seconds, NULL while in ERROR (due only on request).
            let next = "coalesce(now() + make_interval(secs => $5), 'infinity'::timestamptz)";
            let sql = match row.kind {
                // A sandbox settled on an old env version is due again at once:
                // the env changed while this replica worked.
                ResourceKind::Sandbox => format!(
                    "UPDATE sandboxes
                        SET status = $4, attempts = $6, last_error = $7, observed_at = now(),
                            applied_env_version = coalesce($8, applied_env_version),
                            next_attempt_at = CASE
                                WHEN $4 <> 'ERROR' AND coalesce($8, applied_env_version)
                                     < (SELECT env_version FROM projects WHERE id = project_id)
                                THEN now() ELSE {next} END,
                            lease_owner = NULL, lease_token = NULL, lease_until = NULL
                      WHERE id = $1 AND lease_token = $2 AND intent_seq = $3"
                ),
                ResourceKind::Database => format!(
                    "UPDATE databases
                        SET status = $4, attempts = $6, last_error = $7, observed_at = now(),
                            next_attempt_at = {next},
                            db_host = coalesce($8, db_host), db_port = coalesce($9, db_port),
                            db_name = coalesce($10, db_name), db_user = coalesce($11, db_user),
                            lease_owner = NULL, lease_token = NULL, lease_until = NULL
                      WHERE id = $1 AND lease_token = $2 AND intent_seq = $3"
                ),
            };
            let query = sqlx::query(AssertSqlSafe(sql))
                .bind(row.id)
                .bind(row.lease_token)
                .bind(row.intent_seq)
                .bind(outcome.status.as_str())
                .bind(outcome.next_attempt_in.map(|d| d.as_secs_f64()))
                .bind(outcome.attempts)
                .bind(&outcome.last_error);
            let query = match (row.kind, &outcome.connection) {
                (ResourceKind::Sandbox, _) => query.bind(outcome.applied_env_version),
                (ResourceKind::Database, Some((host, port, db, user))) => {
                    query.bind(host).bind(port).bind(db).bind(user)
                }
                (ResourceKind::Database, None) => query
                    .bind(None::<String>)
                    .bind(None::<i32>)
                    .bind(None::<String>)
                    .bind(None::<String>),
            };
            query.execute(&mut *tx).await?.rows_affected()
        };
        if written == 0 {
            // Either an intent superseded the work (we still hold the lease:
            // give it back so the row is picked up at once) or the lease is gone.
            let released = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {table} SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
                  WHERE id = $1 AND lease_token = $2"
            )))
            .bind(row.id)
            .bind(row.lease_token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            return Ok(if released == 1 {
                WriteResult::Superseded
            } else {
                WriteResult::LeaseLost
            });
        }
        let status_changed = outcome.status != row.status;
        let new_error = outcome.last_error.is_some() && outcome.last_error != row.last_error;
        if status_changed || new_error {
            append_event(
                &mut tx,
                &NewEvent {
                    project_id: Some(row.project_id),
                    user_id: row.user_id,
                    kind: row.kind.event_kind(),
                    resource: &row.resource_name,
                    from_status: Some(row.status.as_str()),
                    to_status: Some(outcome.status.as_str()),
                    message: &outcome.message,
                    actor,
                },
            )
            .await?;
        }
        if status_changed {
            let before: Option<String> = project;
            let after = reaggregate(&mut tx, row.project_id).await?;
            let after_text = after.map(|s| s.as_str()).unwrap_or("TERMINATED");
            if before.as_deref() != Some(after_text) {
                // The project row may be gone; its events keep the history.
                append_event(
                    &mut tx,
                    &NewEvent {
                        project_id: after.map(|_| row.project_id),
                        user_id: row.user_id,
                        kind: EventKind::Project,
                        resource: &row.project_slug,
                        from_status: before.as_deref(),
                        to_status: Some(after_text),
                        message: if after.is_none() {
                            "project deleted"
                        } else {
                            "status aggregated from resources"
                        },
                        actor,
                    },
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(WriteResult::Written)
    }

    /// Gives back leases on rows that needed nothing (observed as expected),
    /// scheduling their next observation — one statement for the whole set.
    /// A row whose intent changed meanwhile is made due at once instead.
    pub async fn release_unchanged(
        &self,
        kind: ResourceKind,
        rows: &[&Leased],
        observe_in: &[Duration],
    ) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.intent_seq).collect();
        let tokens: Vec<Uuid> = rows.iter().map(|r| r.lease_token).collect();
        let secs: Vec<f64> = observe_in.iter().map(|d| d.as_secs_f64()).collect();
        let sql = format!(
            "UPDATE {table} t
                SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, observed_at = now(),
                    next_attempt_at = CASE WHEN t.intent_seq = u.seq AND t.status <> 'ERROR'
                                           THEN now() + make_interval(secs => u.secs)
                                           WHEN t.status = 'ERROR' THEN 'infinity'::timestamptz
                                           ELSE now() END
               FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::float8[]) AS u(id, seq, token, secs)
              WHERE t.id = u.id AND t.lease_token = u.token",
            table = kind.table()
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(&ids)
            .bind(&seqs)
            .bind(&tokens)
            .bind(&secs)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Gives back every lease this replica holds (graceful shutdown). The rows
    /// become due at once for the replicas that remain.
    pub async fn release_leases(&self, owner: &str) -> StoreResult<u64> {
        let mut n = 0;
        for kind in ResourceKind::ALL {
            n += sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} SET lease_owner = NULL, lease_token = NULL, lease_until = NULL,
                        next_attempt_at = least(next_attempt_at, now())
                  WHERE lease_owner = $1",
                kind.table()
            )))
            .bind(owner)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(n)
    }

    /// The sandbox's environment as a driver needs it: the project's variables
    /// (secrets decrypted) and the version they correspond to, read in one snapshot.
    pub async fn sandbox_env(&self, project_id: Uuid) -> StoreResult<(i64, Vec<(String, String)>)> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let version: i64 = sqlx::query_scalar("SELECT env_version FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
        let vars = super::env::read_env(&mut tx, &self.key, project_id).await?;
        tx.commit().await?;
        Ok((version, vars.into_iter().map(|v| (v.key, v.value)).collect()))
    }

    /// The sealed password and name of the project's database, for DATABASE_URL.
    pub async fn project_database(
        &self,
        project_id: Uuid,
    ) -> StoreResult<Option<(String, String, Vec<u8>)>> {
        let row = sqlx::query(
            "SELECT resource_name, namespace, password_enc FROM databases
              WHERE project_id = $1 AND desired <> 'TERMINATED' ORDER BY created_at LIMIT 1",
        )
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| -> Result<_, sqlx::Error> {
                Ok((
                    r.try_get("resource_name")?,
                    r.try_get("namespace")?,
                    r.try_get("password_enc")?,
                ))
            })
            .transpose()?)
    }

    /// When the earliest row is due (for sleeping until a retry rather than a full resync).
    pub async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT min(t) FROM (
                (SELECT next_attempt_at AS t FROM sandboxes ORDER BY next_attempt_at LIMIT 1)
                UNION ALL
                (SELECT next_attempt_at FROM databases ORDER BY next_attempt_at LIMIT 1)) due
              WHERE t < 'infinity'",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
