//! The counting driver of the fault suite: a stand-in for tmux sessions and
//! tenant databases whose "world" is two tables in a database of its own,
//! shared by every replica process, so what one replica did is still there
//! after it is killed. Each call changes the world and logs its effect in one
//! transaction (a create, a start, a stop, a delete, or a no-op when the
//! world was already there), so duplicates and orphans show across kills.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::driver::{
    DatabaseDriver, DatabaseSpec, DbCredentials, DriverError, DriverResult, Observed, ResourceRef,
    SandboxDriver, SandboxSpec,
};

/// Creates the world's tables in an empty database.
pub async fn create_schema(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE world_objects (
             kind text NOT NULL, name text NOT NULL, state text NOT NULL,
             PRIMARY KEY (kind, name));
         CREATE TABLE world_calls (
             id bigserial PRIMARY KEY, kind text NOT NULL, name text NOT NULL,
             op text NOT NULL, effect text NOT NULL, replica text NOT NULL,
             at timestamptz NOT NULL DEFAULT clock_timestamp());",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The driver one replica uses. `latency` is spent half before and half
/// after the world changes, so a kill can land on either side of it.
pub struct WorldDriver {
    pool: PgPool,
    replica: String,
    latency: Duration,
}

impl WorldDriver {
    pub async fn connect(url: &str, replica: &str, latency: Duration) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self {
            pool,
            replica: replica.to_string(),
            latency,
        })
    }

    /// Applies `op` to one object: `next` maps its current state (`None` =
    /// absent) to the new one and the effect's name.
    async fn apply(
        &self,
        kind: &str,
        name: &str,
        op: &str,
        next: impl FnOnce(Option<&str>) -> (Option<&'static str>, &'static str),
    ) -> DriverResult<Option<&'static str>> {
        let half = self.latency / 2;
        if !half.is_zero() {
            tokio::time::sleep(half).await;
        }
        let r = self.apply_now(kind, name, op, next).await;
        if !half.is_zero() {
            tokio::time::sleep(half).await;
        }
        r.map_err(|e| DriverError::transient(format!("world: {e}")))
    }

    async fn apply_now(
        &self,
        kind: &str,
        name: &str,
        op: &str,
        next: impl FnOnce(Option<&str>) -> (Option<&'static str>, &'static str),
    ) -> Result<Option<&'static str>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
            .bind(kind)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM world_objects WHERE kind = $1 AND name = $2")
                .bind(kind)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let (state, effect) = next(current.as_deref());
        match state {
            Some(s) => sqlx::query(
                "INSERT INTO world_objects (kind, name, state) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, name) DO UPDATE SET state = excluded.state",
            )
            .bind(kind)
            .bind(name)
            .bind(s),
            None => sqlx::query("DELETE FROM world_objects WHERE kind = $1 AND name = $2")
                .bind(kind)
                .bind(name),
        }
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO world_calls (kind, name, op, effect, replica) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(kind)
        .bind(name)
        .bind(op)
        .bind(effect)
        .bind(&self.replica)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(state)
    }

    async fn ensure_kind(&self, kind: &str, name: &str) -> DriverResult<Observed> {
        self.apply(kind, name, "ensure", |s| match s {
            None => (Some("running"), "create"),
            Some("running") => (Some("running"), "noop"),
            Some(_) => (Some("running"), "start"),
        })
        .await?;
        Ok(Observed::Running)
    }

    async fn stop_kind(&self, kind: &str, name: &str) -> DriverResult<Observed> {
        let state = self
            .apply(kind, name, "stop", |s| match s {
                None => (None, "noop"),
                Some("stopped") => (Some("stopped"), "noop"),
                Some(_) => (Some("stopped"), "stop"),
            })
            .await?;
        Ok(state.map_or(Observed::Absent, |_| Observed::Stopped))
    }

    async fn delete_kind(&self, kind: &str, name: &str) -> DriverResult<()> {
        self.apply(kind, name, "delete", |s| match s {
            None => (None, "noop"),
            Some(_) => (None, "delete"),
        })
        .await?;
        Ok(())
    }

    async fn observe_kind(
        &self,
        kind: &str,
        rs: &[ResourceRef],
    ) -> DriverResult<HashMap<String, Observed>> {
        let names: Vec<String> = rs.iter().map(|r| r.resource_name.clone()).collect();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, state FROM world_objects WHERE kind = $1 AND name = ANY($2)",
        )
        .bind(kind)
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| DriverError::transient(format!("world: {e}")))?;
        let mut seen: HashMap<String, Observed> =
            names.into_iter().map(|n| (n, Observed::Absent)).collect();
        for (name, state) in rows {
            let o = if state == "running" {
                Observed::Running
            } else {
                Observed::Stopped
            };
            seen.insert(name, o);
        }
        Ok(seen)
    }
}

