//! The traits every back end implements. A driver observes and acts on the
//! world (tmux, Postgres roles, Kubernetes objects); it never touches Kiln's
//! own tables. Every call is idempotent: the reconcile loop may repeat any of
//! them after a crash or a lost lease.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;

use crate::model::secret::Secret;

/// What a driver sees of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Nothing exists for this resource.
    Absent,
    /// Exists and is coming up.
    Starting,
    /// Exists and is serving.
    Running,
    /// Exists and is going down.
    Stopping,
    /// Exists, not serving, data kept.
    Stopped,
    /// Exists and should be coming up, but is held back for the stated
    /// reason (an image that will not pull, a crash loop, no node to run
    /// on). The back end keeps trying on its own, so this is not an error
    /// yet; the reason is shown to the user.
    Blocked(String),
    /// Exists but cannot make progress without help (the reason says why).
    Failed(String),
    /// Failed too, in a step of its first start its owner is told about by
    /// name (a clone whose init container failed, with git's message).
    PrepareFailed(PrepareStep, String),
}

/// A driver failure, classified by what the reconcile loop should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// Worth retrying later (network, timeouts, conflicts, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Retrying the same call will not help (invalid spec, forbidden, missing tool).
    #[error("{0}")]
    Permanent(String),
    /// Permanent too, in a step of a new sandbox's preparation that its
    /// owner is told about by name (its clone, its setup script).
    #[error("{message}")]
    Prepare { step: PrepareStep, message: String },
}

/// What a new sandbox runs once before its first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareStep {
    /// Cloning its repository and checking out its branch.
    Clone,
    /// Its template's setup script.
    Setup,
}

impl PrepareStep {
    /// The notification its failure is told with.
    pub fn notice(self) -> crate::model::notice::NoticeKind {
        match self {
            PrepareStep::Clone => crate::model::notice::NoticeKind::CloneFailed,
            PrepareStep::Setup => crate::model::notice::NoticeKind::SetupFailed,
        }
    }
}

impl DriverError {
    pub fn transient(msg: impl fmt::Display) -> Self {
        Self::Transient(msg.to_string())
    }
    pub fn permanent(msg: impl fmt::Display) -> Self {
        Self::Permanent(msg.to_string())
    }
    pub fn prepare(step: PrepareStep, msg: impl fmt::Display) -> Self {
        Self::Prepare {
            step,
            message: msg.to_string(),
        }
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// A session name no back end accepts: asking again will not help.
impl From<crate::model::session::SessionNameError> for DriverError {
    fn from(e: crate::model::session::SessionNameError) -> Self {
        Self::permanent(e)
    }
}

pub type DriverResult<T> = Result<T, DriverError>;

/// Identifies one resource to a driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceRef {
    /// `{slug}-agentruntime-{6 random}` for a sandbox, `db-{13 random}` for a
    /// database (no slug: see `naming::database_resource_name`); unique
    /// across the installation.
    pub resource_name: String,
    /// Kubernetes namespace (the local driver ignores it).
    pub namespace: String,
    /// The project's slug, for labels and directory names.
    pub project_slug: String,
    /// The user who owns the project: which back end serves it follows
    /// from who they are (their kubeconfig, the server's cluster, or local).
    pub owner: uuid::Uuid,
}

/// Everything needed to bring a sandbox to its running state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub resource: ResourceRef,
    /// Environment of the sandbox: the project's variables plus the ones the
    /// platform injects (`DATABASE_URL`, `PROJECT_NAME`). Sorted by key.
    pub env: Vec<(String, String)>,
    /// The keys of `env` whose values are secrets (secret project variables,
    /// the user's API keys, `DATABASE_URL`). A back end that can keep them
    /// apart (a Kubernetes Secret) does; none ever logs them.
    pub secret_keys: std::collections::BTreeSet<String>,
    /// The repository its working directory starts from (cloned once,
    /// before its first start; never again, so a restart keeps the work).
    pub repo: Option<RepoSource>,
    /// What its default session runs (`None`: the back end's default).
    pub command: Option<String>,
    /// Run once (`sh -c`) in the sandbox after its clone, before its first
    /// start; a failure is permanent, with the script's last lines.
    pub setup: Option<String>,
    /// The image it runs and the CPU and memory it gets, from its template
    /// (`None` fields: the back end's own). Kubernetes only: a local
    /// sandbox runs on the host as it is.
    pub sizing: crate::model::template::K8sSizing,
}

/// A repository a sandbox starts from: checked by the console when the
/// project was created (see `model::git`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSource {
    pub url: String,
    /// The branch to check out; created from the default branch when the
    /// repository has none of that name. `None`: the default branch.
    pub branch: Option<String>,
    /// The owner's HTTPS access token (`GIT_TOKEN`), handed to git through
    /// a credential helper reading the environment: never in an argument,
    /// never in the repository's config.
    pub token: Option<Secret<String>>,
}

