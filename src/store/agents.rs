//! Agent states per sandbox session (what Claude Code's hooks last said),
//! the notifications their transitions raise, and the per-project mute.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::model::agent::{AgentState, Transition};

/// One session's agent state, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    pub project_id: Uuid,
    /// The project's name as its owner typed it.
    pub project: String,
    pub slug: String,
    /// `None`: the sandbox's default session.
    pub session: Option<String>,
    pub state: AgentState,
    /// Claude's message (needs_input), printable and short.
    pub message: String,
    pub entered_at: DateTime<Utc>,
    /// The project's notifications are muted (no bell, no notification).
    pub muted: bool,
    /// A team's project (named `TEAM/NAME` in `project`): the reader's role
    /// in the team; `None` for the reader's own project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_role: Option<crate::model::team::TeamRole>,
}

/// What recording a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// No sandbox meant to run has this name: nothing recorded.
    NoSandbox,
    /// The event moves no state (one Kiln does not follow).
    Ignored,
    /// The session was already in this state: only the message may change.
    Same,
    /// The session entered the state (and a notification was added when
    /// `notified`).
    Entered { notified: bool },
}

/// One notification of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub id: Uuid,
    pub project: Option<String>,
    pub session: Option<String>,
    pub kind: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
    /// Not read before this listing.
    pub unread: bool,
}

fn session_key(session: Option<&str>) -> &str {
    session.unwrap_or("")
}

