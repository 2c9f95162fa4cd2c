//! The idle policy's rows: the sweep's one query over running sandboxes,
//! and its fenced writes (warn, withdraw, stop), plus what users set
//! (a project's own idle time, an extension).
//!
//! Every write re-checks, in its own statement or under the project lock,
//! what the sweep saw: two replicas sweeping at once warn once and stop
//! once, and a user who typed or extended in between is never stopped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::events::{EventKind, NewEvent, append_event};
use super::project_lock::lock_projects_of_sandboxes;
use super::projects::{apply_intent, reaggregate};
use super::{Store, StoreResult, parse};
use crate::model::idle::{IdleFacts, IdlePolicy, IdleSetting};
use crate::model::intent::{self, Intent};
use crate::model::notice::NoticeKind;

/// The actor named in events and notifications of the idle policy.
pub const IDLE_ACTOR: &str = "idle policy";

/// One running sandbox the sweep may act on.
#[derive(Debug, Clone)]
pub struct IdleCandidate {
    pub sandbox_id: Uuid,
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub project: String,
    pub facts: IdleFacts,
}

/// One warning the idle sweep decided on: the candidate as it was seen,
/// when it will be stopped, and what its owner is told.
#[derive(Debug, Clone)]
pub struct IdleWarning<'a> {
    pub candidate: &'a IdleCandidate,
    pub stop_at: DateTime<Utc>,
    pub message: String,
}

/// A project's idle state, as its users read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleState {
    /// `default`, `off` or the project's own duration.
    pub setting: String,
    #[serde(skip)]
    pub own: IdleSetting,
    /// Seconds without activity before the stop; `None`: never stopped.
    pub stop_after_secs: Option<u64>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub extended_until: Option<DateTime<Utc>>,
    /// The stop announced by a warning, if one is out.
    pub stop_at: Option<DateTime<Utc>>,
    /// When it stops if nothing happens (`None`: not running, or never).
    pub due_at: Option<DateTime<Utc>>,
}

/// Rows of the sweep's query: every running sandbox whose idle stop may be
/// near, in three index ranges (on the server's default, on its own
/// setting, already warned). `$1` is the horizon `now + warn_before`,
/// `$2` the server's `stop_after` in seconds.
const CANDIDATES: &str = "
    SELECT s.id, s.project_id, s.user_id, p.name, s.idle_stop_after_secs,
           COALESCE(s.last_active_at, s.created_at) AS last_active_at,
           s.idle_extended_until, s.idle_warned_at, s.idle_stop_at,
           EXISTS (SELECT 1 FROM agent_states a WHERE a.sandbox_id = s.id
                   AND a.state IN ('working', 'needs_input')) AS busy
    FROM sandboxes s JOIN projects p ON p.id = s.project_id
    WHERE (s.desired = 'RUNNING' AND s.status = 'RUNNING' AND s.idle_stop_after_secs IS NULL
           AND s.last_active_at <= $1 - make_interval(secs => $2))
       OR (s.desired = 'RUNNING' AND s.status = 'RUNNING' AND s.idle_stop_after_secs > 0
           AND kiln_plus_secs(s.last_active_at, s.idle_stop_after_secs) <= $1)
       OR (s.idle_stop_at IS NOT NULL)";

