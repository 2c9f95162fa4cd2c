//! Output of the exec commands: the stable JSON shapes and the human tables.
//!
//! Everything a user (or a driver error) could have typed goes through
//! [`safe`] or [`cell`] before it reaches human output, so no escape sequence
//! reaches the terminal. JSON output is escaped by [`json`].

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::driver::{SessionInfo, SessionState};
use crate::model::naming::printable;
use crate::store::env::EnvVar;
use crate::store::events::Event;
use crate::store::projects::{ProjectView, ResourceSummary};

/// What a secret value looks like on screen and in JSON.
pub const MASK: &str = "••••••";

/// One project as `projects --json` lists it.
#[derive(Debug, Serialize)]
pub struct ProjectJson {
    pub name: String,
    pub slug: String,
    pub description: String,
    pub status: String,
    pub env_version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The repository its sandbox started from, and the branch asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    pub resources: Vec<ResourceJson>,
}

/// One sandbox or database, with everything that says why it is where it is.
#[derive(Debug, Serialize)]
pub struct ResourceJson {
    /// `sandbox` or `database`
    pub kind: String,
    pub name: String,
    pub status: String,
    pub desired: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// `null` in ERROR: nothing happens until `retry`.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// `project NAME --json`: the project plus its variables and recent events.
#[derive(Debug, Serialize)]
pub struct ProjectDetailJson {
    #[serde(flatten)]
    pub project: ProjectJson,
    pub env: Vec<EnvJson>,
    pub events: Vec<EventJson>,
}

#[derive(Debug, Serialize)]
pub struct EnvJson {
    pub key: String,
    /// [`MASK`] when `secret`.
    pub value: String,
    pub secret: bool,
}

#[derive(Debug, Serialize)]
pub struct EventJson {
    pub time: DateTime<Utc>,
    pub kind: String,
    pub resource: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub message: String,
    pub actor: String,
}

impl From<&ResourceSummary> for ResourceJson {
    fn from(r: &ResourceSummary) -> Self {
        ResourceJson {
            kind: r.kind.as_str().into(),
            name: r.resource_name.clone(),
            status: r.status.as_str().into(),
            desired: r.desired.as_str().into(),
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            next_attempt_at: r.next_attempt_at,
            lease_owner: r.lease_owner.clone(),
            lease_until: r.lease_until,
            updated_at: r.updated_at,
        }
    }
}

impl From<&ProjectView> for ProjectJson {
    fn from(v: &ProjectView) -> Self {
        let p = &v.project;
        ProjectJson {
            name: p.name.clone(),
            slug: p.slug.clone(),
            description: p.description.clone(),
            status: p.status.as_str().into(),
            env_version: p.env_version,
            created_at: p.created_at,
            updated_at: p.updated_at,
            git_repo: p.git_repo.clone(),
            git_branch: p.git_branch.clone(),
            resources: v.resources.iter().map(ResourceJson::from).collect(),
        }
    }
}

impl From<&EnvVar> for EnvJson {
    fn from(v: &EnvVar) -> Self {
        EnvJson {
            key: v.key.clone(),
            value: if v.is_secret {
                MASK.into()
            } else {
                v.value.expose_str().to_string()
            },
            secret: v.is_secret,
        }
    }
}

/// One terminal session as `sessions NAME --json` lists it.
#[derive(Debug, Serialize)]
pub struct SessionJson {
    /// `null` for the default session.
    pub session: Option<String>,
    pub default: bool,
    /// `running` or `exited`.
    pub state: &'static str,
    /// Set when the program exited with a status (not when it was killed).
    pub exit_status: Option<i32>,
    pub viewers: u32,
    pub last_activity: Option<DateTime<Utc>>,
}

impl From<&SessionInfo> for SessionJson {
    fn from(s: &SessionInfo) -> Self {
        let (state, exit_status) = match s.state {
            SessionState::Running => ("running", None),
            SessionState::Exited { status } => ("exited", status),
        };
        SessionJson {
            session: s.name.clone(),
            default: s.name.is_none(),
            state,
            exit_status,
            viewers: s.viewers,
            last_activity: s.last_activity.and_then(|t| DateTime::from_timestamp(t, 0)),
        }
    }
}

impl From<&Event> for EventJson {
    fn from(e: &Event) -> Self {
        EventJson {
            time: e.created_at,
            kind: e.kind.clone(),
            resource: e.resource.clone(),
            from: e.from_status.clone(),
            to: e.to_status.clone(),
            message: e.message.clone(),
            actor: e.actor.clone(),
        }
    }
}

/// Pretty JSON plus a newline. serde_json escapes C0 controls but leaves DEL
/// and the C1 range (U+0080–U+009F, which some terminals treat as CSI and
/// friends) raw; those can only occur inside strings, so they are escaped here.
pub fn json<T: Serialize>(value: &T) -> String {
    let text = serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the output: {e}\"}}"));
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out
}