/// Everything needed to bring a database to its running state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    pub resource: ResourceRef,
    /// Password for the database's role. Drivers that create the role (local)
    /// set it; drivers whose database generates its own (KubeBlocks) ignore it
    /// and report the real one through `credentials`.
    pub password: Secret<String>,
    /// The project's sandbox, when the database was claimed from a
    /// cluster's pool: its pod is the one let through to it (see
    /// `k8s::pool`). `None` otherwise, and for pooled databases not yet
    /// claimed.
    pub sandbox: Option<String>,
}

pub use crate::model::db_credentials::DbCredentials;

#[async_trait]
pub trait SandboxDriver: Send + Sync + 'static {
    /// Creates whatever is missing and starts it. Returns what is there afterwards.
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed>;
    /// [`SandboxDriver::ensure`] for the first start of a sandbox claimed
    /// from the warm pool (it bears the pooled sandbox's name): a back end
    /// that keeps one first makes sure nothing from before the claim is left
    /// in it (a session, a file someone put there after its last health
    /// check), then starts it as `ensure` does. Back ends without a pool
    /// just ensure.
    async fn adopt(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        self.ensure(spec).await
    }
    /// Stops the sandbox, keeping its data.
    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed>;
    /// Removes the sandbox and its data. Deleting something absent succeeds.
    async fn delete(&self, r: &ResourceRef) -> DriverResult<()>;
    /// Observes many sandboxes in one round trip (one list, one `tmux ls`).
    /// Every requested name is in the answer.
    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>>;
    /// Brings the running sandbox's environment up to `spec.env`.
    async fn sync_env(&self, spec: &SandboxSpec) -> DriverResult<()>;
    /// Which back end serves `owner`, as a metrics label (`local`,
    /// `kubernetes`); a driver that is one back end keeps the default.
    fn backend_label(&self, _owner: uuid::Uuid) -> &'static str {
        "unknown"
    }
}

/// A back end that keeps a warm pool of sandboxes started ahead of any
/// project (the local driver): a pooled sandbox is prepared under the name
/// it keeps when claimed, and a claim's first `ensure` finds it running and
/// only opens the project's session in it.
#[async_trait]
pub trait SandboxPoolDriver: SandboxDriver {
    /// Starts sandbox `r` with nothing of anyone's in it: its directories,
    /// its confined server and network, no session. Idempotent.
    async fn prepare_pooled(&self, r: &ResourceRef) -> DriverResult<()>;
    /// Health of pooled sandboxes, in one call: `Running` for one that is
    /// whole and untouched (its server answers with no session, its
    /// working directory is empty); anything else says what is wrong.
    /// Every requested name is in the answer.
    async fn observe_pooled(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>>;
    /// The pooled sandboxes this back end holds that no claim has opened
    /// yet, by name, so the keeper can end those it has no row for (left by
    /// a crash between the row and the object, or by a claimer whose
    /// resources moved to a cluster of their own before the first start).
    /// A back end that cannot list them says none.
    async fn unopened_pooled(&self) -> DriverResult<Vec<String>> {
        Ok(Vec::new())
    }
}

#[async_trait]
pub trait DatabaseDriver: Send + Sync + 'static {
    /// Creates whatever is missing and starts it. Returns what is there afterwards.
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed>;
    /// [`DatabaseDriver::ensure`] for a database claimed from the warm
    /// pool: a back end that keeps one makes the pooled database `pooled`
    /// this one (renamed, owned by a fresh role with `spec`'s password, the
    /// pooled role unable to log in any more) instead of creating it. A
    /// pooled database that is missing or not whole is never used: the
    /// database is then created as `ensure` does. Back ends without a pool
    /// just ensure.
    async fn adopt(&self, spec: &DatabaseSpec, pooled: &str) -> DriverResult<Observed> {
        let _ = pooled;
        self.ensure(spec).await
    }
    /// Refuses new connections and ends existing ones; data kept.
    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed>;
    /// Removes the database and its role. Deleting something absent succeeds.
    async fn delete(&self, r: &ResourceRef) -> DriverResult<()>;
    /// Observes many databases in one round trip.
    /// Every requested name is in the answer.
    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>>;
    /// How to connect, once known (`None` while the back end has not published them yet).
    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>>;
}

/// Who attaches to a session: the size and type of their terminal, and
/// whether they may type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub cols: u16,
    pub rows: u16,
    /// Shows the output and sends nothing.
    pub read_only: bool,
    /// The terminal type the viewer's SSH client named (its `TERM`), as
    /// sent, so untrusted; `None` for the dashboard's pane, which emulates
    /// [`crate::model::terminal::FALLBACK`] itself. A driver picks the type
    /// its tmux client runs with through [`crate::model::terminal::for_viewer`].
    pub term: Option<String>,
}

