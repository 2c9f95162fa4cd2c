//! What `kiln status` reports: leases, queue depth, recent errors.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreResult};
use crate::model::pool::PoolKind;

#[derive(Debug, Clone, Serialize)]
pub struct LeaseHolder {
    pub owner: String,
    pub leases: i64,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecentError {
    pub kind: String,
    pub resource_name: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    pub lease_holders: Vec<LeaseHolder>,
    /// Rows due for work now and not leased.
    pub queue_depth: i64,
    pub by_status: Vec<(String, i64)>,
    pub errors: Vec<RecentError>,
    /// The warm pool of databases.
    pub pool: super::pool::PoolStatus,
    /// The warm pool of sandboxes.
    pub sandbox_pool: super::pool::PoolStatus,
}

impl Store {
    pub async fn replica_status(&self) -> StoreResult<ReplicaStatus> {
        let holders = sqlx::query(
            "SELECT lease_owner, count(*) AS n, max(lease_until) AS until FROM (
                SELECT lease_owner, lease_until FROM sandboxes WHERE lease_owner IS NOT NULL
                UNION ALL SELECT lease_owner, lease_until FROM databases WHERE lease_owner IS NOT NULL
                UNION ALL SELECT lease_owner, lease_until FROM pool_databases
                           WHERE lease_owner IS NOT NULL
                UNION ALL SELECT lease_owner, lease_until FROM pool_sandboxes
                           WHERE lease_owner IS NOT NULL) l
              GROUP BY lease_owner ORDER BY lease_owner",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(LeaseHolder {
                owner: r.try_get("lease_owner")?,
                leases: r.try_get("n")?,
                until: r.try_get("until")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let queue_depth: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM sandboxes WHERE next_attempt_at <= now()
                        AND (lease_until IS NULL OR lease_until < now()))
                  + (SELECT count(*) FROM databases WHERE next_attempt_at <= now()
                        AND (lease_until IS NULL OR lease_until < now()))",
        )
        .fetch_one(&self.pool)
        .await?;
        let by_status = sqlx::query(
            "SELECT status, count(*) AS n FROM projects GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let errors = sqlx::query(
            "SELECT * FROM (
                SELECT 'sandbox' AS kind, resource_name, status, attempts, last_error, nullif(next_attempt_at, 'infinity') AS next_attempt_at, updated_at
                  FROM sandboxes WHERE last_error IS NOT NULL
                UNION ALL
                SELECT 'database', resource_name, status, attempts, last_error, nullif(next_attempt_at, 'infinity'), updated_at
                  FROM databases WHERE last_error IS NOT NULL) e
              ORDER BY updated_at DESC LIMIT 20",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(RecentError {
                kind: r.try_get("kind")?,
                resource_name: r.try_get("resource_name")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let pool = self.pool_status(PoolKind::Database).await?;
        let sandbox_pool = self.pool_status(PoolKind::Sandbox).await?;
        Ok(ReplicaStatus {
            pool,
            sandbox_pool,
            lease_holders: holders,
            queue_depth,
            by_status,
            errors,
        })
    }
}