/// A user-supplied string for one line of human output.
pub fn safe(s: &str, max: usize) -> String {
    printable(s, max)
}

/// A table cell exactly `width` characters wide (cut with `…`, then padded).
pub fn cell(s: &str, width: usize) -> String {
    let shown = if s.chars().count() > width {
        printable(s, width.saturating_sub(1))
    } else {
        printable(s, width)
    };
    format!("{shown:<width$}")
}

/// `45s`, `12m`, `3h`, `9d`.
pub fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn ago(t: DateTime<Utc>) -> String {
    format!("{} ago", span((Utc::now() - t).num_seconds()))
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// When the loop looks at a resource next, in words.
fn next_attempt(r: &ResourceSummary) -> String {
    match r.next_attempt_at {
        None => "on retry".into(),
        Some(t) if t <= Utc::now() => "due now".into(),
        Some(t) => format!("in {}", span((t - Utc::now()).num_seconds())),
    }
}

fn lease(r: &ResourceSummary) -> String {
    match (&r.lease_owner, r.lease_until) {
        (Some(owner), Some(until)) if until > Utc::now() => {
            format!("{} until {}", safe(owner, 40), until.format("%H:%M:%S"))
        }
        _ => "-".into(),
    }
}

fn resource_status(v: &ProjectView, kind: crate::store::resources::ResourceKind) -> &'static str {
    v.resources
        .iter()
        .find(|r| r.kind == kind)
        .map(|r| r.status.as_str())
        .unwrap_or("-")
}