impl Viewer {
    /// The dashboard's pane at `cols`×`rows`.
    pub fn pane(cols: u16, rows: u16, read_only: bool) -> Viewer {
        Viewer {
            cols,
            rows,
            read_only,
            term: None,
        }
    }
}

/// A live connection to one terminal session of a sandbox: bytes both ways
/// and a resize handle. Dropping it detaches (the session keeps running).
pub struct Attachment {
    /// What the session prints. Closed when the viewer is detached or the
    /// session ends.
    pub output: tokio::sync::mpsc::Receiver<Vec<u8>>,
    /// Keystrokes for the session (ignored for a read-only attachment).
    pub input: SessionInput,
    /// New viewer size, columns × rows.
    pub resize: tokio::sync::mpsc::Sender<(u16, u16)>,
    /// Whatever must live as long as the attachment (a child process, a
    /// stream); dropped with it.
    pub guard: Box<dyn Send + Sync>,
}

impl Attachment {
    /// Appends the output already waiting to `bytes` until it holds `limit`
    /// bytes or nothing more has arrived: one message (or frame) for a burst.
    pub fn take_waiting(&mut self, bytes: &mut Vec<u8>, limit: usize) {
        while bytes.len() < limit
            && let Ok(more) = self.output.try_recv()
        {
            bytes.extend_from_slice(&more);
        }
    }
}

/// Where an attached session's keystrokes go. Never blocks: the SSH handler
/// calls it for every key.
pub trait InputSink: Send + Sync {
    /// Takes `bytes` after every byte sent before; `false` when the session
    /// is gone or so far behind that its queue is full (the bytes are
    /// dropped rather than stalling the connection).
    fn try_send(&self, bytes: Vec<u8>) -> bool;
}

impl InputSink for tokio::sync::mpsc::Sender<Vec<u8>> {
    fn try_send(&self, bytes: Vec<u8>) -> bool {
        tokio::sync::mpsc::Sender::try_send(self, bytes).is_ok()
    }
}

/// Keystrokes for an attached session, in the order they are sent.
#[derive(Clone)]
pub struct SessionInput(std::sync::Arc<dyn InputSink>);

impl SessionInput {
    pub fn new(sink: impl InputSink + 'static) -> Self {
        Self(std::sync::Arc::new(sink))
    }

    /// See [`InputSink::try_send`].
    pub fn try_send(&self, bytes: Vec<u8>) -> bool {
        self.0.try_send(bytes)
    }

    /// Whether both lead to the same session input.
    pub fn same(&self, other: &SessionInput) -> bool {
        std::ptr::addr_eq(
            std::sync::Arc::as_ptr(&self.0),
            std::sync::Arc::as_ptr(&other.0),
        )
    }
}

// Written by hand because the sink and the guard are trait objects without
// `Debug`; nothing secret is hidden here (secrets use `model::secret::Secret`).
impl fmt::Debug for SessionInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionInput")
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Attachment")
    }
}

/// Whether a session's program is still running. Sessions are kept when
/// their program exits (tmux `remain-on-exit`), so an exited session stays
/// listed, with its last screen, until it is restarted or the sandbox stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Running,
    /// The program exited. `status` is its exit status when it exited on its
    /// own; `None` when it was killed by a signal (or the back end cannot tell).
    Exited {
        status: Option<i32>,
    },
}

impl SessionState {
    pub fn is_exited(self) -> bool {
        matches!(self, SessionState::Exited { .. })
    }

    /// `running`, `exited (status 3)`, `exited`: for screens and tables.
    pub fn describe(self) -> String {
        match self {
            SessionState::Running => "running".into(),
            SessionState::Exited { status: Some(s) } => format!("exited (status {s})"),
            SessionState::Exited { status: None } => "exited".into(),
        }
    }

    /// From tmux's `#{pane_dead}` and `#{pane_dead_status}` (both back ends
    /// list sessions with these formats). Anything but `1` is running.
    pub fn from_tmux(dead: Option<&str>, status: Option<&str>) -> SessionState {
        match dead.map(str::trim) {
            Some("1") => SessionState::Exited {
                status: status.and_then(|s| s.trim().parse().ok()),
            },
            _ => SessionState::Running,
        }
    }
}

/// The session listing both back ends ask tmux for, one line per session:
/// name, last activity, attached clients, then the state of the session's
/// current pane (the one `respawn-pane -t =NAME:` restarts).
pub const TMUX_SESSION_FORMAT: &str = "#{session_name}\t#{session_activity}\t#{session_attached}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_dead_signal}";

