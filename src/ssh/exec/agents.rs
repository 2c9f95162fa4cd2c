//! The agent exec commands: `agents`, `inbox`, `wait`, `notifications`,
//! `mute`, `webhook`. Each calls one console method and renders its result.

use chrono::Utc;
use serde::Serialize;

use super::Failure;
use super::render::{cell, json, safe};
use crate::console::agents::{MAX_WAIT, parse_duration};
use crate::console::{UserConsole, Waited};
use crate::model::agent::{AgentState, short_duration};
use crate::store::agents::{AgentRow, Notification};

type Out = Result<String, Failure>;

/// One session's state, as scripts read it.
#[derive(Serialize)]
struct AgentJson<'a> {
    project: &'a str,
    slug: &'a str,
    /// `null`: the default session.
    session: Option<&'a str>,
    state: AgentState,
    message: &'a str,
    since: String,
    seconds: i64,
}

impl<'a> From<&'a AgentRow> for AgentJson<'a> {
    fn from(r: &'a AgentRow) -> Self {
        AgentJson {
            project: &r.project,
            slug: &r.slug,
            session: r.session.as_deref(),
            state: r.state,
            message: &r.message,
            since: r.entered_at.to_rfc3339(),
            seconds: (Utc::now() - r.entered_at).num_seconds().max(0),
        }
    }
}

