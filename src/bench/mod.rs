//! Benchmarks that print numbers (never asserted): `kiln bench …`.
//! Each runs in a scratch database on the configured server, dropped afterwards.

pub mod agents;
pub mod attach;
pub mod console;
pub mod create;
pub mod faults;
#[cfg(feature = "test-support")]
pub mod reconcile;
mod scrape;

pub use agents::agents;
pub use attach::attach;
pub use console::console;
pub use create::create;
pub use faults::faults;
#[cfg(feature = "test-support")]
pub use reconcile::reconcile;

use anyhow::Context;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

/// A throwaway database for one benchmark run.
pub(crate) struct Scratch {
    admin: PgConnection,
    admin_url: String,
    name: String,
    pub url: String,
}

impl Scratch {
    pub async fn create(admin_url: &str) -> anyhow::Result<Scratch> {
        let name = format!("kiln_bench_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url)
            .await
            .context("connecting to the admin URL")?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        Ok(Scratch {
            admin,
            admin_url: admin_url.to_string(),
            url: crate::runtime::with_database(admin_url, &name),
            name,
        })
    }

    /// Drops the database; over a new connection if the first one died (the
    /// fault suite restarts the server under it).
    pub async fn drop_database(mut self) -> anyhow::Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if sqlx::query(AssertSqlSafe(sql.clone()))
            .execute(&mut self.admin)
            .await
            .is_err()
        {
            let mut admin = PgConnection::connect(&self.admin_url).await?;
            sqlx::query(AssertSqlSafe(sql)).execute(&mut admin).await?;
        }
        Ok(())
    }
}

/// The `p`-quantile of sorted samples.
pub(crate) fn quantile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// How to get `kiln bench reconcile` when this build left it out.
pub const RECONCILE_NEEDS: &str = "kiln bench reconcile runs on the fake driver, which this build leaves out: \
     run it with `cargo run --release --features test-support -- bench reconcile`";

/// Whether this build has `kiln bench reconcile` (it needs the fake driver,
/// compiled only with the `test-support` feature).
pub fn reconcile_available() -> anyhow::Result<()> {
    if cfg!(feature = "test-support") {
        Ok(())
    } else {
        anyhow::bail!(RECONCILE_NEEDS)
    }
}

/// Stands in for the benchmark in a build without the fake driver.
#[cfg(not(feature = "test-support"))]
pub async fn reconcile(
    _admin_url: &str,
    _projects: usize,
    _idle_projects: usize,
) -> anyhow::Result<()> {
    anyhow::bail!(RECONCILE_NEEDS)
}
