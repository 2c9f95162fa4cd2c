//! The reconcile queue as an operator sees it: how much is due, how much
//! this replica holds, and whether the schema is the one this binary
//! expects. Read at scrape and probe time, never on the loop's hot path.

use super::{MIGRATOR, Store, StoreResult};

impl Store {
    /// Resources due for work and not leased by anyone.
    pub async fn queue_depth(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM sandboxes
                      WHERE next_attempt_at <= now()
                        AND (lease_until IS NULL OR lease_until < now()))
                  + (SELECT count(*) FROM databases
                      WHERE next_attempt_at <= now()
                        AND (lease_until IS NULL OR lease_until < now()))",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The newest migration applied to the database, and the newest this
    /// binary carries.
    pub async fn migration_versions(&self) -> StoreResult<(Option<i64>, i64)> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        let expected = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        Ok((applied, expected))
    }
}
