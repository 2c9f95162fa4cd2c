//! Agent states: what sandboxes report through their hooks (checked here,
//! then stored), and what users read of them (every session's state, the
//! inbox of sessions that need them, waiting for a state).

use std::time::Duration;

use tokio::sync::mpsc;

use crate::local::HookReport;
use crate::model::agent::{self, AgentState};
use crate::model::naming::printable;
use crate::store::agents::{AgentRow, Notification, Recorded};

use super::{Action, Console, ConsoleError, ConsoleResult, UserConsole};

/// The longest `wait` a user may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// How often `wait` looks again when no change feed wakes it.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// How `wait` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// The session is in the state asked for.
    Reached(AgentRow),
    /// The timeout passed first; the session's state then, if known.
    TimedOut(Option<AgentRow>),
}

impl Console {
    /// Records one report from sandbox `report.resource`'s own channel (the
    /// channel names the sandbox; nothing in the report can name another).
    /// A malformed report changes nothing.
    pub async fn report_hook(&self, report: &HookReport) -> ConsoleResult<Recorded> {
        let session = agent::check_report_session(&report.session)
            .map_err(|e| ConsoleError::invalid("hook report", e.to_string()))?;
        let Some(t) = agent::transition(&report.payload)
            .map_err(|e| ConsoleError::invalid("hook report", e.to_string()))?
        else {
            return Ok(Recorded::Ignored);
        };
        Ok(self
            .store
            .record_agent_state(&report.resource, session.as_deref(), &t)
            .await?)
    }

    /// The sandbox a hook token (presented over HTTP by a Kubernetes
    /// sandbox) was issued for; `None`: refuse the report, record nothing.
    pub fn hook_token_sandbox(&self, token: &str) -> Option<String> {
        self.store
            .key()
            .hook_token_sandbox(token)
            .map(str::to_owned)
    }

    /// Records every report arriving on `reports` until the channel closes.
    pub async fn run_hook_intake(self, mut reports: mpsc::Receiver<HookReport>) {
        while let Some(report) = reports.recv().await {
            match self.report_hook(&report).await {
                Ok(_) => {}
                Err(e) => tracing::debug!(sandbox = %report.resource, "hook report refused: {e}"),
            }
        }
    }
}

/// Sessions that need their user, oldest wait first.
pub fn inbox_of(rows: Vec<AgentRow>) -> Vec<AgentRow> {
    let mut inbox: Vec<AgentRow> = rows.into_iter().filter(|r| r.state.needs_you()).collect();
    inbox.sort_by_key(|r| r.entered_at);
    inbox
}

impl UserConsole {
    /// The agent state of every session of the user's projects that has
    /// reported one (a session missing here is `unknown`).
    pub async fn agents(&self) -> ConsoleResult<Vec<AgentRow>> {
        self.gated(Action::ListAgents, async {
            self.own_and_teams_agents().await
        })
        .await
    }

    /// The sessions that need the user, oldest wait first, with Claude's message.
    pub async fn inbox(&self) -> ConsoleResult<Vec<AgentRow>> {
        self.gated(Action::Inbox, async {
            Ok(inbox_of(self.own_and_teams_agents().await?))
        })
        .await
    }

    /// The user's own sessions, then those of each team they belong to
    /// (named `TEAM/NAME` and carrying their role, as the project list
    /// shows them). Membership is read now: a user who left a team sees
    /// none of its sessions.
    async fn own_and_teams_agents(&self) -> ConsoleResult<Vec<AgentRow>> {
        let store = self.store();
        let mut rows = store.agent_states(self.user_id()).await?;
        for m in store.teams_of(self.user_id()).await? {
            rows.extend(
                store
                    .agent_states(m.team_id)
                    .await?
                    .into_iter()
                    .map(|r| AgentRow {
                        project: format!("{}/{}", m.team, r.project),
                        team_role: Some(m.role),
                        ..r
                    }),
            );
        }
        Ok(rows)
    }

    /// The user's newest notifications (only unread ones unless `all`),
    /// newest first; reading them marks them read.
    pub async fn notifications(&self, limit: i64, all: bool) -> ConsoleResult<Vec<Notification>> {
        self.gated(Action::ListNotifications { all }, async {
            Ok(self
                .store()
                .read_notifications(self.user_id(), limit.clamp(1, 500), all)
                .await?)
        })
        .await
    }