/// Whether a [`TMUX_SESSION_FORMAT`] listing shows a dead pane whose exit
/// tmux has not learnt yet (neither status nor signal). tmux marks a pane
/// dead when its terminal closes, but reads the status when it reaps the
/// process, and tmux 3.3 sometimes reaps only at its next child exit,
/// seconds or minutes later. Listing again after `run-shell true` (a child
/// that exits at once, so tmux reaps every finished child) gives the status.
pub fn tmux_listing_awaits_reap(listing: &str) -> bool {
    listing.lines().any(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        matches!(f.as_slice(), [_, _, _, "1", status, signal, ..] if status.is_empty() && signal.is_empty())
    })
}

/// One terminal session of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// `None` for the sandbox's default session (the one running Claude Code).
    pub name: Option<String>,
    /// Last input or output, seconds since the epoch.
    pub last_activity: Option<i64>,
    /// Viewers attached right now.
    pub viewers: u32,
    /// Whether its program still runs (the state of the session's current pane).
    pub state: SessionState,
}

/// Attaching to sandbox sessions (DESIGN §6: `attach(session, size)`).
#[async_trait]
pub trait SessionAttach: Send + Sync + 'static {
    /// The sandbox's sessions, default first, then named ones by name.
    async fn sessions(&self, r: &ResourceRef) -> DriverResult<Vec<SessionInfo>>;

    /// Attaches `viewer` to `session` of the sandbox (`None` = its default
    /// session). A read-only attachment shows output and sends nothing.
    async fn attach(
        &self,
        r: &ResourceRef,
        session: Option<&str>,
        viewer: &Viewer,
    ) -> DriverResult<Attachment>;

    /// Starts `session`'s program again (`None` = the default session) in
    /// the same session, under the same name; viewers attached to it stay
    /// attached and see the new program. Only an exited session is
    /// restarted: a running one is refused with a permanent error saying so
    /// (never killed), so the action needs no confirmation. A session that
    /// does not exist is a permanent error too.
    async fn restart(&self, r: &ResourceRef, session: Option<&str>) -> DriverResult<()>;

    /// Where the app a running sandbox serves can be reached from the host
    /// Kiln runs on, if the back end forwards it.
    async fn app_endpoint(&self, _r: &ResourceRef) -> DriverResult<Option<AppEndpoint>> {
        Ok(None)
    }

    /// The git state of the sandbox's working directory: branch, changed
    /// files, ahead/behind its upstream (`None`: not a git repository, or
    /// its clone is still under way).
    async fn git_state(
        &self,
        _r: &ResourceRef,
    ) -> DriverResult<Option<crate::model::git::GitState>> {
        Err(DriverError::permanent(
            "git state is not available for sandboxes on this back end yet",
        ))
    }
}

/// A sandbox's app port, forwarded to an address on Kiln's host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppEndpoint {
    /// `127.0.0.1:PORT` on Kiln's host.
    pub host_address: String,
    /// The port the app listens on inside the sandbox.
    pub sandbox_port: u16,
}

/// One item of a sandbox's followed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// A line the sandbox printed.
    Line(String),
    /// What the follower is doing (waiting for the pod, reconnecting).
    Notice(String),
}

/// The sandbox's own log (the container's output), as `kubectl logs` shows it.
#[async_trait]
pub trait SandboxLogs: Send + Sync + 'static {
    /// The last `tail` lines (all when `None`); with `follow`, then new lines
    /// as they come, across restarts of the sandbox, until the receiver is
    /// dropped.
    async fn logs(
        &self,
        r: &ResourceRef,
        tail: Option<i64>,
        follow: bool,
    ) -> DriverResult<tokio::sync::mpsc::Receiver<LogEvent>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_states_from_tmux_formats() {
        assert_eq!(
            SessionState::from_tmux(Some("1"), Some("3")),
            SessionState::Exited { status: Some(3) }
        );
        // Killed by a signal: tmux leaves the status empty.
        assert_eq!(
            SessionState::from_tmux(Some("1"), Some("")),
            SessionState::Exited { status: None }
        );
        assert_eq!(
            SessionState::from_tmux(Some("0"), Some("")),
            SessionState::Running
        );
        assert_eq!(SessionState::from_tmux(None, None), SessionState::Running);
        assert_eq!(
            SessionState::Exited { status: Some(1) }.describe(),
            "exited (status 1)"
        );
    }

    #[test]
    fn a_dead_pane_without_status_or_signal_awaits_its_reaping() {
        assert!(tmux_listing_awaits_reap("a\t1\t0\t0\t\t\nb\t1\t0\t1\t\t\n"));
        // Exited with a status, or killed by a signal: known.
        assert!(!tmux_listing_awaits_reap(
            "a\t1\t0\t1\t3\t\nb\t1\t0\t1\t\t9\n"
        ));
        assert!(!tmux_listing_awaits_reap("a\t1\t0\t0\t\t\n"));
        assert!(!tmux_listing_awaits_reap(""));
    }
}
