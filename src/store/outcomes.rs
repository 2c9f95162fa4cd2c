//! The reconcile loop's hot path: the outcomes of a batch written as sets.
//!
//! One batch costs a fixed number of statements, whatever its size: lock
//! the projects, write the fenced rows of each kind, append their events,
//! give back the leases of rows that were not written, bump env versions,
//! re-aggregate each affected project once. Every row is fenced exactly as a
//! lone write would be (lease token and intent sequence), so a row whose lease
//! was lost or whose intent moved on is skipped, never written.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use super::resources::{Leased, Outcome, ResourceKind, WriteResult};
use super::{Store, StoreResult, parse};
use crate::model::{ResourceStatus, aggregate};

/// A database row's connection columns: host, port, database, user.
type StoredConnection = (Option<String>, Option<i32>, Option<String>, Option<String>);

impl Store {
    /// Writes one outcome, fenced by the lease token and the intent sequence,
    /// re-aggregating the project and appending events in the same transaction.
    pub async fn record_outcome(
        &self,
        row: &Leased,
        outcome: &Outcome,
        actor: &str,
    ) -> StoreResult<WriteResult> {
        let written = self.record_outcomes(&[(row, outcome)], actor).await?;
        Ok(written[0])
    }

    /// Writes the outcomes of one batch in one transaction of a fixed number
    /// of set statements, so the loop's throughput is bound by its work
    /// rather than by round trips. The projects are locked in id order: two
    /// replicas writing batches that share projects take the locks in the same
    /// order and cannot deadlock. The answers are in the order of `outcomes`.
    pub async fn record_outcomes(
        &self,
        outcomes: &[(&Leased, &Outcome)],
        actor: &str,
    ) -> StoreResult<Vec<WriteResult>> {
        let mut written = vec![WriteResult::LeaseLost; outcomes.len()];
        if outcomes.is_empty() {
            return Ok(written);
        }
        let mut tx = self.pool.begin().await?;
        let conn: &mut PgConnection = &mut tx;

        // The project locks first, as every writer of a project's resources
        // takes them; what follows sees what the previous holder committed.
        let project_ids: Vec<Uuid> = outcomes
            .iter()
            .map(|(r, _)| r.project_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let before: HashMap<Uuid, String> = sqlx::query_as::<_, (Uuid, String)>(
            "SELECT id, status FROM projects WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&project_ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        // A row of a project that is gone is a lease lost.
        let live: Vec<usize> = (0..outcomes.len())
            .filter(|&i| before.contains_key(&outcomes[i].0.project_id))
            .collect();

        let connection_changed = connection_changes(conn, outcomes, &live).await?;

        // The fenced writes, one statement per kind and shape.
        let mut done: BTreeSet<Uuid> = BTreeSet::new();
        for kind in ResourceKind::ALL {
            let of_kind = |terminated: bool| -> Vec<usize> {
                live.iter()
                    .copied()
                    .filter(|&i| {
                        let (r, o) = outcomes[i];
                        r.kind == kind && (o.status == ResourceStatus::Terminated) == terminated
                    })
                    .collect()
            };
            done.extend(delete_terminated(conn, kind, outcomes, &of_kind(true)).await?);
            done.extend(update_rows(conn, kind, outcomes, &of_kind(false)).await?);
        }

        // The events of the rows written, then the leases of the others back.
        append_resource_events(conn, outcomes, &live, &done, actor).await?;
        let not_written: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| !done.contains(&outcomes[i].0.id))
            .collect();
        let released = release_superseded(conn, outcomes, &not_written).await?;
        for &i in &live {
            let id = outcomes[i].0.id;
            written[i] = if done.contains(&id) {
                WriteResult::Written
            } else if released.contains(&id) {
                // An intent superseded the work while we held the lease:
                // the row is due again at once.
                WriteResult::Superseded
            } else {
                WriteResult::LeaseLost
            };
        }

        // New or different connection details change the sandbox's
        // DATABASE_URL: on Kubernetes they appear only once the cluster is
        // up, after the sandbox was created without them. A sandbox whose
        // DATABASE_URL was built from those very details (recorded with its
        // outcome, in this batch or an earlier one) has it already and is
        // not synced again.
        let mut new_connections: BTreeMap<Uuid, String> = BTreeMap::new();
        for &i in &live {
            let (r, o) = outcomes[i];
            if let Some(c) = &o.connection
                && connection_changed.contains(&i)
                && done.contains(&r.id)
            {
                new_connections.insert(r.project_id, connection_key(c));
            }
        }
        // A sandbox written in this very batch with its DATABASE_URL built
        // from the new details is up to date: no statement needs to look
        // (the common case, a create's two resources written together).
        for &i in &live {
            let (r, o) = outcomes[i];
            if r.kind == ResourceKind::Sandbox
                && done.contains(&r.id)
                && o.applied_env_version.is_some()
                && let Some(applied) = &o.applied_database
                && new_connections.get(&r.project_id) == Some(&connection_key(applied))
            {
                new_connections.remove(&r.project_id);
            }
        }
        bump_env_versions(conn, &new_connections).await?;

        reaggregate(conn, outcomes, &live, &done, &before, actor).await?;
        tx.commit().await?;
        Ok(written)
    }
}

/// Which database rows (indices) bring connection details that differ from
/// the stored ones.
async fn connection_changes(
    conn: &mut PgConnection,
    outcomes: &[(&Leased, &Outcome)],
    live: &[usize],
) -> StoreResult<BTreeSet<usize>> {
    let with_connection: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&i| {
            let (r, o) = outcomes[i];
            r.kind == ResourceKind::Database && o.connection.is_some()
        })
        .collect();
    if with_connection.is_empty() {
        return Ok(BTreeSet::new());
    }
    let ids: Vec<Uuid> = with_connection.iter().map(|&i| outcomes[i].0.id).collect();
    let stored: HashMap<Uuid, StoredConnection> =
        sqlx::query_as::<
            _,
            (
                Uuid,
                Option<String>,
                Option<i32>,
                Option<String>,
                Option<String>,
            ),
        >("SELECT id, db_host, db_port, db_name, db_user FROM databases WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, h, p, d, u)| (id, (h, p, d, u)))
        .collect();
    Ok(with_connection
        .into_iter()
        .filter(|&i| {
            let (r, o) = outcomes[i];
            let Some((host, port, db, user)) = &o.connection else {
                return false;
            };
            stored.get(&r.id).is_some_and(|b| {
                *b != (
                    Some(host.clone()),
                    Some(*port),
                    Some(db.clone()),
                    Some(user.clone()),
                )
            })
        })
        .collect())
}

/// The fence of a row: its id, lease token and intent sequence.
fn fences(outcomes: &[(&Leased, &Outcome)], rows: &[usize]) -> (Vec<Uuid>, Vec<Uuid>, Vec<i64>) {
    let ids = rows.iter().map(|&i| outcomes[i].0.id).collect();
    let tokens = rows.iter().map(|&i| outcomes[i].0.lease_token).collect();
    let seqs = rows.iter().map(|&i| outcomes[i].0.intent_seq).collect();
    (ids, tokens, seqs)
}

/// Removes the rows whose outcome is `Terminated`, fenced; their ids.
async fn delete_terminated(
    conn: &mut PgConnection,
    kind: ResourceKind,
    outcomes: &[(&Leased, &Outcome)],
    rows: &[usize],
) -> StoreResult<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, tokens, seqs) = fences(outcomes, rows);
    let sql = format!(
        "DELETE FROM {table} t
          USING unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS u(id, token, seq)
          WHERE t.id = u.id AND t.lease_token = u.token AND t.intent_seq = u.seq
          RETURNING t.id",
        table = kind.table()
    );
    Ok(sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(&ids)
        .bind(&tokens)
        .bind(&seqs)
        .fetch_all(&mut *conn)
        .await?)
}