pub fn projects_table(projects: &[ProjectView]) -> String {
    use crate::store::resources::ResourceKind;
    if projects.is_empty() {
        return "no projects yet: create one with `create NAME`\n".into();
    }
    let mut out = format!(
        "{} {} {} {} {:>6}  ERROR\n",
        cell("NAME", 24),
        cell("STATUS", 12),
        cell("SANDBOX", 12),
        cell("DATABASE", 12),
        "AGE"
    );
    for v in projects {
        let error = v
            .resources
            .iter()
            .find_map(|r| r.last_error.as_deref())
            .map(|e| safe(e, 60))
            .unwrap_or_default();
        let line = format!(
            "{} {} {} {} {:>6}  {error}",
            cell(&v.project.name, 24),
            cell(v.project.status.as_str(), 12),
            cell(resource_status(v, ResourceKind::Sandbox), 12),
            cell(resource_status(v, ResourceKind::Database), 12),
            span((Utc::now() - v.project.created_at).num_seconds()),
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

pub fn project_detail(v: &ProjectView, env: &[EnvVar], events: &[Event]) -> String {
    let p = &v.project;
    let mut out = String::new();
    let _ = writeln!(out, "project      {} (slug {})", safe(&p.name, 100), p.slug);
    let _ = writeln!(out, "status       {}", p.status);
    if !p.description.is_empty() {
        let _ = writeln!(out, "description  {}", safe(&p.description, 200));
    }
    if let Some(repo) = &p.git_repo {
        let branch = p.git_branch.as_deref().unwrap_or("(default branch)");
        let _ = writeln!(
            out,
            "repository   {} on {}",
            safe(repo, 200),
            safe(branch, 100)
        );
    }
    let _ = writeln!(
        out,
        "created      {} ({})",
        timestamp(p.created_at),
        ago(p.created_at)
    );
    let _ = writeln!(out, "\nRESOURCES");
    let _ = writeln!(
        out,
        "{} {} {} {} {:>8}  {} LEASE",
        cell("KIND", 9),
        cell("NAME", 34),
        cell("STATUS", 12),
        cell("DESIRED", 11),
        "ATTEMPTS",
        cell("NEXT", 10),
    );
    for r in &v.resources {
        let _ = writeln!(
            out,
            "{} {} {} {} {:>8}  {} {}",
            cell(r.kind.as_str(), 9),
            cell(&r.resource_name, 34),
            cell(r.status.as_str(), 12),
            cell(r.desired.as_str(), 11),
            r.attempts,
            cell(&next_attempt(r), 10),
            lease(r),
        );
        if let Some(e) = &r.last_error {
            let _ = writeln!(out, "          last error: {}", safe(e, 300));
        }
    }
    if v.resources.is_empty() {
        let _ = writeln!(out, "(none)");
    }
    let _ = writeln!(out, "\nENV ({})", env.len());
    out.push_str(&env_list(env));
    let _ = writeln!(out, "\nEVENTS (last {})", events.len());
    out.push_str(&events_list(events));
    out
}

/// `sessions NAME`: one row per session, the default one as `(default)`
/// (not a name `--session` takes).
pub fn sessions_table(sessions: &[SessionInfo]) -> String {
    if sessions.is_empty() {
        return "no sessions: the sandbox's tmux server is not up yet\n".into();
    }
    let mut out = format!(
        "{} {} {} LAST ACTIVITY\n",
        cell("SESSION", 20),
        cell("STATE", 20),
        cell("VIEWERS", 7)
    );
    for s in sessions {
        let activity = s
            .last_activity
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .map(|t| format!("{} ({})", timestamp(t), ago(t)))
            .unwrap_or_else(|| "-".into());
        let line = format!(
            "{} {} {:>7} {activity}",
            cell(s.name.as_deref().unwrap_or("(default)"), 20),
            cell(&s.state.describe(), 20),
            s.viewers,
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if sessions.iter().any(|s| s.state.is_exited()) {
        out.push_str("restart an exited one with `restart NAME [--session S]`\n");
    }
    out
}

pub fn env_list(env: &[EnvVar]) -> String {
    if env.is_empty() {
        return "no variables: add one with `env NAME set KEY=VALUE [--secret]`\n".into();
    }
    let mut out = String::new();
    for v in env {
        let (value, note) = if v.is_secret {
            (MASK.to_string(), "  (secret)")
        } else {
            (safe(v.value.expose_str(), 200), "")
        };
        let _ = writeln!(out, "{}={value}{note}", safe(&v.key, 128));
    }
    out
}

pub fn events_list(events: &[Event]) -> String {
    if events.is_empty() {
        return "no events\n".into();
    }
    let mut out = String::new();
    for e in events {
        let change = match (&e.from_status, &e.to_status) {
            (Some(f), Some(t)) if f != t => format!("{} → {}", safe(f, 12), safe(t, 12)),
            (_, Some(t)) => safe(t, 12),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{}  {} {} {}  {}  by {}",
            timestamp(e.created_at),
            cell(&e.kind, 8),
            cell(&e.resource, 34),
            cell(&change, 26),
            safe(&e.message, 200),
            safe(&e.actor, 60),
        );
    }
    out
}

/// The audit trail, oldest first: one line per record.
/// `quota`: one line per owner, the user's own first.
pub fn quotas(q: &crate::console::Quotas) -> String {
    use crate::model::quota::summary;
    let mut out = format!("{}  {}\n", cell("you", 20), summary(q.own.0, q.own.1));
    for t in &q.teams {
        out.push_str(&format!(
            "{}  {}\n",
            cell(&format!("team {}", t.team), 20),
            summary(t.limits, t.usage)
        ));
    }
    out
}

pub fn audit_list(records: &[crate::store::audit::AuditRecord]) -> String {
    if records.is_empty() {
        return "no audit records\n".into();
    }
    let mut out = format!(
        "{}  {} {} {} {} {} {} DETAIL\n",
        cell("TIME", 19),
        cell("USER", 16),
        cell("FRONT", 9),
        cell("SOURCE", 15),
        cell("ACTION", 18),
        cell("PROJECT", 20),
        cell("RESULT", 11),
    );
    for r in records {
        let who = if r.operator {
            format!("{} (operator)", r.username)
        } else {
            r.username.clone()
        };
        let mut detail = safe(&r.detail, 200);
        if let Some(m) = &r.method {
            detail = format!("{} {detail}", safe(m, 30));
        }
        if let Some(fp) = &r.key_fingerprint {
            detail = format!("{detail} key {}", safe(fp, 60));
        }
        let _ = writeln!(
            out,
            "{}  {} {} {} {} {} {} {}",
            timestamp(r.at),
            cell(&who, 16),
            cell(&r.front, 9),
            cell(r.source.as_deref().unwrap_or("-"), 15),
            cell(&r.action, 18),
            cell(r.project.as_deref().unwrap_or("-"), 20),
            cell(&r.result, 11),
            detail.trim(),
        );
    }
    out
}
