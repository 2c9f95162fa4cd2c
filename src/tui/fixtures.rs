//! Deterministic test data: fixed ids and timestamps, so snapshots are stable.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::model::{Desired, ProjectStatus, ResourceStatus};
use crate::store::env::EnvVar;
use crate::store::events::Event;
use crate::store::projects::{Project, ProjectView, ResourceSummary};
use crate::store::resources::ResourceKind;
use crate::tui::app::{App, Msg, ProjectDetail};

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

pub fn ago(secs: i64) -> DateTime<Utc> {
    now() - chrono::Duration::seconds(secs)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub fn resource(
    project: u128,
    kind: ResourceKind,
    status: ResourceStatus,
    desired: Desired,
) -> ResourceSummary {
    ResourceSummary {
        kind,
        id: id(project * 100 + kind as u128),
        project_id: id(project),
        resource_name: format!("p{project}-{}-agentruntime-abc123", kind.as_str()),
        desired,
        status,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        lease_owner: None,
        lease_until: None,
        updated_at: ago(60),
        applied_env_version: None,
        idle_stop_at: None,
    }
}

pub fn project(n: u128, name: &str, status: ProjectStatus, age_secs: i64) -> ProjectView {
    use ResourceStatus as R;
    let (sandbox, database, desired) = match status {
        ProjectStatus::Running => (R::Running, R::Running, Desired::Running),
        ProjectStatus::Stopped => (R::Stopped, R::Stopped, Desired::Stopped),
        ProjectStatus::Creating => (R::Creating, R::Running, Desired::Running),
        ProjectStatus::Starting => (R::Starting, R::Running, Desired::Running),
        ProjectStatus::Stopping => (R::Stopping, R::Stopped, Desired::Stopped),
        ProjectStatus::Terminating => (R::Terminating, R::Terminating, Desired::Terminated),
        ProjectStatus::Error => (R::Error, R::Running, Desired::Running),
        ProjectStatus::Partial => (R::Running, R::Stopped, Desired::Running),
        ProjectStatus::Terminated => (R::Terminated, R::Terminated, Desired::Terminated),
    };
    let mut sb = resource(n, ResourceKind::Sandbox, sandbox, desired);
    let db = resource(n, ResourceKind::Database, database, desired);
    if status == ProjectStatus::Error {
        sb.attempts = 3;
        sb.last_error = Some("image pull failed: manifest unknown".into());
    }
    ProjectView {
        project: Project {
            id: id(n),
            user_id: id(1),
            name: name.to_string(),
            slug: name.to_lowercase(),
            description: format!("the {name} project"),
            status,
            env_version: 3,
            git_repo: None,
            git_branch: None,
            created_at: ago(age_secs),
            updated_at: ago(age_secs / 2),
            agent_muted: false,
        },
        resources: vec![sb, db],
        team_role: None,
    }
}

/// Several statuses, one with an error and one retrying after a transient error.
pub fn projects() -> Vec<ProjectView> {
    let mut starting = project(5, "api-v2", ProjectStatus::Starting, 40);
    starting.resources[0].attempts = 2;
    starting.resources[0].last_error = Some("connection refused".into());
    starting.resources[0].next_attempt_at = Some(now() + chrono::Duration::seconds(8));
    vec![
        project(2, "blog", ProjectStatus::Running, 3 * 86_400),
        project(3, "shop", ProjectStatus::Stopped, 5 * 3600),
        project(4, "broken", ProjectStatus::Error, 600),
        starting,
        project(6, "fresh", ProjectStatus::Creating, 5),
        project(7, "old", ProjectStatus::Terminating, 90_000),
        project(8, "half", ProjectStatus::Partial, 7200),
    ]
}

pub fn event(secs: i64, resource: &str, from: Option<&str>, to: Option<&str>, msg: &str) -> Event {
    Event {
        resource: resource.into(),
        kind: "sandbox".into(),
        from_status: from.map(Into::into),
        to_status: to.map(Into::into),
        message: msg.into(),
        actor: "reconciler".into(),
        created_at: ago(secs),
    }
}

pub fn var(key: &str, value: &str, secret: bool) -> EnvVar {
    EnvVar {
        key: key.into(),
        value: value.into(),
        is_secret: secret,
        category: "user".into(),
    }
}

pub fn detail(view: ProjectView) -> ProjectDetail {
    let events = (0..30)
        .map(|i| {
            event(
                3000 - i * 100,
                "blog",
                Some("STARTING"),
                Some("RUNNING"),
                &format!("event number {i}"),
            )
        })
        .collect();
    ProjectDetail {
        sessions: Vec::new(),
        app: None,
        view,
        env: vec![
            var("API_KEY", "sk-live-123", true),
            var("LOG_LEVEL", "debug", false),
            var("FEATURE_FLAGS", "a,b,c", false),
        ],
        events,
        database_url: Some("postgres://blog:hunter2@127.0.0.1:5432/blog".into()),
        idle: None,
    }
}

/// An app at a fixed time showing `projects()`.
pub fn app() -> App {
    let mut app = App::new("alice", 80, 24);
    app.set_now(now());
    app.update(Msg::Projects(projects()));
    app
}

pub fn ssh_key(n: u8, algorithm: &str, comment: &str) -> crate::store::keys::SshKey {
    let body: String = std::iter::repeat_n(char::from(b'a' + n), 43).collect();
    crate::store::keys::SshKey {
        fingerprint: format!("SHA256:{body}"),
        algorithm: algorithm.into(),
        comment: comment.into(),
        created_at: ago(86_400 * i64::from(n + 1)),
        pending: false,
    }
}

pub fn config(key: &str, value: &str, secret: bool) -> crate::store::user_configs::UserConfig {
    crate::store::user_configs::UserConfig {
        key: key.into(),
        value: value.into(),
        is_secret: secret,
        category: crate::store::user_configs::category_for(key).into(),
        updated_at: ago(7200),
    }
}

/// Two keys, a password, an API key (secret), a plain setting and a kubeconfig.
pub fn settings() -> crate::tui::app::SettingsData {
    crate::tui::app::SettingsData {
        keys: vec![
            ssh_key(0, "ssh-ed25519", "alice@laptop"),
            ssh_key(1, "ecdsa-sha2-nistp256", "alice@work"),
        ],
        has_password: true,
        configs: vec![
            config("ANTHROPIC_API_KEY", "sk-ant-very-secret", true),
            config("EDITOR", "vim", false),
            config("KUBECONFIG", "apiVersion: v1", true),
        ],
        quota: None,
        team_quotas: Vec::new(),
        webhook: None,
    }
}

/// `app()` with the settings screen open and loaded with `data`.
pub fn settings_app(data: crate::tui::app::SettingsData) -> App {
    use crate::tui::keys::Key;
    let mut app = app();
    app.update(Msg::Key(Key::Char('S')));
    app.update(Msg::Settings(Box::new(data)));
    app
}