/// Writes the new status (and what comes with it) of the other rows,
/// fenced, giving their leases back; their ids.
async fn update_rows(
    conn: &mut PgConnection,
    kind: ResourceKind,
    outcomes: &[(&Leased, &Outcome)],
    rows: &[usize],
) -> StoreResult<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, tokens, seqs) = fences(outcomes, rows);
    let out = |i: usize| outcomes[i].1;
    let statuses: Vec<&str> = rows.iter().map(|&i| out(i).status.as_str()).collect();
    let attempts: Vec<i32> = rows.iter().map(|&i| out(i).attempts).collect();
    let errors: Vec<Option<&str>> = rows.iter().map(|&i| out(i).last_error.as_deref()).collect();
    let next_in: Vec<Option<f64>> = rows
        .iter()
        .map(|&i| out(i).next_attempt_in.map(|d| d.as_secs_f64()))
        .collect();
    let query = match kind {
        ResourceKind::Sandbox => {
            let applied: Vec<Option<i64>> =
                rows.iter().map(|&i| out(i).applied_env_version).collect();
            let failure_kinds: Vec<Option<&str>> = rows
                .iter()
                .map(|&i| out(i).failure_kind.map(|k| k.as_str()))
                .collect();
            let applied_databases: Vec<Option<String>> = rows
                .iter()
                .map(|&i| out(i).applied_database.as_ref().map(connection_key))
                .collect();
            sqlx::query_scalar::<_, Uuid>(
                "UPDATE sandboxes t
                    SET status = u.status, attempts = u.attempts, last_error = u.err,
                        failure_kind = u.failure_kind,
                        observed_at = now(),
                        applied_env_version = coalesce(u.applied, t.applied_env_version),
                        -- what its DATABASE_URL was built from, whenever it
                        -- applied an environment (none: no database yet)
                        applied_database = CASE WHEN u.applied IS NOT NULL
                                                THEN u.applied_db ELSE t.applied_database END,
                        -- settled on an env version that changed meanwhile: due again now
                        next_attempt_at = CASE
                            WHEN u.status <> 'ERROR'
                                 AND coalesce(u.applied, t.applied_env_version) < p.env_version
                            THEN now()
                            ELSE coalesce(now() + make_interval(secs => u.secs), 'infinity') END,
                        lease_owner = NULL, lease_token = NULL, lease_until = NULL
                   FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::int4[],
                               $6::text[], $7::float8[], $8::int8[], $9::text[], $10::text[])
                          AS u(id, token, seq, status, attempts, err, secs, applied,
                               failure_kind, applied_db),
                        projects p
                  WHERE t.id = u.id AND t.lease_token = u.token AND t.intent_seq = u.seq
                    AND p.id = t.project_id
                  RETURNING t.id",
            )
            .bind(ids)
            .bind(tokens)
            .bind(seqs)
            .bind(statuses)
            .bind(attempts)
            .bind(errors)
            .bind(next_in)
            .bind(applied)
            .bind(failure_kinds)
            .bind(applied_databases)
        }
        ResourceKind::Database => {
            let connection = |i: usize| out(i).connection.as_ref();
            let hosts: Vec<Option<&str>> = rows
                .iter()
                .map(|&i| connection(i).map(|c| c.0.as_str()))
                .collect();
            let ports: Vec<Option<i32>> =
                rows.iter().map(|&i| connection(i).map(|c| c.1)).collect();
            let names: Vec<Option<&str>> = rows
                .iter()
                .map(|&i| connection(i).map(|c| c.2.as_str()))
                .collect();
            let users: Vec<Option<&str>> = rows
                .iter()
                .map(|&i| connection(i).map(|c| c.3.as_str()))
                .collect();
            sqlx::query_scalar::<_, Uuid>(
                "UPDATE databases t
                    SET status = u.status, attempts = u.attempts, last_error = u.err,
                        observed_at = now(),
                        next_attempt_at = coalesce(now() + make_interval(secs => u.secs), 'infinity'),
                        db_host = coalesce(u.host, t.db_host), db_port = coalesce(u.port, t.db_port),
                        db_name = coalesce(u.name, t.db_name), db_user = coalesce(u.usr, t.db_user),
                        lease_owner = NULL, lease_token = NULL, lease_until = NULL
                   FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::int4[],
                               $6::text[], $7::float8[], $8::text[], $9::int4[], $10::text[],
                               $11::text[])
                          AS u(id, token, seq, status, attempts, err, secs, host, port, name, usr)
                  WHERE t.id = u.id AND t.lease_token = u.token AND t.intent_seq = u.seq
                  RETURNING t.id",
            )
            .bind(ids)
            .bind(tokens)
            .bind(seqs)
            .bind(statuses)
            .bind(attempts)
            .bind(errors)
            .bind(next_in)
            .bind(hosts)
            .bind(ports)
            .bind(names)
            .bind(users)
        }
    };
    Ok(query.fetch_all(&mut *conn).await?)
}