    /// How many of the user's notifications are unread (the dashboard's header).
    pub async fn unread_notifications(&self) -> ConsoleResult<i64> {
        self.gated(Action::ListNotifications { all: false }, async {
            Ok(self.store().unread_notifications(self.user_id()).await?)
        })
        .await
    }

    /// Mutes (or unmutes) agent notifications of one project.
    pub async fn mute_agent(&self, project: &str, muted: bool) -> ConsoleResult<()> {
        self.gated_in(Action::MuteAgent { project, muted }, |s| async move {
            let view = self.store().find_project(s.owner, &s.name).await?;
            Ok(self
                .store()
                .set_agent_muted(s.owner, view.project.id, muted)
                .await?)
        })
        .await
    }

    /// Waits until session `session` (`None`: the default one) of
    /// `project` is in state `until`, or `timeout` passes. Woken by the
    /// change feed when the server has one.
    pub async fn wait_agent(
        &self,
        project: &str,
        session: Option<&str>,
        until: AgentState,
        timeout: Duration,
    ) -> ConsoleResult<Waited> {
        self.gated_in(Action::WaitAgent { project }, |s| async move {
            if let Some(s) = session {
                crate::model::session::check_session_name(s)
                    .map_err(|e| ConsoleError::invalid("session", e.to_string()))?;
            }
            if timeout > MAX_WAIT {
                return Err(ConsoleError::invalid(
                    "timeout",
                    format!("at most {} hours", MAX_WAIT.as_secs() / 3600),
                ));
            }
            // Looked up first: an unknown (or another tenant's) project fails
            // at once, as everywhere.
            let view = self.store().find_project(s.owner, &s.name).await?;
            let id = view.project.id;
            // A team's project is named as the dashboard and `agents` name it.
            let shown = |r: AgentRow| match &s.team {
                Some(team) => AgentRow {
                    project: format!("{team}/{}", r.project),
                    ..r
                },
                None => r,
            };
            let mut changes = self.console.feed.as_ref().map(|f| f.subscribe());
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let current = self
                    .store()
                    .agent_states(s.owner)
                    .await?
                    .into_iter()
                    .find(|r| r.project_id == id && r.session.as_deref() == session)
                    .map(shown);
                if let Some(row) = current.as_ref().filter(|r| r.state == until) {
                    return Ok(Waited::Reached(row.clone()));
                }
                let woken = async {
                    match changes.as_mut() {
                        Some(rx) => loop {
                            match rx.recv().await {
                                Ok(c) if c.table == "agent_states" && c.project_id == Some(id) => {
                                    break;
                                }
                                Ok(c) if c.table == "*" => break,
                                Ok(_) => {}
                                // Missed some: look again.
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                    tokio::time::sleep(WAIT_POLL).await;
                                    break;
                                }
                            }
                        },
                        None => tokio::time::sleep(WAIT_POLL).await,
                    }
                };
                if tokio::time::timeout_at(deadline, woken).await.is_err() {
                    return Ok(Waited::TimedOut(current));
                }
            }
        })
        .await
    }
}

/// One line about a session's state, for messages.
pub fn describe(row: &AgentRow) -> String {
    format!(
        "{} {} {}",
        printable(&row.project, 60),
        row.session.as_deref().unwrap_or("(default)"),
        row.state
    )
}

/// Parses a duration as users type it: `90`, `90s`, `500ms`, `5m`, `2h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_typed() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        for bad in ["", "s", "1d", "-1", "1.5s", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_inbox_is_who_needs_you_oldest_first() {
        let row = |p: &str, state, secs| AgentRow {
            project_id: uuid::Uuid::nil(),
            project: p.into(),
            slug: p.into(),
            session: None,
            state,
            message: String::new(),
            entered_at: chrono::DateTime::from_timestamp(secs, 0).unwrap(),
            muted: false,
            team_role: None,
        };
        let got = inbox_of(vec![
            row("a", AgentState::NeedsInput, 30),
            row("b", AgentState::Working, 10),
            row("c", AgentState::NeedsInput, 20),
        ]);
        let names: Vec<&str> = got.iter().map(|r| r.project.as_str()).collect();
        assert_eq!(names, ["c", "a"]);
    }
}
