//! The warm pool of databases (`pool_databases`, migration 0012): claims in
//! a project's create transaction, and the keeper's side: filling empty
//! slots, leasing rows that need work, fenced writes of what it did, and
//! what `kiln status` shows.

use std::time::Duration;

use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::model::pool::Slotted;

/// Associated data for a pooled database's sealed password.
pub fn pooled_password_context(name: &str) -> String {
    format!("pool_databases.password:{name}")
}

/// A pool row this replica holds a lease on.
#[derive(Debug, Clone)]
pub struct PoolLeased {
    pub id: Uuid,
    pub resource_name: String,
    pub password_enc: Vec<u8>,
    pub state: PoolState,
    pub attempts: i32,
    pub lease_token: Uuid,
}

/// Where a pooled database is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PoolState {
    /// Being made; fills a slot.
    Creating,
    /// Made and checked; fills a slot, may be claimed.
    Ready,
    /// Failed a health check or beyond the target: to be dropped.
    Broken,
    /// Handed to a project: what is left of it is dropped once its
    /// claimer has settled.
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

/// The pool as `kiln status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolStatus {
    /// Ready to be claimed.
    pub ready: i64,
    /// Being made (or waiting to be retried after a failure).
    pub creating: i64,
    /// Waiting to be dropped: failed a health check, beyond the target, or
    /// claimed and no longer needed.
    pub discarding: i64,
    /// Handed to projects since Kiln started keeping them (rows remain
    /// until their claimer settles).
    pub claimed_pending: i64,
    /// The last failure of a pooled database still being worked on.
    pub last_error: Option<String>,
}

const LEASED_COLUMNS: &str = "id, resource_name, password_enc, status, attempts, lease_token";

fn leased_from_row(r: &sqlx::postgres::PgRow) -> Result<PoolLeased, sqlx::Error> {
    Ok(PoolLeased {
        id: r.try_get("id")?,
        resource_name: r.try_get("resource_name")?,
        password_enc: r.try_get("password_enc")?,
        state: PoolState::parse(r.try_get("status")?)?,
        attempts: r.try_get("attempts")?,
        lease_token: r.try_get("lease_token")?,
    })
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

impl Store {
    /// The pool's unclaimed rows (being made or ready) and their slots.
    pub async fn pool_slots(&self) -> StoreResult<Vec<Slotted>> {
        let rows = sqlx::query(
            "SELECT id, slot, status = 'READY' AS ready FROM pool_databases WHERE slot IS NOT NULL",
        )
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

    /// Takes the empty `slots` with one new pooled database each (fresh
    /// names and passwords), leased to `owner` for making. A slot another
    /// replica filled first is skipped: only the rows returned are ours.
    pub async fn fill_pool_slots(
        &self,
        slots: &[i32],
        owner: &str,
        lease_for: Duration,
    ) -> StoreResult<Vec<PoolLeased>> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
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
        let token = Uuid::new_v4();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO pool_databases (slot, resource_name, password_enc, lease_owner,
                                         lease_token, lease_until)
             SELECT s, n, p, $4, $5, now() + make_interval(secs => $6)
               FROM unnest($1::int[], $2::text[], $3::bytea[]) AS u(s, n, p)
             ON CONFLICT (slot) WHERE slot IS NOT NULL DO NOTHING
             RETURNING {LEASED_COLUMNS}"
        )))
        .bind(slots)
        .bind(&names)
        .bind(&sealed)
        .bind(owner)
        .bind(token)
        .bind(lease_for.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(leased_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Marks ready pooled databases for dropping (`why` says why: beyond
    /// the target, failed a health check), freeing their slots. One already
    /// claimed is left alone: its claimer checks it before using it.
    pub async fn discard_pooled(&self, ids: &[Uuid], why: &[String]) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(
            "UPDATE pool_databases p SET status = 'BROKEN', slot = NULL, last_error = u.why,
                    next_attempt_at = now()
               FROM unnest($1::uuid[], $2::text[]) AS u(id, why)
              WHERE p.id = u.id AND p.status = 'READY'",
        )
        .bind(ids)
        .bind(why)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The ready pooled databases, for their health check.
    pub async fn ready_pooled(&self) -> StoreResult<Vec<(Uuid, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, resource_name FROM pool_databases WHERE status = 'READY' ORDER BY slot",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Leases up to `limit` pool rows that need work: ones being made whose
    /// maker's lease ran out, broken ones, and claimed ones whose claimer
    /// has settled (is no longer CREATING, or is gone).
    pub async fn lease_pool_work(
        &self,
        owner: &str,
        lease_for: Duration,
        limit: i64,
    ) -> StoreResult<Vec<PoolLeased>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE pool_databases
                SET lease_owner = $1, lease_token = $2,
                    lease_until = now() + make_interval(secs => $3)
              WHERE id IN (
                    SELECT p.id FROM pool_databases p
                     WHERE (p.lease_until IS NULL OR p.lease_until < now())
                       AND p.next_attempt_at <= now()
                       AND (p.status IN ('CREATING', 'BROKEN')
                            OR (p.status = 'CLAIMED' AND NOT EXISTS (
                                    SELECT 1 FROM databases d
                                     WHERE d.id = p.claimed_by AND d.status = 'CREATING')))
                     ORDER BY p.next_attempt_at
                     LIMIT $4
                       FOR UPDATE SKIP LOCKED)
          RETURNING {LEASED_COLUMNS}"
        )))
        .bind(owner)
        .bind(Uuid::new_v4())
        .bind(lease_for.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(leased_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The pooled database is made: ready to be claimed (fenced: only if
    /// this lease still holds it and it is still being made).
    pub async fn pooled_made(&self, row: &PoolLeased) -> StoreResult<bool> {
        Ok(sqlx::query(
            "UPDATE pool_databases
                SET status = 'READY', attempts = 0, last_error = NULL,
                    lease_owner = NULL, lease_token = NULL, lease_until = NULL
              WHERE id = $1 AND lease_token = $2 AND status = 'CREATING'",
        )
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
        Ok(sqlx::query(
            "UPDATE pool_databases
                SET attempts = attempts + 1, last_error = $3,
                    next_attempt_at = now() + make_interval(secs => $4),
                    lease_owner = NULL, lease_token = NULL, lease_until = NULL
              WHERE id = $1 AND lease_token = $2",
        )
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
        Ok(
            sqlx::query("DELETE FROM pool_databases WHERE id = $1 AND lease_token = $2")
                .bind(row.id)
                .bind(row.lease_token)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// Gives back every pool lease this replica holds (shutdown).
    pub async fn release_pool_leases(&self, owner: &str) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE pool_databases SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
              WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The pool's counts for `kiln status`.
    pub async fn pool_status(&self) -> StoreResult<PoolStatus> {
        let r = sqlx::query(
            "SELECT count(*) FILTER (WHERE status = 'READY') AS ready,
                    count(*) FILTER (WHERE status = 'CREATING') AS creating,
                    count(*) FILTER (WHERE status = 'BROKEN') AS discarding,
                    count(*) FILTER (WHERE status = 'CLAIMED') AS claimed,
                    (SELECT last_error FROM pool_databases WHERE last_error IS NOT NULL
                      ORDER BY updated_at DESC LIMIT 1) AS last_error
               FROM pool_databases",
        )
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
