//! Quotas per owner (a user, or a team's account): setting them, reading
//! usage against them, and the check that runs inside a create's or a
//! start's transaction under the owner's lock.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Store, StoreError, StoreResult};
use crate::model::quota::{self, Ask, Holder, Limits, SandboxSize, Usage};

/// Serialises every create and start of one owner until the transaction
/// ends: the count that the quota check reads cannot change under it.
/// Taken before any project row lock, always in that order.
pub(crate) async fn lock_owner(conn: &mut PgConnection, owner: Uuid) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('kiln-quota:' || $1::text, 0))")
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Limits and usage of `owner`, and whose they are. `except` leaves one
/// project's sandbox out of the running count (the one being started).
async fn read(
    conn: &mut PgConnection,
    owner: Uuid,
    except: Option<Uuid>,
    server: Option<SandboxSize>,
) -> StoreResult<(Limits, Usage, Holder)> {
    read_many(conn, &[owner], except, server)
        .await?
        .pop()
        .map(|(_, limits, usage, holder)| (limits, usage, holder))
        .ok_or_else(|| StoreError::NotFound("no such owner".into()))
}

/// [`read`] for several owners in two queries at most, in their order; an
/// owner that does not exist (a team deleted meanwhile) is left out.
async fn read_many(
    conn: &mut PgConnection,
    owners: &[Uuid],
    except: Option<Uuid>,
    server: Option<SandboxSize>,
) -> StoreResult<Vec<(Uuid, Limits, Usage, Holder)>> {
    let rows = sqlx::query(
        "SELECT u.id, u.username, u.role, q.max_projects, q.max_running,
                q.max_cpu_millis, q.max_memory_bytes,
                (SELECT count(*) FROM projects p WHERE p.user_id = u.id
                   AND EXISTS (SELECT 1 FROM sandboxes s
                               WHERE s.project_id = p.id AND s.desired <> 'TERMINATED')) AS projects,
                (SELECT count(*) FROM sandboxes s WHERE s.user_id = u.id AND s.desired = 'RUNNING'
                   AND s.project_id IS DISTINCT FROM $2) AS running
         FROM unnest($1::uuid[]) WITH ORDINALITY AS o(id, n)
         JOIN users u ON u.id = o.id LEFT JOIN quotas q ON q.user_id = u.id
         ORDER BY o.n",
    )
    .bind(owners)
    .bind(except)
    .fetch_all(&mut *conn)
    .await?;
    // On Kubernetes each running sandbox counts what it requests: its
    // template's size, or the server's.
    let mut sizes: std::collections::HashMap<Uuid, Vec<SandboxSize>> = Default::default();
    if let Some(server) = server {
        for r in sqlx::query(
            "SELECT s.user_id, p.k8s_cpu, p.k8s_memory
             FROM sandboxes s JOIN projects p ON p.id = s.project_id
             WHERE s.user_id = ANY($1) AND s.desired = 'RUNNING'
               AND s.project_id IS DISTINCT FROM $2",
        )
        .bind(owners)
        .bind(except)
        .fetch_all(&mut *conn)
        .await?
        {
            sizes
                .entry(r.try_get("user_id")?)
                .or_default()
                .push(server.with_template(
                    r.try_get::<Option<&str>, _>("k8s_cpu")?,
                    r.try_get::<Option<&str>, _>("k8s_memory")?,
                ));
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        let role: String = row.try_get("role")?;
        let holder = if role == "team" {
            Holder::Team(row.try_get("username")?)
        } else {
            Holder::You
        };
        let limits = Limits {
            projects: row
                .try_get::<Option<i32>, _>("max_projects")?
                .map(i64::from),
            running: row.try_get::<Option<i32>, _>("max_running")?.map(i64::from),
            cpu_millis: row.try_get("max_cpu_millis")?,
            memory_bytes: row.try_get("max_memory_bytes")?,
        };
        let projects = row.try_get("projects")?;
        let usage = match server {
            Some(_) => Usage::of_sizes(projects, sizes.get(&id).map_or(&[], Vec::as_slice)),
            None => Usage::of(projects, row.try_get("running")?, None),
        };
        out.push((id, limits, usage, holder));
    }
    Ok(out)
}

/// The CPU and memory a project's template gives its sandbox (`None`
/// where it names none).
pub(crate) async fn project_sizing(
    conn: &mut PgConnection,
    project: Uuid,
) -> StoreResult<(Option<String>, Option<String>)> {
    let row = sqlx::query("SELECT k8s_cpu, k8s_memory FROM projects WHERE id = $1")
        .bind(project)
        .fetch_one(&mut *conn)
        .await?;
    Ok((row.try_get("k8s_cpu")?, row.try_get("k8s_memory")?))
}

/// The quota check inside a transaction that holds [`lock_owner`]: `ask`
/// for a sandbox of `server`'s size or, where its template names them,
/// `cpu` and `memory` (`server` is `None` off Kubernetes). `except` is the
/// project being started, left out of the running count.
pub(crate) async fn check(
    conn: &mut PgConnection,
    owner: Uuid,
    ask: Ask,
    except: Option<Uuid>,
    server: Option<SandboxSize>,
    (cpu, memory): (Option<&str>, Option<&str>),
) -> StoreResult<()> {
    let (limits, usage, holder) = read(conn, owner, except, server).await?;
    let size = server.map(|s| s.with_template(cpu, memory));
    quota::check(ask, limits, usage, size, &holder)?;
    Ok(())
}

impl Store {
    /// Sets `owner`'s limits (`None`: no limit), replacing earlier ones.
    pub async fn set_quota(&self, owner: Uuid, limits: Limits) -> StoreResult<()> {
        let narrow = |v: Option<i64>| {
            v.map(|n| {
                i32::try_from(n).map_err(|_| StoreError::Invalid(format!("{n} is too large")))
            })
            .transpose()
        };
        sqlx::query(
            "INSERT INTO quotas (user_id, max_projects, max_running, max_cpu_millis, max_memory_bytes)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE
             SET max_projects = EXCLUDED.max_projects, max_running = EXCLUDED.max_running,
                 max_cpu_millis = EXCLUDED.max_cpu_millis,
                 max_memory_bytes = EXCLUDED.max_memory_bytes",
        )
        .bind(owner)
        .bind(narrow(limits.projects)?)
        .bind(narrow(limits.running)?)
        .bind(limits.cpu_millis)
        .bind(limits.memory_bytes)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The quota check a create or start makes, alone: the owner's lock
    /// and the check in a transaction that is then rolled back (`kiln
    /// bench teams` times it; nothing is written).
    pub async fn probe_quota(&self, owner: Uuid, ask: Ask) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        lock_owner(&mut tx, owner).await?;
        let checked = check(&mut tx, owner, ask, None, self.sandbox_size, (None, None)).await;
        tx.rollback().await?;
        checked
    }

    /// `owner`'s limits and what it uses now.
    pub async fn quota_usage(&self, owner: Uuid) -> StoreResult<(Limits, Usage)> {
        let mut conn = self.pool.acquire().await?;
        let (limits, usage, _) = read(&mut conn, owner, None, self.sandbox_size).await?;
        Ok((limits, usage))
    }

    /// [`Store::quota_usage`] of several owners at once, in two queries at
    /// most, by owner (one that no longer exists is left out).
    pub async fn quota_usages(
        &self,
        owners: &[Uuid],
    ) -> StoreResult<std::collections::HashMap<Uuid, (Limits, Usage)>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_many(&mut conn, owners, None, self.sandbox_size)
            .await?
            .into_iter()
            .map(|(id, limits, usage, _)| (id, (limits, usage)))
            .collect())
    }
}
