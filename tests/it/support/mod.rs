//! Shared test harness: a fresh database per test on the real Postgres server,
//! and a small helper to wait for a condition with a bounded timeout.
#![allow(dead_code)]

use std::time::Duration;

use kiln::store::{SecretKey, Store};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static ADMIN_URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// The server tests run against: `KILN_TEST_ADMIN_URL`, else the server on
/// 127.0.0.1:5432 (`.ci/run` makes sure it is up), else a private cluster
/// under /tmp started with the embedded-Postgres code, so `cargo test` also
/// works on a machine with PostgreSQL binaries but no running server.
pub async fn admin_url() -> String {
    if let Ok(url) = std::env::var("KILN_TEST_ADMIN_URL") {
        return url;
    }
    ADMIN_URL
        .get_or_init(|| async {
            if PgConnection::connect(DEFAULT_ADMIN_URL).await.is_ok() {
                return DEFAULT_ADMIN_URL.to_string();
            }
            let pg = kiln::embedded_pg::EmbeddedPostgres::start(std::path::Path::new(
                "/tmp/kiln-test-pg",
            ))
            .await
            .expect("no Postgres on 127.0.0.1:5432 and the embedded cluster did not start");
            let url = pg.admin_url();
            // Left running on purpose: later runs reuse it.
            std::mem::forget(pg);
            url
        })
        .await
        .clone()
}

/// A database created for one test and dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub admin_url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let name = format!("kiln_test_{}", uuid::Uuid::new_v4().simple());
        let admin_url = admin_url().await;
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to the test Postgres server (set KILN_TEST_ADMIN_URL)");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = with_database(&admin_url, &name);
        TestDb {
            name,
            url,
            admin_url,
        }
    }

    /// A migrated store on this database with a fresh key.
    pub async fn store(&self) -> Store {
        self.store_with_key(SecretKey::generate()).await
    }

    pub async fn store_with_key(&self, key: SecretKey) -> Store {
        let store = Store::connect(&self.url, key, 20).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        // Drop runs outside async context guarantees; use a private runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

pub use kiln::runtime::with_database;

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
/// Tests bound their waits this way instead of asserting on timings.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
pub mod embedded;
pub mod git;
pub mod git_http;
pub mod http;
pub mod k8s;
pub mod proxy;
pub mod sandboxes;
pub mod serve;
pub mod ssh;
