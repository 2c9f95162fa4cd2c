//! Users' webhook deliveries: queued with the notification they announce,
//! taken by a replica's delivery task under a lease, then finished, put
//! back for a retry or given up; and each user's last outcome, for their
//! settings. The URL itself is the user config [`WEBHOOK_URL`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreResult};

/// The user config holding the webhook's URL (secret by default).
pub const WEBHOOK_URL: &str = "WEBHOOK_URL";

/// One delivery taken by a delivery task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: Uuid,
    pub user_id: Uuid,
    pub payload: serde_json::Value,
    /// Attempts made, this one included.
    pub attempts: u32,
}

/// A user's webhook's last outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookStatus {
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
}

/// The longest error kept (it is shown in settings).
const MAX_ERROR: usize = 300;

impl Store {
    /// Takes up to `limit` due deliveries for `lease` (another replica takes
    /// one only once its lease has passed), counting the attempt.
    pub async fn take_webhook_deliveries(
        &self,
        limit: i64,
        lease: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $2)
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE next_attempt_at <= now()
                          ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, user_id, payload, attempts",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get("attempts")?;
                Ok(Delivery {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    payload: r.try_get("payload")?,
                    attempts: attempts.max(0) as u32,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The delivery arrived: it is done, and the user's status says so.
    pub async fn webhook_delivered(&self, d: &Delivery) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1")
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO webhook_status (user_id, last_delivered_at) VALUES ($1, now())
             ON CONFLICT (user_id) DO UPDATE SET last_delivered_at = now()",
        )
        .bind(d.user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The delivery failed with `error`: tried again after `retry_in`, or
    /// given up (`None`). Either way the user's status shows the error.
    pub async fn webhook_failed(
        &self,
        d: &Delivery,
        error: &str,
        retry_in: Option<Duration>,
    ) -> StoreResult<()> {
        let error = crate::model::naming::printable(error, MAX_ERROR);
        let mut tx = self.pool.begin().await?;
        match retry_in {
            Some(delay) => {
                sqlx::query(
                    "UPDATE webhook_deliveries
                     SET next_attempt_at = now() + make_interval(secs => $2) WHERE id = $1",
                )
                .bind(d.id)
                .bind(delay.as_secs_f64())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1")
                    .bind(d.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "INSERT INTO webhook_status (user_id, last_error, last_error_at) VALUES ($1, $2, now())
             ON CONFLICT (user_id) DO UPDATE SET last_error = $2, last_error_at = now()",
        )
        .bind(d.user_id)
        .bind(&error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's webhook's last outcome (all empty before any delivery).
    pub async fn webhook_status(&self, user_id: Uuid) -> StoreResult<WebhookStatus> {
        let row = sqlx::query(
            "SELECT last_error, last_error_at, last_delivered_at FROM webhook_status
             WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(WebhookStatus::default());
        };
        Ok(WebhookStatus {
            last_error: r.try_get("last_error")?,
            last_error_at: r.try_get("last_error_at")?,
            last_delivered_at: r.try_get("last_delivered_at")?,
        })
    }

    /// Forgets a user's webhook outcome and pending deliveries (the URL was
    /// changed or removed: they were about the old one).
    pub async fn reset_webhook(&self, user_id: Uuid) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM webhook_deliveries WHERE user_id = $1",
            "DELETE FROM webhook_status WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