/// An event for each written row whose status changed or that brings a new
/// error. `clock_timestamp()`, not `now()`: the events of one transaction
/// keep the order they were written in.
async fn append_resource_events(
    conn: &mut PgConnection,
    outcomes: &[(&Leased, &Outcome)],
    live: &[usize],
    done: &BTreeSet<Uuid>,
    actor: &str,
) -> StoreResult<()> {
    let rows: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&i| {
            let (r, o) = outcomes[i];
            done.contains(&r.id)
                && (o.status != r.status
                    || (o.last_error.is_some() && o.last_error != r.last_error))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let row = |i: usize| outcomes[i].0;
    let project_ids: Vec<Uuid> = rows.iter().map(|&i| row(i).project_id).collect();
    let user_ids: Vec<Uuid> = rows.iter().map(|&i| row(i).user_id).collect();
    let kinds: Vec<&str> = rows
        .iter()
        .map(|&i| row(i).kind.event_kind().as_str())
        .collect();
    let resources: Vec<&str> = rows
        .iter()
        .map(|&i| row(i).resource_name.as_str())
        .collect();
    let from: Vec<&str> = rows.iter().map(|&i| row(i).status.as_str()).collect();
    let to: Vec<&str> = rows
        .iter()
        .map(|&i| outcomes[i].1.status.as_str())
        .collect();
    let messages: Vec<&str> = rows
        .iter()
        .map(|&i| outcomes[i].1.message.as_str())
        .collect();
    sqlx::query(
        "INSERT INTO events (project_id, user_id, kind, resource, from_status, to_status,
                             message, actor, created_at)
         SELECT u.project_id, u.user_id, u.kind, u.resource, u.from_status, u.to_status,
                u.message, $8, clock_timestamp()
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::text[])
                  WITH ORDINALITY
                  AS u(project_id, user_id, kind, resource, from_status, to_status, message, n)
          ORDER BY u.n",
    )
    .bind(project_ids)
    .bind(user_ids)
    .bind(kinds)
    .bind(resources)
    .bind(from)
    .bind(to)
    .bind(messages)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Gives back the leases of rows that were not written: those we still hold