impl Store {
    /// Records what a hook of sandbox `resource_name`'s session reported,
    /// in one transaction: only a sandbox meant to run reports (its program
    /// starts, and reports, before the loop has recorded it RUNNING; a
    /// stopping one's last words are not news); entering a state
    /// keeps its entry time while it lasts; entering `needs_input` or `done`
    /// adds one notification for the owner, unless the project is muted.
    pub async fn record_agent_state(
        &self,
        resource_name: &str,
        session: Option<&str>,
        t: &Transition,
    ) -> StoreResult<Recorded> {
        let mut tx = self.pool.begin().await?;
        // The project lock first, as every writer of a project's resources
        // takes it (the reconcile loop's outcome, intents): taking the
        // sandbox's row first would invert that order and deadlock with a
        // status write, whose trigger clears these very rows.
        let project = sqlx::query(
            "SELECT p.id, p.user_id, p.agent_muted, p.name, u.username
             FROM projects p JOIN users u ON u.id = p.user_id
             WHERE p.id = (SELECT project_id FROM sandboxes WHERE resource_name = $1)
             FOR UPDATE OF p",
        )
        .bind(resource_name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(project) = project else {
            return Ok(Recorded::NoSandbox);
        };
        let project_id: Uuid = project.try_get("id")?;
        let user_id: Uuid = project.try_get("user_id")?;
        let muted: bool = project.try_get("agent_muted")?;
        // Read under the project lock: no status write can slip in between.
        let sandbox_id: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM sandboxes
             WHERE resource_name = $1 AND project_id = $2 AND desired = 'RUNNING'
               AND status IN ('CREATING', 'STARTING', 'RUNNING')",
        )
        .bind(resource_name)
        .bind(project_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(sandbox_id) = sandbox_id else {
            return Ok(Recorded::NoSandbox);
        };
        let key = session_key(session);
        // The previous state, locked so two reports of one session are
        // decided one after the other (once per transition).
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT state FROM agent_states WHERE sandbox_id = $1 AND session = $2 FOR UPDATE",
        )
        .bind(sandbox_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if t.if_reported && previous.is_none() {
            // A program that never reported (a plain shell) stays unknown.
            return Ok(Recorded::Ignored);
        }
        let entered = previous.as_deref() != Some(t.state.as_str());
        sqlx::query(
            "INSERT INTO agent_states (sandbox_id, project_id, user_id, session, state, message)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (sandbox_id, session) DO UPDATE SET
                 state = EXCLUDED.state,
                 message = EXCLUDED.message,
                 entered_at = CASE WHEN agent_states.state = EXCLUDED.state
                                   THEN agent_states.entered_at ELSE now() END",
        )
        .bind(sandbox_id)
        .bind(project_id)
        .bind(user_id)
        .bind(key)
        .bind(t.state.as_str())
        .bind(&t.message)
        .execute(&mut *tx)
        .await?;
        if entered {
            // An agent changing state is activity of its sandbox (the idle
            // policy counts from it), whether or not anyone is attached.
            sqlx::query(
                "UPDATE sandboxes SET last_active_at = GREATEST(last_active_at, now()) WHERE id = $1",
            )
            .bind(sandbox_id)
            .execute(&mut *tx)
            .await?;
        }
        let notified = entered && t.state.notifies() && !muted;
        if notified {
            sqlx::query(
                "INSERT INTO notifications (user_id, project_id, session, kind, message)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(project_id)
            .bind(key)
            .bind(t.state.as_str())
            .bind(&t.message)
            .execute(&mut *tx)
            .await?;
            // The user's webhook, if they set one, announces it too: queued
            // here, so a notification and its delivery never part. A team's
            // project: each member's webhook (the team's account has none).
            let payload = serde_json::json!({
                "event": format!("agent.{}", t.state),
                "state": t.state,
                "user": project.try_get::<String, _>("username")?,
                "project": project.try_get::<String, _>("name")?,
                "session": session,
                "message": t.message,
                "at": Utc::now().to_rfc3339(),
            });
            sqlx::query(
                "INSERT INTO webhook_deliveries (user_id, payload)
                 SELECT o.id, $2
                 FROM (SELECT $1::uuid AS id
                       UNION SELECT user_id FROM team_members WHERE team_id = $1) o
                 WHERE EXISTS
                     (SELECT 1 FROM user_configs c WHERE c.user_id = o.id AND c.key = $3)",
            )
            .bind(user_id)
            .bind(payload)
            .bind(super::webhooks::WEBHOOK_URL)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(if entered {
            Recorded::Entered { notified }
        } else {
            Recorded::Same
        })
    }

    /// The database's clock (the one `updated_at` is written with).
    pub async fn clock(&self) -> StoreResult<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Forgets what session `session` of a sandbox said before `before`
    /// (it was restarted: what its old program said is stale; what the new
    /// one said since is not).
    pub async fn clear_agent_state(
        &self,
        resource_name: &str,
        session: Option<&str>,
        before: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM agent_states a USING sandboxes s
             WHERE a.sandbox_id = s.id AND s.resource_name = $1 AND a.session = $2
               AND a.updated_at < $3",
        )
        .bind(resource_name)
        .bind(session_key(session))
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every known agent state of `user_id`'s sessions, by project name,
    /// default session first.
    pub async fn agent_states(&self, user_id: Uuid) -> StoreResult<Vec<AgentRow>> {
        let rows = sqlx::query(
            "SELECT a.project_id, p.name, p.slug, a.session, a.state, a.message, a.entered_at,
                    p.agent_muted
             FROM agent_states a JOIN projects p ON p.id = a.project_id
             WHERE a.user_id = $1
             ORDER BY lower(p.name), a.session",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let session: String = r.try_get("session")?;
                let state: String = r.try_get("state")?;
                Ok(AgentRow {
                    project_id: r.try_get("project_id")?,
                    project: r.try_get("name")?,
                    slug: r.try_get("slug")?,
                    session: (!session.is_empty()).then_some(session),
                    state: AgentState::parse(&state).ok_or_else(|| {
                        sqlx::Error::Decode(format!("unknown agent state {state:?}").into())
                    })?,
                    message: r.try_get("message")?,
                    entered_at: r.try_get("entered_at")?,
                    muted: r.try_get("agent_muted")?,
                    team_role: None,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Mutes (or unmutes) agent notifications of one of `user_id`'s projects.
    pub async fn set_agent_muted(
        &self,
        user_id: Uuid,
        project_id: Uuid,
        muted: bool,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE projects SET agent_muted = $3 WHERE id = $2 AND user_id = $1")
            .bind(user_id)
            .bind(project_id)
            .bind(muted)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
