//! The reconcile loop's side of sandboxes and databases: leasing, fenced
//! writes of outcomes, lease release.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::{Store, StoreResult, parse};
use crate::model::{Desired, ResourceStatus};

pub use super::kind::ResourceKind;

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
    /// The pooled resource this one was claimed from, to adopt instead of
    /// creating (see `store::pool`): a database's pooled name, or a pooled
    /// sandbox's own name (it keeps it).
    pub pooled_from: Option<String>,
    /// The lease's fencing token: shared by the batch, new for every lease.
    pub lease_token: Uuid,
    /// No replica has worked the row yet: it was never observed nor given
    /// an outcome, and no lease on it was left to expire (a replica that
    /// died mid-work leaves its lease behind). See `reconcile::plan::known`.
    pub never_worked: bool,
    /// When the resource was created (create → RUNNING is a metric).
    pub created_at: chrono::DateTime<chrono::Utc>,
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
    /// How an ERROR is told to the owner when it is more than a failed
    /// project: a clone or setup script that failed (sandboxes only; `None`
    /// is the plain `project_failed`).
    pub failure_kind: Option<crate::model::notice::NoticeKind>,
    /// When to look at the row again; `None` = only when someone asks (ERROR).
    pub next_attempt_in: Option<Duration>,
    /// Sandbox env version now applied.
    pub applied_env_version: Option<i64>,
    /// Database connection details to record (host, port, database, user).
    pub connection: Option<(String, i32, String, String)>,
    /// The database connection the sandbox's `DATABASE_URL` was built from
    /// (sandboxes only; recorded with the row): a database whose details
    /// are written later, or in the same batch, and are these needs no env
    /// sync of this sandbox afterwards.
    pub applied_database: Option<(String, i32, String, String)>,
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
        if limit < 1 {
            return Ok(Vec::new());
        }
        let token = Uuid::new_v4();
        let (extra_cols, env_cols) = match kind {
            ResourceKind::Sandbox => (
                "NULL::bytea AS password_enc,
                 CASE WHEN r.pooled THEN r.resource_name END AS pooled_from",
                "r.applied_env_version",
            ),
            ResourceKind::Database => (
                "r.password_enc, r.pooled_from",
                "0::bigint AS applied_env_version",
            ),
        };
        let sql = format!(
            "UPDATE {table} r
                SET lease_owner = $1, lease_token = $2,
                    lease_until = now() + make_interval(secs => $3)
               FROM projects p,
                    -- The rows as they were before this lease: whether
                    -- anyone has worked them yet.
                    (SELECT id, observed_at IS NULL AND lease_until IS NULL AS never_worked
                       FROM {table}
                      WHERE next_attempt_at <= now()
                        AND (lease_until IS NULL OR lease_until < now())
                      ORDER BY next_attempt_at
                      LIMIT {limit}
                      FOR UPDATE SKIP LOCKED) due
              WHERE p.id = r.project_id AND r.id = due.id
          RETURNING r.id, r.project_id, r.user_id, r.resource_name, r.namespace, r.desired,
                    r.status, r.intent_seq, r.attempts, r.last_error, r.created_at, {env_cols},
                    p.env_version, p.slug, p.name, due.never_worked, {extra_cols}",
            table = kind.table(),
            // A number in the text rather than a parameter: with `LIMIT $4`
            // the prepared statement's generic plan assumed a tenth of the
            // table was due and hash-joined full scans of the resources and
            // projects (15 ms a lease at 22,000 rows, growing with them);
            // knowing the batch, it looks each leased row up by key (3 ms).
            limit = limit,
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(token)
            .bind(lease_for.as_secs_f64())
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
                    pooled_from: r.try_get("pooled_from")?,
                    lease_token: token,
                    never_worked: r.try_get("never_worked")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

impl Store {
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

    /// Gives back leases taken but not worked, fenced by their token (a
    /// lease that expired and was taken by another is left alone); the rows
    /// stay due as they were.
    pub async fn give_back_leases(&self, rows: &[&Leased]) -> StoreResult<u64> {
        let mut n = 0;
        for kind in ResourceKind::ALL {
            let (ids, tokens): (Vec<Uuid>, Vec<Uuid>) = rows
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| (r.id, r.lease_token))
                .unzip();
            if ids.is_empty() {
                continue;
            }
            let sql = format!(
                "UPDATE {table} t SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
                   FROM unnest($1::uuid[], $2::uuid[]) AS u(id, token)
                  WHERE t.id = u.id AND t.lease_token = u.token",
                table = kind.table()
            );
            n += sqlx::query(AssertSqlSafe(sql))
                .bind(&ids)
                .bind(&tokens)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
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

    /// Makes the named resources due now (a watch saw their objects change).
    /// Rows in ERROR wait for the user. Quiet: schedule changes notify no one.
    pub async fn mark_due(&self, resource_names: &[String]) -> StoreResult<u64> {
        let n = sqlx::query(
            "WITH s AS (UPDATE sandboxes SET next_attempt_at = now()
                         WHERE resource_name = ANY($1) AND status <> 'ERROR'
                           AND next_attempt_at > now() RETURNING 1),
                  d AS (UPDATE databases SET next_attempt_at = now()
                         WHERE resource_name = ANY($1) AND status <> 'ERROR'
                           AND next_attempt_at > now() RETURNING 1)
             SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM d)",
        )
        .bind(resource_names)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = sqlx::Row::try_get(&n, 0)?;
        Ok(n as u64)
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