/// were superseded by an intent and are due again at once. Their ids.
async fn release_superseded(
    conn: &mut PgConnection,
    outcomes: &[(&Leased, &Outcome)],
    rows: &[usize],
) -> StoreResult<BTreeSet<Uuid>> {
    let mut released = BTreeSet::new();
    for kind in ResourceKind::ALL {
        let of_kind: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| outcomes[i].0.kind == kind)
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let (ids, tokens, _) = fences(outcomes, &of_kind);
        let sql = format!(
            "UPDATE {table} t SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
               FROM unnest($1::uuid[], $2::uuid[]) AS u(id, token)
              WHERE t.id = u.id AND t.lease_token = u.token
              RETURNING t.id",
            table = kind.table()
        );
        released.extend(
            sqlx::query_scalar::<_, Uuid>(AssertSqlSafe(sql))
                .bind(&ids)
                .bind(&tokens)
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(released)
}

/// A new env version for each project whose sandbox's `DATABASE_URL` was
/// not built from its database's new connection (`projects`: project id →
/// [`connection_key`]), and its sandbox due now to apply it. One
/// statement, whatever it finds.
async fn bump_env_versions(
    conn: &mut PgConnection,
    projects: &BTreeMap<Uuid, String>,
) -> StoreResult<()> {
    if projects.is_empty() {
        return Ok(());
    }
    let (ids, keys): (Vec<Uuid>, Vec<&str>) =
        projects.iter().map(|(id, k)| (*id, k.as_str())).unzip();
    sqlx::query(
        // Each `= ANY($1)` is redundant but for the planner: it reaches the
        // rows by key instead of scanning whole tables to join sets it
        // cannot size.
        "WITH new AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS n(project_id, conn)),
              stale AS (SELECT DISTINCT s.project_id FROM sandboxes s
                          JOIN new n ON n.project_id = s.project_id
                         WHERE s.project_id = ANY($1)
                           AND s.applied_database IS DISTINCT FROM n.conn),
              bumped AS (UPDATE projects SET env_version = env_version + 1
                          WHERE id = ANY($1) AND id IN (SELECT project_id FROM stale))
         UPDATE sandboxes SET next_attempt_at = least(next_attempt_at, now())
          WHERE project_id = ANY($1) AND project_id IN (SELECT project_id FROM stale)
            AND status <> 'ERROR'",
    )
    .bind(ids)
    .bind(keys)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How a database connection (host, port, database, user) is recorded as
/// the one a sandbox's `DATABASE_URL` was built from: a JSON array, which no
/// value can make ambiguous.
fn connection_key(c: &(String, i32, String, String)) -> String {
    serde_json::json!([c.0, c.1, c.2, c.3]).to_string()
}

/// A project's status event: project (none once deleted), user, slug,
/// from, to, message.
type ProjectEvent<'a> = (
    Option<Uuid>,
    Uuid,
    &'a str,
    &'a str,
    &'static str,
    &'static str,
);

/// Each project with a written status change gets its status from all its
/// resources as they now stand, once; with none left the project goes (its
/// history stays). An event for each project whose status moved.
async fn reaggregate(
    conn: &mut PgConnection,
    outcomes: &[(&Leased, &Outcome)],
    live: &[usize],
    done: &BTreeSet<Uuid>,
    before: &HashMap<Uuid, String>,
    actor: &str,
) -> StoreResult<()> {
    // Project id → (user, slug) of the rows whose status changed.
    let mut changed: BTreeMap<Uuid, (Uuid, &str)> = BTreeMap::new();
    for &i in live {
        let (r, o) = outcomes[i];
        if done.contains(&r.id) && o.status != r.status {
            changed.insert(r.project_id, (r.user_id, r.project_slug.as_str()));
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changed.keys().copied().collect();
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT project_id, status FROM sandboxes WHERE project_id = ANY($1)
         UNION ALL
         SELECT project_id, status FROM databases WHERE project_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut statuses: HashMap<Uuid, Vec<ResourceStatus>> = HashMap::new();
    for (project, status) in rows {
        statuses.entry(project).or_default().push(parse(status)?);
    }

    let (mut updated, mut updated_to) = (Vec::new(), Vec::new());
    let mut deleted = Vec::new();
    // The project events, in project order.
    let mut events: Vec<ProjectEvent> = Vec::new();
    for (&project, &(user, slug)) in &changed {
        let after = statuses
            .get(&project)
            .filter(|s| !s.is_empty())
            .map(|s| aggregate(s));
        let after_text = after.map_or("TERMINATED", |s| s.as_str());
        let was = before.get(&project).map_or("", String::as_str);
        if was == after_text {
            continue;
        }
        if after.is_some() {
            updated.push(project);
            updated_to.push(after_text);
            events.push((
                Some(project),
                user,
                slug,
                was,
                after_text,
                "status aggregated from resources",
            ));
        } else {
            deleted.push(project);
            events.push((None, user, slug, was, after_text, "project deleted"));
        }
    }
    if !updated.is_empty() {
        sqlx::query(
            // The ANY is redundant but for the planner (as above).
            "UPDATE projects p SET status = u.status
               FROM unnest($1::uuid[], $2::text[]) AS u(id, status)
              WHERE p.id = u.id AND p.id = ANY($1)",
        )
        .bind(&updated)
        .bind(&updated_to)
        .execute(&mut *conn)
        .await?;
    }
    if !deleted.is_empty() {
        sqlx::query("DELETE FROM projects WHERE id = ANY($1)")
            .bind(&deleted)
            .execute(&mut *conn)
            .await?;
    }
    if !events.is_empty() {
        let project_ids: Vec<Option<Uuid>> = events.iter().map(|e| e.0).collect();
        let user_ids: Vec<Uuid> = events.iter().map(|e| e.1).collect();
        let slugs: Vec<&str> = events.iter().map(|e| e.2).collect();
        let from: Vec<&str> = events.iter().map(|e| e.3).collect();
        let to: Vec<&str> = events.iter().map(|e| e.4).collect();
        let messages: Vec<&str> = events.iter().map(|e| e.5).collect();
        sqlx::query(
            "INSERT INTO events (project_id, user_id, kind, resource, from_status, to_status,
                                 message, actor, created_at)
             SELECT u.project_id, u.user_id, 'project', u.resource, u.from_status, u.to_status,
                    u.message, $7, clock_timestamp()
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
                      WITH ORDINALITY
                      AS u(project_id, user_id, resource, from_status, to_status, message, n)
              ORDER BY u.n",
        )
        .bind(project_ids)
        .bind(user_ids)
        .bind(slugs)
        .bind(from)
        .bind(to)
        .bind(messages)
        .bind(actor)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
