//! Failed password sign-ins per bucket (address, user, or address at user),
//! shared by every replica. An attempt is reserved (counted as a failure)
//! before the password is verified and released only on success, so
//! concurrent guesses cannot all pass the check; what counts as full is
//! decided purely in `model::signin_budget` and `model::signin_throttle`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreResult};
use crate::model::signin_budget::{Bucket, wait_for};
use crate::model::signin_throttle::Charge;

/// The failure rows an attempt holds until it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation(Vec<i64>);

/// Distinguishes these advisory locks from any other user of the lock space.
const LOCK_PREFIX: &str = "kiln.signin:";

fn interval(window: Duration) -> f64 {
    window.as_secs_f64()
}

impl Store {
    /// Reserves one failure under every key of a password attempt, or says
    /// how long until it may go ahead (`model::signin_throttle`).
    pub async fn reserve_password_attempt(
        &self,
        charge: &Charge,
        window: Duration,
    ) -> StoreResult<Result<Reservation, Duration>> {
        self.reserve_failure(&charge.keys(), window, |times, now| {
            charge.wait(|k| times_of(times, k), now, window)
        })
        .await
    }

    /// How long until a password attempt may go ahead, without reserving
    /// anything (for the password prompt); `None`: now.
    pub async fn password_attempt_wait(
        &self,
        charge: &Charge,
        window: Duration,
    ) -> StoreResult<Option<Duration>> {
        self.failure_wait(&charge.keys(), window, |times, now| {
            charge.wait(|k| times_of(times, k), now, window)
        })
        .await
    }

    /// Reserves one failure in every bucket, or says how long until the
    /// fullest has room.
    pub async fn reserve_signin_attempt(
        &self,
        buckets: &[Bucket],
        window: Duration,
    ) -> StoreResult<Result<Reservation, Duration>> {
        let keys: Vec<String> = buckets.iter().map(|b| b.key.clone()).collect();
        self.reserve_failure(&keys, window, |times, now| {
            buckets_wait(buckets, times, now, window)
        })
        .await
    }

    /// Gives back a reserved attempt: it succeeded.
    pub async fn release_signin_attempt(&self, reservation: Reservation) -> StoreResult<()> {
        sqlx::query("DELETE FROM signin_failures WHERE id = ANY($1)")
            .bind(&reservation.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How long until every bucket has room, without reserving anything;
    /// `None` when the attempt may go ahead.
    pub async fn signin_wait(
        &self,
        buckets: &[Bucket],
        window: Duration,
    ) -> StoreResult<Option<Duration>> {
        let keys: Vec<String> = buckets.iter().map(|b| b.key.clone()).collect();
        self.failure_wait(&keys, window, |times, now| {
            buckets_wait(buckets, times, now, window)
        })
        .await
    }

    /// One failure row under every key if `decide` (given the keys' failure
    /// times and the database's clock) says go. One transaction holding each
    /// key's advisory lock (taken in key order, so two attempts never
    /// deadlock): two replicas or two connections cannot both take the last
    /// slot.
    async fn reserve_failure(
        &self,
        keys: &[String],
        window: Duration,
        decide: impl Fn(&Times, DateTime<Utc>) -> Option<Duration>,
    ) -> StoreResult<Result<Reservation, Duration>> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let mut tx = self.pool.begin().await?;
        for key in &keys {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("{LOCK_PREFIX}{key}"))
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
        let times = failure_times(&mut tx, &keys, window).await?;
        if let Some(wait) = decide(&times, now) {
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

    async fn failure_wait(
        &self,
        keys: &[String],
        window: Duration,
        decide: impl Fn(&Times, DateTime<Utc>) -> Option<Duration>,
    ) -> StoreResult<Option<Duration>> {
        let mut conn = self.pool.acquire().await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *conn)
            .await?;
        let times = failure_times(&mut conn, keys, window).await?;
        Ok(decide(&times, now))
    }
}

/// Failure times per key, each oldest first.
type Times = HashMap<String, Vec<DateTime<Utc>>>;

fn times_of<'a>(times: &'a Times, key: &str) -> &'a [DateTime<Utc>] {
    times.get(key).map_or(&[], Vec::as_slice)
}

/// Plain buckets: the longest wait of any that is full.
fn buckets_wait(
    buckets: &[Bucket],
    times: &Times,
    now: DateTime<Utc>,
    window: Duration,
) -> Option<Duration> {
    buckets
        .iter()
        .filter_map(|b| wait_for(times_of(times, &b.key), now, b.max, window))
        .max()
}

async fn failure_times(
    conn: &mut sqlx::PgConnection,
    keys: &[String],
    window: Duration,
) -> StoreResult<Times> {
    let rows = sqlx::query(
        "SELECT key, at FROM signin_failures
         WHERE key = ANY($1) AND at > now() - make_interval(secs => $2)
         ORDER BY at, id",
    )
    .bind(keys)
    .bind(interval(window))
    .fetch_all(conn)
    .await?;
    let mut times = Times::new();
    for r in &rows {
        times
            .entry(r.try_get("key")?)
            .or_default()
            .push(r.try_get("at")?);
    }
    Ok(times)
}
