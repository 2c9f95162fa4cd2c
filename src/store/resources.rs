//! The reconcile loop's side of sandboxes and databases: leasing, fenced
//! writes of outcomes, lease release.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::env::bump_env_version;
use super::{Store, StoreResult, parse};
use crate::model::{Desired, ResourceStatus, aggregate};

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
    /// The lease's fencing token: shared by the batch, new for every lease.
    pub lease_token: Uuid,
    /// When the resource was created (create → RUNNING is a metric).
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Leased {
    pub fn env_drift(&self) -> bool {
        self.kind == ResourceKind::Sandbox && self.applied_env_version < self.env_version
    }
}

/// A database row's connection columns: host, port, database, user.
type StoredConnection = (Option<String>, Option<i32>, Option<String>, Option<String>);

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
                    r.status, r.intent_seq, r.attempts, r.last_error, r.created_at, {env_cols},
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
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Writes one outcome, fenced by the lease token and the intent sequence,
    /// then re-aggregates the project and appends events, all in one
    /// transaction of at most four statements (this is the loop's hot path).
    pub async fn record_outcome(
        &self,
        row: &Leased,
        outcome: &Outcome,
        actor: &str,
    ) -> StoreResult<WriteResult> {
        let mut tx = self.pool.begin().await?;
        let written = write_outcome(&mut tx, row, outcome, actor).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Writes the outcomes of one batch in one transaction: each row fenced
    /// exactly as [`Store::record_outcome`] does (a row whose lease was lost
    /// or whose intent moved on is skipped, not written), so the loop's
    /// throughput is bound by its work rather than by one commit per row.
    /// Rows are written in project order: two replicas writing batches that
    /// share projects take the project locks in the same order and cannot
    /// deadlock. The answers are in the order of `outcomes`.
    pub async fn record_outcomes(
        &self,
        outcomes: &[(&Leased, &Outcome)],
        actor: &str,
    ) -> StoreResult<Vec<WriteResult>> {
        let mut order: Vec<usize> = (0..outcomes.len()).collect();
        order.sort_by_key(|&i| (outcomes[i].0.project_id, outcomes[i].0.id));
        let mut written = vec![WriteResult::LeaseLost; outcomes.len()];
        let mut tx = self.pool.begin().await?;
        for i in order {
            let (row, outcome) = outcomes[i];
            written[i] = write_outcome(&mut tx, row, outcome, actor).await?;
        }
        tx.commit().await?;
        Ok(written)
    }
}

