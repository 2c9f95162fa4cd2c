//! The warm pools (`pool_databases`, migration 0012; `pool_sandboxes`,
//! 0014): claims in a project's create transaction, and the keeper's side:
//! filling empty slots, leasing rows that need work, fenced writes of what
//! it did, and what `kiln status` shows. Both tables share one shape
//! (slot, status, lease, attempts), so every keeper statement serves both,
//! naming the table of the kind it works on.

use std::time::Duration;

use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::model::pool::{PoolKind, Slotted};

/// Associated data for a pooled database's sealed password.
pub fn pooled_password_context(name: &str) -> String {
    format!("pool_databases.password:{name}")
}

/// The table holding the pool of `kind`.
fn table(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Database => "pool_databases",
        PoolKind::Sandbox => "pool_sandboxes",
    }
}

/// A pool row this replica holds a lease on.
#[derive(Debug, Clone)]
pub struct PoolLeased {
    pub kind: PoolKind,
    pub id: Uuid,
    pub resource_name: String,
    /// A pooled database's sealed password (`None` for a sandbox).
    pub password_enc: Option<Vec<u8>>,
    pub state: PoolState,
    pub attempts: i32,
    pub lease_token: Uuid,
}

/// Where a pooled resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PoolState {
    /// Being made; fills a slot.
    Creating,
    /// Made and checked; fills a slot, may be claimed.
    Ready,
    /// Failed a health check or beyond the target: to be dropped.
    Broken,
    /// A database handed to a project: what is left of it is dropped once
    /// its claimer has settled. (A claimed sandbox leaves no row: it is
    /// the project's sandbox, under the same name.)
    Claimed,
}

impl PoolState {
    fn parse(s: &str) -> Result<Self, sqlx::Error> {
        Ok(match s {
            "CREATING" => Self::Creating,
            "READY" => Self::Ready,
            "BROKEN" => Self::Broken,
            "CLAIMED" => Self::Claimed,
            other => {
                return Err(sqlx::Error::Decode(
                    format!("unknown pool state {other:?}").into(),
                ));
            }
        })
    }
}

/// One pool as `kiln status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolStatus {
    /// Ready to be claimed.
    pub ready: i64,
    /// Being made (or waiting to be retried after a failure).
    pub creating: i64,
    /// Waiting to be dropped: failed a health check, beyond the target, or
    /// claimed and no longer needed.
    pub discarding: i64,
    /// Databases handed to projects whose rows remain until their claimer
    /// settles (always 0 for sandboxes).
    pub claimed_pending: i64,
    /// The last failure of a pooled resource still being worked on.
    pub last_error: Option<String>,
}

fn leased_columns(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Database => "id, resource_name, password_enc, status, attempts, lease_token",
        PoolKind::Sandbox => {
            "id, resource_name, NULL::bytea AS password_enc, status, attempts, lease_token"
        }
    }
}

