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
pub mod teams;

pub use agents::agents;
pub use attach::attach;
pub use console::console;
pub use create::create;
pub use faults::faults;
#[cfg(feature = "test-support")]
pub use reconcile::reconcile;
pub use teams::teams;

use anyhow::Context;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

/// What each console bench starts from: a migrated store under a fresh
/// secret key (the server it starts must be given the same one) and one
/// user, `bench`, who signs in with a fresh Ed25519 key.
pub(crate) struct BenchUser {
    pub store: crate::store::Store,
    /// The store's secret key, hex: for the server the bench starts.
    pub key_hex: String,
    pub id: Uuid,
    pub key: std::sync::Arc<russh::keys::PrivateKey>,
}

impl BenchUser {
    pub async fn create(url: &str) -> anyhow::Result<BenchUser> {
        let key_hex: String = {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).expect("random");
            b.iter().map(|x| format!("{x:02x}")).collect()
        };
        let store =
            crate::store::Store::connect(url, crate::store::SecretKey::from_hex(&key_hex)?, 4)
                .await?;
        store.migrate().await?;
        let user = store.create_user("bench", None, false).await?;
        let key = russh::keys::PrivateKey::random(
            &mut russh::keys::key::safe_rng(),
            russh::keys::Algorithm::Ed25519,
        )?;
        store
            .add_ssh_key(user.id, &key.public_key().to_openssh()?)
            .await?;
        Ok(BenchUser {
            store,
            key_hex,
            id: user.id,
            key: std::sync::Arc::new(key),
        })
    }
}

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