/// One row's fenced write, its events and its project's new status, inside
/// the caller's transaction (which commits it).
async fn write_outcome(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    row: &Leased,
    outcome: &Outcome,
    actor: &str,
) -> StoreResult<WriteResult> {
    let table = row.kind.table();
    // The project lock first, as every writer of a project's resources
    // does; statements after it see what the previous holder committed.
    let before: Option<String> =
        sqlx::query_scalar("SELECT status FROM projects WHERE id = $1 FOR UPDATE")
            .bind(row.project_id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(before) = before else {
        return Ok(WriteResult::LeaseLost);
    };
    let status_changed = outcome.status != row.status;
    // New or different connection details change the sandbox's
    // DATABASE_URL: on Kubernetes they appear only once the cluster is
    // up, after the sandbox was created without them.
    let connection_changed = match (row.kind, &outcome.connection) {
        (ResourceKind::Database, Some((host, port, db, user))) => {
            let before: Option<StoredConnection> = sqlx::query_as(
                "SELECT db_host, db_port, db_name, db_user FROM databases WHERE id = $1",
            )
            .bind(row.id)
            .fetch_optional(&mut **tx)
            .await?;
            before.is_some_and(|b| {
                b != (
                    Some(host.clone()),
                    Some(*port),
                    Some(db.clone()),
                    Some(user.clone()),
                )
            })
        }
        _ => false,
    };
    let event_wanted =
        status_changed || (outcome.last_error.is_some() && outcome.last_error != row.last_error);

    // The fenced write, its event, and the statuses of the project's other
    // resources, in one statement.
    let write = match (row.kind, outcome.status) {
        (_, ResourceStatus::Terminated) => format!(
            "DELETE FROM {table} WHERE id = $1 AND lease_token = $2 AND intent_seq = $3
                 RETURNING project_id"
        ),
        (ResourceKind::Sandbox, _) => "UPDATE sandboxes
                    SET status = $4, attempts = $6, last_error = $7, observed_at = now(),
                        applied_env_version = coalesce($16, applied_env_version),
                        -- settled on an env version that changed meanwhile: due again now
                        next_attempt_at = CASE
                            WHEN $4 <> 'ERROR' AND coalesce($16, applied_env_version)
                                 < (SELECT env_version FROM projects WHERE id = project_id)
                            THEN now()
                            ELSE coalesce(now() + make_interval(secs => $5), 'infinity') END,
                        lease_owner = NULL, lease_token = NULL, lease_until = NULL
                  WHERE id = $1 AND lease_token = $2 AND intent_seq = $3
                  RETURNING project_id"
            .to_string(),
        (ResourceKind::Database, _) => "UPDATE databases
                    SET status = $4, attempts = $6, last_error = $7, observed_at = now(),
                        next_attempt_at = coalesce(now() + make_interval(secs => $5), 'infinity'),
                        db_host = coalesce($16, db_host), db_port = coalesce($17, db_port),
                        db_name = coalesce($18, db_name), db_user = coalesce($19, db_user),
                        lease_owner = NULL, lease_token = NULL, lease_until = NULL
                  WHERE id = $1 AND lease_token = $2 AND intent_seq = $3
                  RETURNING project_id"
            .to_string(),
    };
    let sql = format!(
            "WITH w AS ({write}),
                  e AS (INSERT INTO events (project_id, user_id, kind, resource, from_status,
                                            to_status, message, actor)
                        SELECT $8, $9, $10, $11, $12, $4, $13, $14 FROM w WHERE $15)
             SELECT (SELECT count(*) FROM w) AS written,
                    ARRAY(SELECT status FROM sandboxes WHERE project_id = $8 AND id <> $1
                          UNION ALL
                          SELECT status FROM databases WHERE project_id = $8 AND id <> $1) AS others"
        );
    let query = sqlx::query_as::<_, (i64, Vec<String>)>(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.lease_token)
        .bind(row.intent_seq)
        .bind(outcome.status.as_str())
        .bind(outcome.next_attempt_in.map(|d| d.as_secs_f64()))
        .bind(outcome.attempts)
        .bind(&outcome.last_error)
        .bind(row.project_id)
        .bind(row.user_id)
        .bind(row.kind.event_kind().as_str())
        .bind(&row.resource_name)
        .bind(row.status.as_str())
        .bind(&outcome.message)
        .bind(actor)
        .bind(event_wanted);
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
    let (written, others) = query.fetch_one(&mut **tx).await?;

    if written == 0 {
        // Either an intent superseded the work (we still hold the lease:
        // give it back so the row is picked up at once) or the lease is gone.
        let released = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {table} SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
                  WHERE id = $1 AND lease_token = $2"
        )))
        .bind(row.id)
        .bind(row.lease_token)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        return Ok(if released == 1 {
            WriteResult::Superseded
        } else {
            WriteResult::LeaseLost
        });
    }

    if connection_changed {
        bump_env_version(tx, row.project_id).await?;
    }

    if status_changed {
        let mut statuses: Vec<ResourceStatus> = others
            .into_iter()
            .map(parse)
            .collect::<Result<_, sqlx::Error>>()?;
        if outcome.status != ResourceStatus::Terminated {
            statuses.push(outcome.status);
        }
        let after = (!statuses.is_empty()).then(|| aggregate(&statuses));
        let after_text = after.map_or("TERMINATED", |s| s.as_str());
        if before != after_text {
            // The project's new status and its event in one statement;
            // with no resources left the project goes, its history stays.
            let change = if after.is_some() {
                "UPDATE projects SET status = $2 WHERE id = $1 RETURNING id"
            } else {
                "DELETE FROM projects WHERE id = $1 RETURNING NULL::uuid AS id"
            };
            sqlx::query(AssertSqlSafe(format!(
                "WITH c AS ({change})
                     INSERT INTO events (project_id, user_id, kind, resource, from_status,
                                         to_status, message, actor)
                     SELECT c.id, $3, 'project', $4, $5, $2, $6, $7 FROM c"
            )))
            .bind(row.project_id)
            .bind(after_text)
            .bind(row.user_id)
            .bind(&row.project_slug)
            .bind(&before)
            .bind(if after.is_some() {
                "status aggregated from resources"
            } else {
                "project deleted"
            })
            .bind(actor)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(WriteResult::Written)
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