fn table(rows: &[AgentRow], empty: &str) -> String {
    if rows.is_empty() {
        return format!("{empty}\n");
    }
    let mut out = format!(
        "{} {} {} {} MESSAGE\n",
        cell("PROJECT", 24),
        cell("SESSION", 12),
        cell("STATE", 13),
        cell("FOR", 5)
    );
    for r in rows {
        let line = format!(
            "{} {} {} {} {}",
            cell(&r.project, 24),
            cell(r.session.as_deref().unwrap_or("(default)"), 12),
            cell(&format!("{} {}", r.state.glyph(), r.state), 13),
            cell(
                &short_duration((Utc::now() - r.entered_at).num_seconds()),
                5
            ),
            safe(&r.message, 200)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(super) async fn agents(c: &UserConsole, as_json: bool) -> Out {
    let rows = c.agents().await?;
    Ok(if as_json {
        json(&rows.iter().map(AgentJson::from).collect::<Vec<_>>())
    } else {
        table(
            &rows,
            "no agent has reported yet (sessions without Claude Code stay unknown)",
        )
    })
}

pub(super) async fn inbox(c: &UserConsole, as_json: bool) -> Out {
    let rows = c.inbox().await?;
    Ok(if as_json {
        json(&rows.iter().map(AgentJson::from).collect::<Vec<_>>())
    } else {
        table(&rows, "nothing needs you")
    })
}

pub(super) async fn wait(
    c: &UserConsole,
    name: &str,
    session: Option<&str>,
    until: AgentState,
    timeout: &str,
    as_json: bool,
) -> Out {
    let Some(timeout) = parse_duration(timeout).filter(|d| *d <= MAX_WAIT) else {
        return Err(Failure::usage(format!(
            "invalid --timeout {}: use e.g. 90s, 500ms, 5m or 2h (at most 24h)",
            safe(timeout, 30)
        )));
    };
    if let Some(s) = session {
        crate::model::session::check_session_name(s).map_err(|e| Failure::usage(e.to_string()))?;
    }
    match c.wait_agent(name, session, until, timeout).await? {
        Waited::Reached(row) => Ok(if as_json {
            json(&AgentJson::from(&row))
        } else {
            format!(
                "{} session {} is {}{}\n",
                safe(&row.project, 100),
                safe(row.session.as_deref().unwrap_or("(default)"), 30),
                row.state,
                if row.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", safe(&row.message, 300))
                }
            )
        }),
        Waited::TimedOut(now) => Err(Failure::new(format!(
            "timed out after {}: {} session {} is {}, not {until}",
            crate::model::agent::short_duration(timeout.as_secs() as i64),
            safe(name.trim(), 100),
            safe(session.unwrap_or("(default)"), 30),
            now.map_or(AgentState::Unknown, |r| r.state)
        ))),
    }
}

#[derive(Serialize)]
struct NotificationJson<'a> {
    project: Option<&'a str>,
    session: Option<&'a str>,
    kind: &'a str,
    message: &'a str,
    at: String,
    unread: bool,
}

pub(super) async fn notifications(c: &UserConsole, limit: i64, all: bool, as_json: bool) -> Out {
    let list: Vec<Notification> = c.notifications(limit, all).await?;
    if as_json {
        return Ok(json(
            &list
                .iter()
                .map(|n| NotificationJson {
                    project: n.project.as_deref(),
                    session: n.session.as_deref(),
                    kind: &n.kind,
                    message: &n.message,
                    at: n.created_at.to_rfc3339(),
                    unread: n.unread,
                })
                .collect::<Vec<_>>(),
        ));
    }
    if list.is_empty() {
        return Ok(if all {
            "no notifications\n".into()
        } else {
            "no unread notifications (--all lists read ones too)\n".into()
        });
    }
    let mut out = String::new();
    for n in &list {
        let line = format!(
            "{} {} {} {} {}",
            n.created_at.format("%Y-%m-%d %H:%M:%S"),
            cell(n.project.as_deref().unwrap_or("(deleted)"), 24),
            cell(session_cell(n), 12),
            cell(&n.kind, 14),
            safe(&n.message, 200)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// A notification's session column: only the agent kinds are about one.
fn session_cell(n: &Notification) -> &str {
    use crate::model::notice::NoticeKind;
    match NoticeKind::parse(&n.kind) {
        Some(NoticeKind::NeedsInput | NoticeKind::Done) => {
            n.session.as_deref().unwrap_or("(default)")
        }
        _ => "-",
    }
}

#[derive(Serialize)]
struct MuteJson {
    project: String,
    muted: bool,
}

pub(super) async fn mute(c: &UserConsole, name: &str, muted: bool, as_json: bool) -> Out {
    c.mute_agent(name, muted).await?;
    Ok(if as_json {
        json(&MuteJson {
            project: name.trim().to_string(),
            muted,
        })
    } else if muted {
        format!(
            "muted agent notifications of {} (unmute with `mute {} --off`)\n",
            safe(name.trim(), 100),
            safe(name.trim(), 100)
        )
    } else {
        format!(
            "unmuted agent notifications of {}\n",
            safe(name.trim(), 100)
        )
    })
}

/// The webhook as `webhook` shows it: its host and last outcome.
fn webhook_out(v: &crate::console::webhooks::WebhookView, as_json: bool) -> String {
    if as_json {
        return json(v);
    }
    let now = Utc::now();
    let mut out = match &v.host {
        Some(h) => format!("webhook: set, to {}\n", safe(h, 200)),
        None => "webhook: not set (`ssh … webhook set <<< URL` sets one)\n".into(),
    };
    if let Some(at) = v.status.last_delivered_at {
        out.push_str(&format!(
            "last delivered: {} ago\n",
            short_duration((now - at).num_seconds())
        ));
    }
    if let (Some(e), Some(at)) = (&v.status.last_error, v.status.last_error_at) {
        out.push_str(&format!(
            "last error: {} ago: {}\n",
            short_duration((now - at).num_seconds()),
            safe(e, 300)
        ));
    }
    out
}

pub(super) async fn webhook_show(c: &UserConsole, as_json: bool) -> Out {
    Ok(webhook_out(&c.webhook().await?, as_json))
}

pub(super) async fn webhook_set(c: &UserConsole, stdin: &[u8], as_json: bool) -> Out {
    let url = std::str::from_utf8(stdin).unwrap_or("").trim();
    if url.is_empty() {
        return Err(Failure::usage(
            "send the URL on stdin, e.g. `ssh … webhook set <<< https://example.com/hook`",
        ));
    }
    c.set_webhook(url).await?;
    Ok(webhook_out(&c.webhook().await?, as_json))
}

pub(super) async fn webhook_unset(c: &UserConsole, as_json: bool) -> Out {
    c.unset_webhook().await?;
    Ok(webhook_out(&c.webhook().await?, as_json))
}
