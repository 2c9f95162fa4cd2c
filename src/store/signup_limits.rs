//! Sign-ups per source address, shared by every replica: a sign-up is
//! reserved before the account is created and given back if creating it
//! fails, so concurrent sign-ups from one address cannot overrun the limit;
//! whether there is room is `model::signup_limit`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreResult};
use crate::model::signup_limit::SignupLimit;

/// A sign-up counted before its account exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupReservation(i64);

/// Distinguishes these advisory locks from any other user of the lock space.
const LOCK_PREFIX: &str = "kiln.signup:";

impl Store {
    /// Counts one sign-up from `address`, or says how long until it may
    /// sign up again. Under the address's advisory lock, so two replicas
    /// cannot both take the last slot.
    pub async fn reserve_signup(
        &self,
        address: &str,
        limit: SignupLimit,
    ) -> StoreResult<Result<SignupReservation, Duration>> {
        let window = limit.window.as_secs_f64();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{LOCK_PREFIX}{address}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM signups WHERE at <= now() - make_interval(secs => $1)")
            .bind(window)
            .execute(&mut *tx)
            .await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let times: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT at FROM signups
             WHERE address = $1 AND at > now() - make_interval(secs => $2)
             ORDER BY at, id",
        )
        .bind(address)
        .bind(window)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(wait) = limit.wait(&times, now) {
            tx.commit().await?;
            return Ok(Err(wait));
        }
        let id: i64 =
            sqlx::query_scalar("INSERT INTO signups (address, at) VALUES ($1, now()) RETURNING id")
                .bind(address)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Ok(SignupReservation(id)))
    }

    /// Gives back a sign-up whose account was not created.
    pub async fn release_signup(&self, reservation: SignupReservation) -> StoreResult<()> {
        sqlx::query("DELETE FROM signups WHERE id = $1")
            .bind(reservation.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