#[async_trait]
impl SandboxDriver for WorldDriver {
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        self.ensure_kind("sandbox", &spec.resource.resource_name)
            .await
    }

    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed> {
        self.stop_kind("sandbox", &r.resource_name).await
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        self.delete_kind("sandbox", &r.resource_name).await
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        self.observe_kind("sandbox", rs).await
    }

    async fn sync_env(&self, spec: &SandboxSpec) -> DriverResult<()> {
        let state = self
            .apply(
                "sandbox",
                &spec.resource.resource_name,
                "sync_env",
                |s| match s {
                    Some("running") => (Some("running"), "sync_env"),
                    Some("stopped") => (Some("stopped"), "noop"),
                    _ => (None, "noop"),
                },
            )
            .await?;
        if state != Some("running") {
            return Err(DriverError::transient(format!(
                "sandbox {} is not running",
                spec.resource.resource_name
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl DatabaseDriver for WorldDriver {
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        self.ensure_kind("database", &spec.resource.resource_name)
            .await
    }

    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        self.stop_kind("database", &spec.resource.resource_name)
            .await
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        self.delete_kind("database", &r.resource_name).await
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        self.observe_kind("database", rs).await
    }

    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        Ok(Some(DbCredentials {
            host: "world.invalid".into(),
            port: 5432,
            database: spec.resource.resource_name.clone(),
            user: spec.resource.resource_name.clone(),
            password: spec.password.clone(),
        }))
    }
}

/// What the world's log says, read once the run is over.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Calls by (op, effect), over every resource.
    pub calls: Vec<(String, String, i64)>,
    /// (kind, name, creates) for every object created more than once.
    pub duplicates: Vec<(String, String, i64)>,
    /// Calls per replica.
    pub by_replica: Vec<(String, i64)>,
}

impl Ledger {
    pub async fn read(world: &PgPool) -> anyhow::Result<Ledger> {
        let calls = sqlx::query_as(
            "SELECT op, effect, count(*) FROM world_calls GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(world)
        .await?;
        let duplicates = sqlx::query_as(
            "SELECT kind, name, count(*) FROM world_calls WHERE effect = 'create'
              GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2",
        )
        .fetch_all(world)
        .await?;
        let by_replica = sqlx::query_as(
            "SELECT split_part(replica, '.', 1), count(*) FROM world_calls GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(world)
        .await?;
        Ok(Ledger {
            calls,
            duplicates,
            by_replica,
        })
    }

    pub fn count(&self, op: &str, effect: &str) -> i64 {
        self.calls
            .iter()
            .filter(|(o, e, _)| o == op && e == effect)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// `op:effect=n` for every pair, for the report.
    pub fn summary(&self) -> String {
        self.calls
            .iter()
            .map(|(o, e, n)| format!("{o}:{e}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// World objects with no resource row left in Kiln's database.
pub async fn orphans(world: &PgPool, kiln: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    let objects: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, name FROM world_objects ORDER BY 1, 2")
            .fetch_all(world)
            .await?;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT resource_name FROM sandboxes UNION ALL SELECT resource_name FROM databases",
    )
    .fetch_all(kiln)
    .await?;
    let rows: std::collections::HashSet<String> = rows.into_iter().collect();
    Ok(objects
        .into_iter()
        .filter(|(_, n)| !rows.contains(n))
        .collect())
}
