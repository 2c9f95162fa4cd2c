//! Failed password sign-ins per bucket (address or user), shared by every
//! replica. An attempt is reserved (counted as a failure) before the
//! password is verified and released only on success, so concurrent guesses
//! cannot all pass the check; what counts as full is `ssh::ratelimit`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreResult};
use crate::model::signin_budget::{Bucket, wait_for};

/// The failure rows an attempt holds until it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation(Vec<i64>);

/// Distinguishes these advisory locks from any other user of the lock space.
const LOCK_PREFIX: &str = "kiln.signin:";

fn interval(window: Duration) -> f64 {
    window.as_secs_f64()
}

impl Store {
    /// Reserves one failure in every bucket, or says how long until the
    /// fullest has room. One transaction holding each bucket's advisory lock
    /// (taken in key order, so two attempts never deadlock): two replicas or
    /// two connections cannot both take the last slot.
    pub async fn reserve_signin_attempt(
        &self,
        buckets: &[Bucket],
        window: Duration,
    ) -> StoreResult<Result<Reservation, Duration>> {
        let mut sorted: Vec<&Bucket> = buckets.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        sorted.dedup_by(|a, b| a.key == b.key);
        let mut tx = self.pool.begin().await?;
        for b in &sorted {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("{LOCK_PREFIX}{}", b.key))
                .execute(&mut *tx)
                .await?;
        }
        // Housekeeping, so addresses that tried once do not stay forever.
        sqlx::query("DELETE FROM signin_failures WHERE at <= now() - make_interval(secs => $1)")
            .bind(interval(window))
            .execute(&mut *tx)
            .await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let keys: Vec<String> = sorted.iter().map(|b| b.key.clone()).collect();
        let times = failure_times(&mut tx, &keys, window).await?;
        let wait = sorted
            .iter()
            .filter_map(|b| wait_for(&times_of(&times, &b.key), now, b.max, window))
            .max();
        if let Some(wait) = wait {
            tx.commit().await?;
            return Ok(Err(wait));
        }
        let ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO signin_failures (key, at) SELECT k, now() FROM unnest($1::text[]) k
             RETURNING id",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(Reservation(ids)))
    }

    /// Gives back a reserved attempt: it succeeded.
    pub async fn release_signin_attempt(&self, reservation: Reservation) -> StoreResult<()> {
        sqlx::query("DELETE FROM signin_failures WHERE id = ANY($1)")
            .bind(&reservation.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How long until every bucket has room, without reserving anything
    /// (for the password prompt); `None` when the attempt may go ahead.
    pub async fn signin_wait(
        &self,
        buckets: &[Bucket],
        window: Duration,
    ) -> StoreResult<Option<Duration>> {
        let mut conn = self.pool.acquire().await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *conn)
            .await?;
        let keys: Vec<String> = buckets.iter().map(|b| b.key.clone()).collect();
        let times = failure_times(&mut conn, &keys, window).await?;
        Ok(buckets
            .iter()
            .filter_map(|b| wait_for(&times_of(&times, &b.key), now, b.max, window))
            .max())
    }
}

async fn failure_times(
    conn: &mut sqlx::PgConnection,
    keys: &[String],
    window: Duration,
) -> StoreResult<Vec<(String, DateTime<Utc>)>> {
    let rows = sqlx::query(
        "SELECT key, at FROM signin_failures
         WHERE key = ANY($1) AND at > now() - make_interval(secs => $2)
         ORDER BY at, id",
    )
    .bind(keys)
    .bind(interval(window))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("key")?, r.try_get("at")?)))
        .collect()
}

fn times_of(times: &[(String, DateTime<Utc>)], key: &str) -> Vec<DateTime<Utc>> {
    times
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, t)| *t)
        .collect()
}