impl Store {
    /// The sweep's one query: sandboxes whose idle stop falls before
    /// `horizon` on the server's default of `default_after`, or on their
    /// own setting, and those with a warning out.
    pub async fn idle_candidates(
        &self,
        horizon: DateTime<Utc>,
        default_after: Duration,
    ) -> StoreResult<Vec<IdleCandidate>> {
        let rows = sqlx::query(CANDIDATES)
            .bind(horizon)
            .bind(default_after.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let warned_at: Option<DateTime<Utc>> = r.try_get("idle_warned_at")?;
                let stop_at: Option<DateTime<Utc>> = r.try_get("idle_stop_at")?;
                Ok(IdleCandidate {
                    sandbox_id: r.try_get("id")?,
                    project_id: r.try_get("project_id")?,
                    user_id: r.try_get("user_id")?,
                    project: r.try_get("name")?,
                    facts: IdleFacts {
                        setting: IdleSetting::from_column(r.try_get("idle_stop_after_secs")?),
                        last_active_at: r.try_get("last_active_at")?,
                        extended_until: r.try_get("idle_extended_until")?,
                        warned: warned_at.zip(stop_at),
                        agent_busy: r.try_get("busy")?,
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The query plan of the sweep's query, for the benchmark.
    pub async fn explain_idle_candidates(
        &self,
        horizon: DateTime<Utc>,
        default_after: Duration,
    ) -> StoreResult<String> {
        let lines: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {CANDIDATES}")))
                .bind(horizon)
                .bind(default_after.as_secs_f64())
                .fetch_all(&self.pool)
                .await?;
        Ok(lines.join("\n"))
    }

    /// Records the warnings of the sweep's `warns` and notifies their
    /// owners, all in one statement; each only if the warning on record is
    /// still the one the sweep saw and the sandbox still runs (so it
    /// happens once, whichever replica sweeps). How many were recorded.
    pub async fn idle_warn_many(&self, warns: &[IdleWarning<'_>]) -> StoreResult<u64> {
        if warns.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = warns.iter().map(|w| w.candidate.sandbox_id).collect();
        let seen: Vec<Option<DateTime<Utc>>> = warns
            .iter()
            .map(|w| w.candidate.facts.warned.map(|(at, _)| at))
            .collect();
        let stop_at: Vec<DateTime<Utc>> = warns.iter().map(|w| w.stop_at).collect();
        let messages: Vec<&str> = warns.iter().map(|w| w.message.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        lock_projects_of_sandboxes(&mut tx, &ids, &[]).await?;
        let n = sqlx::query(
            "WITH v AS (
                SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[])
                    AS v(id, seen, stop_at, message)),
             w AS (
                UPDATE sandboxes s SET idle_warned_at = now(), idle_stop_at = v.stop_at
                  FROM v
                 WHERE s.id = v.id AND s.idle_warned_at IS NOT DISTINCT FROM v.seen
                   AND s.desired = 'RUNNING' AND s.status = 'RUNNING'
                RETURNING s.project_id, s.user_id, v.message)
             INSERT INTO notifications (user_id, project_id, kind, message)
             SELECT user_id, project_id, $5, message FROM w",
        )
        .bind(&ids)
        .bind(&seen)
        .bind(&stop_at)
        .bind(&messages)
        .bind(NoticeKind::IdleWarning.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Withdraws warnings that no longer hold (the sandbox was used, or an
    /// agent works in it), each only if it is still the one seen.
    pub async fn idle_withdraw(&self, seen: &[(Uuid, DateTime<Utc>)]) -> StoreResult<u64> {
        let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = seen.iter().copied().unzip();
        let mut tx = self.pool.begin().await?;
        lock_projects_of_sandboxes(&mut tx, &ids, &[]).await?;
        let withdrawn = sqlx::query(
            "UPDATE sandboxes s SET idle_warned_at = NULL, idle_stop_at = NULL
             FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, warned_at)
             WHERE s.id = v.id AND s.idle_warned_at = v.warned_at",
        )
        .bind(&ids)
        .bind(times)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(withdrawn)
    }

    /// Stops `c`'s project as an ordinary stop intent whose event names the
    /// idle policy, and notifies its owner, in one transaction under the
    /// project lock; only if the sandbox is still running under the very
    /// warning the sweep saw, unused since and with no agent at work.
    /// Whether it stopped it.
    pub async fn idle_stop(&self, c: &IdleCandidate, message: &str) -> StoreResult<bool> {
        let Some((warned_at, _)) = c.facts.warned else {
            return Ok(false);
        };
        let mut tx = self.pool.begin().await?;
        let project = sqlx::query("SELECT slug, status FROM projects WHERE id = $1 FOR UPDATE")
            .bind(c.project_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(project) = project else {
            return Ok(false);
        };
        let still: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sandboxes s
                WHERE s.id = $1 AND s.desired = 'RUNNING' AND s.status = 'RUNNING'
                  AND s.idle_warned_at = $2 AND s.idle_stop_at <= now()
                  AND COALESCE(s.last_active_at, s.created_at) <= s.idle_warned_at
                  AND (s.idle_extended_until IS NULL OR s.idle_extended_until <= now())
                  AND NOT EXISTS (SELECT 1 FROM agent_states a WHERE a.sandbox_id = s.id
                                  AND a.state IN ('working', 'needs_input')))",
        )
        .bind(c.sandbox_id)
        .bind(warned_at)
        .fetch_one(&mut *tx)
        .await?;
        if !still {
            return Ok(false);
        }
        let slug: String = project.try_get("slug")?;
        let status = parse(project.try_get("status")?)?;
        if intent::check(Intent::Stop, status).is_err() {
            return Ok(false);
        }
        apply_intent(&mut tx, c.project_id, Intent::Stop).await?;
        let new_status = reaggregate(&mut tx, c.project_id).await?.unwrap_or(status);
        append_event(
            &mut tx,
            &NewEvent {
                project_id: Some(c.project_id),
                user_id: c.user_id,
                kind: EventKind::Project,
                resource: &slug,
                from_status: Some(status.as_str()),
                to_status: Some(new_status.as_str()),
                message: &format!("stop requested: {message}"),
                actor: IDLE_ACTOR,
            },
        )
        .await?;
        sqlx::query(
            "INSERT INTO notifications (user_id, project_id, kind, message)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(c.user_id)
        .bind(c.project_id)
        .bind(NoticeKind::IdleStopped.as_str())
        .bind(message)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets the idle setting of every sandbox of one of `owner`'s projects
    /// and withdraws any warning (the stop it announced may no longer hold).
    pub async fn set_idle_setting(
        &self,
        owner: Uuid,
        project_id: Uuid,
        setting: IdleSetting,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sandboxes SET idle_stop_after_secs = $3, idle_warned_at = NULL, idle_stop_at = NULL
             WHERE project_id = $2 AND user_id = $1",
        )
        .bind(owner)
        .bind(project_id)
        .bind(setting.to_column())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Postpones the idle stop of one of `owner`'s running projects to
    /// `by` from now, withdrawing the warning, and records who did it.
    /// `None` when the project has no running sandbox.
    pub async fn extend_idle(
        &self,
        owner: Uuid,
        project_id: Uuid,
        by: Duration,
        actor: &str,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut tx = self.pool.begin().await?;
        let slug: Option<String> = sqlx::query_scalar(
            "SELECT slug FROM projects WHERE id = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(project_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(slug) = slug else {
            return Ok(None);
        };
        let until: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE sandboxes
             SET idle_extended_until = now() + make_interval(secs => $3),
                 idle_warned_at = NULL, idle_stop_at = NULL
             WHERE project_id = $1 AND user_id = $2 AND desired = 'RUNNING'
               AND status IN ('CREATING', 'STARTING', 'RUNNING')
             RETURNING idle_extended_until",
        )
        .bind(project_id)
        .bind(owner)
        .bind(by.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(until) = until else {
            return Ok(None);
        };
        append_event(
            &mut tx,
            &NewEvent {
                project_id: Some(project_id),
                user_id: owner,
                kind: EventKind::Project,
                resource: &slug,
                from_status: None,
                to_status: None,
                message: &format!(
                    "idle stop postponed until {}",
                    until.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                actor,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some(until))
    }

    /// The idle state of one of `owner`'s projects under `policy`.
    pub async fn idle_state(
        &self,
        owner: Uuid,
        project_id: Uuid,
        policy: &IdlePolicy,
    ) -> StoreResult<IdleState> {
        let row = sqlx::query(
            "SELECT s.idle_stop_after_secs, s.last_active_at, s.idle_extended_until,
                    s.idle_warned_at, s.idle_stop_at,
                    (s.desired = 'RUNNING' AND s.status = 'RUNNING') AS running,
                    EXISTS (SELECT 1 FROM agent_states a WHERE a.sandbox_id = s.id
                            AND a.state IN ('working', 'needs_input')) AS busy
             FROM sandboxes s WHERE s.project_id = $1 AND s.user_id = $2
             ORDER BY s.created_at LIMIT 1",
        )
        .bind(project_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(IdleState {
                setting: IdleSetting::Default.to_string(),
                own: IdleSetting::Default,
                stop_after_secs: policy.effective(IdleSetting::Default).map(|d| d.as_secs()),
                last_active_at: None,
                extended_until: None,
                stop_at: None,
                due_at: None,
            });
        };
        let setting = IdleSetting::from_column(r.try_get("idle_stop_after_secs")?);
        let last_active_at: Option<DateTime<Utc>> = r.try_get("last_active_at")?;
        let extended_until: Option<DateTime<Utc>> = r.try_get("idle_extended_until")?;
        let running: bool = r.try_get("running")?;
        let busy: bool = r.try_get("busy")?;
        let stop_at: Option<DateTime<Utc>> = r.try_get("idle_stop_at")?;
        let due_at = match (running && !busy, last_active_at) {
            (true, Some(last)) => crate::model::idle::deadline(
                policy,
                &IdleFacts {
                    setting,
                    last_active_at: last,
                    extended_until,
                    warned: None,
                    agent_busy: false,
                },
            )
            .map(|d| stop_at.map_or(d, |s| s.max(d))),
            _ => None,
        };
        Ok(IdleState {
            setting: setting.to_string(),
            own: setting,
            stop_after_secs: policy.effective(setting).map(|d| d.as_secs()),
            last_active_at,
            extended_until,
            stop_at,
            due_at,
        })
    }

    /// Deletes notifications older than `keep`; how many.
    pub async fn prune_notifications(&self, keep: Duration) -> StoreResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM notifications WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(keep.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