fn leased_from_rows(
    kind: PoolKind,
    rows: &[sqlx::postgres::PgRow],
) -> StoreResult<Vec<PoolLeased>> {
    rows.iter()
        .map(|r| {
            Ok(PoolLeased {
                kind,
                id: r.try_get("id")?,
                resource_name: r.try_get("resource_name")?,
                password_enc: r.try_get("password_enc")?,
                state: PoolState::parse(r.try_get("status")?)?,
                attempts: r.try_get("attempts")?,
                lease_token: r.try_get("lease_token")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Claims one ready pooled database for the database row `database_id`
/// (inserted next, naming it in `pooled_from`) inside the caller's create
/// transaction: `FOR UPDATE SKIP LOCKED`, so concurrent creates never claim
/// the same one and never wait for each other. `None`: the pool is empty
/// (or its rows are being claimed by other transactions right now), or the
/// owner's resources live on Kubernetes (a kubeconfig of their own); the
/// database is then made the ordinary way.
pub(crate) async fn claim_database(
    tx: &mut PgConnection,
    owner: Uuid,
    database_id: Uuid,
) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "UPDATE pool_databases
            SET status = 'CLAIMED', slot = NULL, claimed_by = $1, claimed_at = now()
          WHERE id = (SELECT id FROM pool_databases WHERE status = 'READY'
                       ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
            AND status = 'READY'
            AND NOT EXISTS (SELECT 1 FROM user_configs WHERE user_id = $2 AND key = $3)
      RETURNING resource_name",
    )
    .bind(database_id)
    .bind(owner)
    .bind(super::user_configs::KUBECONFIG)
    .fetch_optional(&mut *tx)
    .await?)
}

/// Claims one ready pooled resource of `kind` inside the caller's create
/// transaction, for one that keeps its name once claimed, and returns that
/// name, which the project's row takes: a running local sandbox cannot be
/// renamed (see `local::pooled`), nor can a cluster's sandbox or database.
/// The pool row goes: nothing of it is left to clean up, and a keeper that
/// set it aside meanwhile finds nothing to update. Skipped, as
/// [`claim_database`], for an owner with a kubeconfig of their own.
pub(crate) async fn claim_keeping_name(
    tx: &mut PgConnection,
    owner: Uuid,
    kind: PoolKind,
) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(AssertSqlSafe(format!(
        "DELETE FROM {table}
          WHERE id = (SELECT id FROM {table} WHERE status = 'READY'
                       ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
            AND status = 'READY'
            AND NOT EXISTS (SELECT 1 FROM user_configs WHERE user_id = $1 AND key = $2)
      RETURNING resource_name",
        table = table(kind)
    )))
    .bind(owner)
    .bind(super::user_configs::KUBECONFIG)
    .fetch_optional(&mut *tx)
    .await?)
}

impl Store {
    /// The pool's unclaimed rows (being made or ready) and their slots.
    pub async fn pool_slots(&self, kind: PoolKind) -> StoreResult<Vec<Slotted>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, slot, status = 'READY' AS ready FROM {} WHERE slot IS NOT NULL",
            table(kind)
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Slotted {
                    id: r.try_get("id")?,
                    slot: r.try_get("slot")?,
                    ready: r.try_get("ready")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Takes the empty `slots` with one new pooled resource each (fresh
    /// names, and passwords for databases), leased to `owner` for making. A
    /// slot another replica filled first is skipped: only the rows returned
    /// are ours.
    pub async fn fill_pool_slots(
        &self,
        kind: PoolKind,
        slots: &[i32],
        owner: &str,
        lease_for: Duration,
    ) -> StoreResult<Vec<PoolLeased>> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let token = Uuid::new_v4();
        let columns = leased_columns(kind);
        let rows = match kind {
            PoolKind::Database => {
                let names: Vec<String> = slots
                    .iter()
                    .map(|_| crate::model::naming::pooled_database_name())
                    .collect();
                let sealed: Vec<Vec<u8>> = names
                    .iter()
                    .map(|n| {
                        self.key.encrypt_str(
                            &crate::model::naming::random_password(),
                            &pooled_password_context(n),
                        )
                    })
                    .collect();
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO pool_databases (slot, resource_name, password_enc, lease_owner,
                                                 lease_token, lease_until)
                     SELECT s, n, p, $4, $5, now() + make_interval(secs => $6)
                       FROM unnest($1::int[], $2::text[], $3::bytea[]) AS u(s, n, p)
                     ON CONFLICT (slot) WHERE slot IS NOT NULL DO NOTHING
                     RETURNING {columns}"
                )))
                .bind(slots)
                .bind(&names)
                .bind(&sealed)
                .bind(owner)
                .bind(token)
                .bind(lease_for.as_secs_f64())
                .fetch_all(&self.pool)
                .await?
            }
            PoolKind::Sandbox => {
                let names: Vec<String> = slots
                    .iter()
                    .map(|_| crate::model::naming::pooled_sandbox_name())
                    .collect();
                // A name a claimed sandbox already bears is never drawn again
                // (13 random characters make that all but impossible anyway).
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO pool_sandboxes (slot, resource_name, lease_owner, lease_token,
                                                 lease_until)
                     SELECT s, n, $3, $4, now() + make_interval(secs => $5)
                       FROM unnest($1::int[], $2::text[]) AS u(s, n)
                      WHERE NOT EXISTS (SELECT 1 FROM sandboxes WHERE resource_name = u.n)
                     ON CONFLICT (slot) WHERE slot IS NOT NULL DO NOTHING
                     RETURNING {columns}"
                )))
                .bind(slots)
                .bind(&names)
                .bind(owner)
                .bind(token)
                .bind(lease_for.as_secs_f64())
                .fetch_all(&self.pool)
                .await?
            }
        };
        leased_from_rows(kind, &rows)
    }

    /// Marks ready pooled resources for dropping (`why` says why: beyond
    /// the target, failed a health check), freeing their slots. One already
    /// claimed is left alone: a database's claimer checks it before using
    /// it, and a claimed sandbox is no longer in the pool.
    pub async fn discard_pooled(
        &self,
        kind: PoolKind,
        ids: &[Uuid],
        why: &[String],
    ) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} p SET status = 'BROKEN', slot = NULL, last_error = u.why,
                    next_attempt_at = now()
               FROM unnest($1::uuid[], $2::text[]) AS u(id, why)
              WHERE p.id = u.id AND p.status = 'READY'",
            table(kind)
        )))
        .bind(ids)
        .bind(why)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Which of `names` (pooled sandboxes a back end holds, never opened by
    /// a claim) belong to nothing: neither a pool row nor the sandbox of a
    /// project whose resources are still where the pool is (an owner who
    /// set a kubeconfig after the claim has theirs made on their cluster).
    /// Read after the back end's list: a pool row is written before its
    /// object is made, and a claim swaps the pool row for the sandbox row
    /// in one transaction, so a listed object's row is always seen here.
    pub async fn orphaned_pooled_sandboxes(&self, names: &[String]) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT n FROM unnest($1::text[]) AS n
              WHERE NOT EXISTS (SELECT 1 FROM pool_sandboxes p WHERE p.resource_name = n)
                AND NOT EXISTS (
                    SELECT 1 FROM sandboxes s
                     WHERE s.resource_name = n
                       AND NOT EXISTS (SELECT 1 FROM user_configs c
                                        WHERE c.user_id = s.user_id AND c.key = $2))
              ORDER BY n",
        )
        .bind(names)
        .bind(super::user_configs::KUBECONFIG)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The ready pooled resources of `kind`, for their health check.
    pub async fn ready_pooled(&self, kind: PoolKind) -> StoreResult<Vec<(Uuid, String)>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, resource_name FROM {} WHERE status = 'READY' ORDER BY slot",
            table(kind)
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Leases up to `limit` pool rows of `kind` that need work: ones being
    /// made whose maker's lease ran out, broken ones, and claimed databases
    /// whose claimer has settled (is no longer CREATING, or is gone).
    pub async fn lease_pool_work(
        &self,
        kind: PoolKind,
        owner: &str,
        lease_for: Duration,
        limit: i64,
    ) -> StoreResult<Vec<PoolLeased>> {
        let needs_work = match kind {
            PoolKind::Database => {
                "p.status IN ('CREATING', 'BROKEN')
                 OR (p.status = 'CLAIMED' AND NOT EXISTS (
                        SELECT 1 FROM databases d
                         WHERE d.id = p.claimed_by AND d.status = 'CREATING'))"
            }
            PoolKind::Sandbox => "p.status IN ('CREATING', 'BROKEN')",
        };
        let (table, columns) = (table(kind), leased_columns(kind));
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {table}
                SET lease_owner = $1, lease_token = $2,
                    lease_until = now() + make_interval(secs => $3)
              WHERE id IN (
                    SELECT p.id FROM {table} p
                     WHERE (p.lease_until IS NULL OR p.lease_until < now())
                       AND p.next_attempt_at <= now()
                       AND ({needs_work})
                     ORDER BY p.next_attempt_at
                     LIMIT $4
                       FOR UPDATE SKIP LOCKED)
          RETURNING {columns}"
        )))
        .bind(owner)
        .bind(Uuid::new_v4())
        .bind(lease_for.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        leased_from_rows(kind, &rows)
    }

    /// The pooled resource is made: ready to be claimed (fenced: only if
    /// this lease still holds it and it is still being made).
    pub async fn pooled_made(&self, row: &PoolLeased) -> StoreResult<bool> {
        Ok(sqlx::query(AssertSqlSafe(format!(
            "UPDATE {}
                SET status = 'READY', attempts = 0, last_error = NULL,
                    lease_owner = NULL, lease_token = NULL, lease_until = NULL
              WHERE id = $1 AND lease_token = $2 AND status = 'CREATING'",
            table(row.kind)
        )))
        .bind(row.id)
        .bind(row.lease_token)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Making or dropping it failed: try again after `retry_in` (fenced).
    pub async fn pooled_failed(
        &self,
        row: &PoolLeased,
        error: &str,
        retry_in: Duration,
    ) -> StoreResult<bool> {
        Ok(sqlx::query(AssertSqlSafe(format!(
            "UPDATE {}
                SET attempts = attempts + 1, last_error = $3,
                    next_attempt_at = now() + make_interval(secs => $4),
                    lease_owner = NULL, lease_token = NULL, lease_until = NULL
              WHERE id = $1 AND lease_token = $2",
            table(row.kind)
        )))
        .bind(row.id)
        .bind(row.lease_token)
        .bind(error)
        .bind(retry_in.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// What was left of it is dropped: the row goes (fenced).
    pub async fn pooled_dropped(&self, row: &PoolLeased) -> StoreResult<bool> {
        Ok(sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE id = $1 AND lease_token = $2",
            table(row.kind)
        )))
        .bind(row.id)
        .bind(row.lease_token)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Gives back every pool lease this replica holds (shutdown).
    pub async fn release_pool_leases(&self, owner: &str) -> StoreResult<u64> {
        let mut released = 0;
        for kind in PoolKind::ALL {
            released += sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
                  WHERE lease_owner = $1",
                table(kind)
            )))
            .bind(owner)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(released)
    }

    /// The counts of the pool of `kind` for `kiln status`.
    pub async fn pool_status(&self, kind: PoolKind) -> StoreResult<PoolStatus> {
        let table = table(kind);
        let r = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE status = 'READY') AS ready,
                    count(*) FILTER (WHERE status = 'CREATING') AS creating,
                    count(*) FILTER (WHERE status = 'BROKEN') AS discarding,
                    count(*) FILTER (WHERE status = 'CLAIMED') AS claimed,
                    (SELECT last_error FROM {table} WHERE last_error IS NOT NULL
                      ORDER BY updated_at DESC LIMIT 1) AS last_error
               FROM {table}"
        )))
        .fetch_one(&self.pool)
        .await?;
        Ok(PoolStatus {
            ready: r.try_get("ready")?,
            creating: r.try_get("creating")?,
            discarding: r.try_get("discarding")?,
            claimed_pending: r.try_get("claimed")?,
            last_error: r.try_get("last_error")?,
        })
    }

    /// A pooled database's password, for checks that its role can (or no
    /// longer can) log in.
    pub async fn pooled_database_password(
        &self,
        name: &str,
    ) -> StoreResult<Option<crate::model::secret::Secret<String>>> {
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT password_enc FROM pool_databases WHERE resource_name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        sealed
            .map(|s| {
                self.key
                    .decrypt_string(&s, &pooled_password_context(name))
                    .map(Into::into)
                    .map_err(Into::into)
            })
            .transpose()
    }
}
