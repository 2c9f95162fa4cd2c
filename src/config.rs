//! One `Config`: defaults, then the config file, then the environment, then
//! flags. Validated once at start so a bad value stops Kiln with a clear
//! message instead of misbehaving later.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::reconcile::ReconcileConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error(
        "the config file {path} holds secret_key but is open to other users (mode {mode:o}); \
         run chmod 600 {path}"
    )]
    SecretExposed { path: String, mode: u32 },
    #[error("invalid setting {0}")]
    Kubernetes(String),
    #[error("invalid setting ssh.prefix_key: {0}")]
    PrefixKey(String),
    #[error("template {file} is not valid: {error}")]
    Template {
        file: String,
        error: crate::model::template::TemplateError,
    },
    #[error("cannot read the templates directory {dir}: {source}")]
    TemplatesDir { dir: String, source: std::io::Error },
    #[error("invalid setting {key} = {value}: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The config file's shape (TOML). Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub secret_key: Option<String>,
    pub replica_id: Option<String>,
    #[serde(default)]
    pub reconcile: ReconcileFile,
    #[serde(default)]
    pub local: LocalFile,
    #[serde(default)]
    pub ssh: SshFile,
    #[serde(default)]
    pub http: HttpFile,
    /// How long a replica may take to stop on SIGTERM (default 20 s).
    pub shutdown_grace_secs: Option<u64>,
    /// Whether the server itself has a cluster for users without a kubeconfig.
    pub server_cluster: Option<ServerCluster>,
    /// How Kubernetes objects are built (image, sizes, domain, KubeBlocks).
    #[serde(default)]
    pub kubernetes: crate::k8s::settings::K8sSettings,
    #[serde(default)]
    pub audit: AuditFile,
    #[serde(default)]
    pub agents: AgentsFile,
    #[serde(default)]
    pub idle: IdleFile,
    #[serde(default)]
    pub notifications: NotificationsFile,
    #[serde(default)]
    pub git: GitFile,
    #[serde(default)]
    pub templates: TemplatesFile,
    #[serde(default)]
    pub pool: PoolFile,
}

/// `[pool]`: warm pools of pre-made resources (0 turns one off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    /// Pre-made databases kept ready for new projects (local default 2).
    pub databases: Option<i64>,
    /// Pre-started sandboxes kept ready for new projects (local default 2).
    pub sandboxes: Option<i64>,
}

/// The pool targets of `[pool]`, each checked to be 0 to
/// [`PoolTargets::MAX`](crate::model::pool::PoolTargets::MAX).
fn pool_targets(f: &PoolFile) -> Result<crate::model::pool::PoolTargets, ConfigError> {
    use crate::model::pool::PoolTargets;
    let one = |key: &'static str, v: Option<i64>, default: u32| match v {
        None => Ok(default),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n <= PoolTargets::MAX)
            .ok_or(ConfigError::Invalid {
                key,
                value: n.to_string(),
                why: "must be a whole number from 0 (no pool) to 1000",
            }),
    };
    let d = PoolTargets::LOCAL_DEFAULT;
    Ok(PoolTargets {
        databases: one("pool.databases", f.databases, d.databases)?,
        sandboxes: one("pool.sandboxes", f.sandboxes, d.sandboxes)?,
    })
}

/// Agent hooks and their notifications (issue 20).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsFile {
    /// Where a Kubernetes sandbox's hooks reach Kiln, e.g.
    /// `http://kiln-ops.kiln.svc:9090/hooks/v1/event` (the operator HTTP
    /// listener); unset = Kubernetes sandboxes report no agent state.
    pub hook_url: Option<String>,
    /// Whether users' webhooks may target loopback, link-local and private
    /// addresses (off: a webhook cannot probe the server's own network).
    pub webhook_allow_private_hosts: Option<bool>,
}

/// Agent settings, validated.
#[derive(Debug, Clone, Default)]
pub struct AgentsConfig {
    pub hook_url: Option<String>,
    pub webhook_allow_private_hosts: bool,
}

/// A duration in the config file: seconds as a number, or text such as
/// `"3s"`, `"15m"`, `"24h"`, `"7d"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Secs(u64),
    Text(String),
}

impl DurationValue {
    fn parse(&self, key: &'static str) -> Result<Duration, ConfigError> {
        match self {
            DurationValue::Secs(n) => Ok(Duration::from_secs(*n)),
            DurationValue::Text(t) => {
                crate::model::idle::parse_duration(t).ok_or_else(|| ConfigError::Invalid {
                    key,
                    value: t.clone(),
                    why: "must be a duration such as 90s, 15m, 24h or 7d (or 0)",
                })
            }
        }
    }
}

/// `[idle]`: stopping sandboxes nobody uses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdleFile {
    /// Stop after this long without activity (default 24h; 0 turns it off).
    pub stop_after: Option<DurationValue>,
    /// Warn this long before (default 15m).
    pub warn_before: Option<DurationValue>,
    /// The longest per-project setting (default 7d).
    pub max_stop_after: Option<DurationValue>,
    /// What `extend` postpones by by default (default: the project's idle time).
    pub extend_by: Option<DurationValue>,
    /// How often the reconcile loop looks (default 30s).
    pub sweep_every: Option<DurationValue>,
}

/// `[notifications]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsFile {
    /// How long a notification is kept (default 30d).
    pub keep_for: Option<DurationValue>,
}

/// Notifications older than this are deleted (hourly, by every replica).
pub const DEFAULT_NOTIFICATIONS_KEEP: Duration = Duration::from_secs(30 * 86_400);

fn idle_policy(f: &IdleFile) -> Result<crate::model::idle::IdlePolicy, ConfigError> {
    let mut p = crate::model::idle::IdlePolicy::default();
    if let Some(v) = &f.stop_after {
        p.stop_after = v.parse("idle.stop_after")?;
    }
    if let Some(v) = &f.warn_before {
        p.warn_before = v.parse("idle.warn_before")?;
    }
    if let Some(v) = &f.max_stop_after {
        p.max_stop_after = v.parse("idle.max_stop_after")?;
    }
    if let Some(v) = &f.extend_by {
        let d = v.parse("idle.extend_by")?;
        if d.is_zero() {
            return Err(ConfigError::Invalid {
                key: "idle.extend_by",
                value: format!("{d:?}"),
                why: "must be at least 1s",
            });
        }
        p.extend_by = Some(d);
    }
    if let Some(v) = &f.sweep_every {
        p.sweep_every = v.parse("idle.sweep_every")?;
    }
    if p.sweep_every < Duration::from_millis(100) {
        return Err(ConfigError::Invalid {
            key: "idle.sweep_every",
            value: format!("{:?}", p.sweep_every),
            why: "must be at least 100ms",
        });
    }
    if p.enabled() && p.max_stop_after < p.stop_after {
        return Err(ConfigError::Invalid {
            key: "idle.max_stop_after",
            value: crate::model::idle::format_duration(p.max_stop_after),
            why: "must not be shorter than idle.stop_after",
        });
    }
    Ok(p)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesFile {
    /// A directory of `*.toml` templates offered like the built-in ones,
    /// checked at start (a broken one stops Kiln, naming file and field).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitFile {
    /// Lets projects clone from hosts that resolve to loopback, link-local
    /// or private addresses (`git.allow_private_hosts`, off by default).
    pub allow_private_hosts: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// How long audit records are kept (`audit.retention_days`, default 365).
    pub retention_days: Option<u64>,
}

/// Audit records older than this are deleted (hourly, by every replica).
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 86_400);

/// The cluster users without a kubeconfig of their own are served on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerCluster {
    /// None: those users get the local driver.
    #[default]
    None,
    /// The service account of the pod Kiln runs in.
    InCluster,
    /// `KUBECONFIG` (or ~/.kube/config) of the Kiln process.
    Kubeconfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshFile {
    pub listen: Option<String>,
    pub signup: Option<Signup>,
    pub max_signups_per_address: Option<usize>,
    pub signup_window_secs: Option<u64>,
    pub max_failures_per_address: Option<usize>,
    pub max_failures_per_user: Option<usize>,
    pub failure_window_secs: Option<u64>,
    pub throttle_base_secs: Option<u64>,
    pub max_preauth_per_address: Option<usize>,
    pub max_preauth_total: Option<usize>,
    pub rejection_delay_ms: Option<u64>,
    /// The key that leads back to Kiln from an attached session (`C-]`).
    pub prefix_key: Option<String>,
    /// The SSH host key (OpenSSH format), e.g. mounted from a Secret so
    /// every replica presents the same one. Unset: `{data_dir}/ssh_host_ed25519_key`,
    /// generated on first start.
    pub host_key_file: Option<PathBuf>,
}

/// The operator HTTP listener (`/metrics`, `/livez`, `/readyz`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// e.g. `127.0.0.1:9090`; unset = no listener.
    pub listen: Option<String>,
}

/// Who may create an account by logging in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signup {
    /// Only `kiln user add` creates users.
    Closed,
    /// An unknown username with a password of at least 12 characters creates the account.
    Open,
}

/// The sign-up mode `kiln serve` actually runs with, and why it differs from
/// the configured one. New users without a kubeconfig land on the server
/// cluster or, without one, on the local driver; unless the local driver
/// confines sandboxes (bubblewrap works on this host), their sandboxes would
/// run as Kiln's own user, so anonymous people are not let in there.
pub fn effective_signup(
    configured: Signup,
    cluster: ServerCluster,
    local_confined: bool,
) -> (Signup, Option<String>) {
    match (configured, cluster) {
        (Signup::Open, ServerCluster::None) if !local_confined => (
            Signup::Closed,
            Some(
                "ssh.signup = \"open\" is ignored: sign-up stays closed because new users would \
                 land on the local driver (server_cluster = none), which cannot confine \
                 sandboxes on this host"
                    .into(),
            ),
        ),
        (signup, _) => (signup, None),
    }
}

#[derive(Debug, Clone)]
pub struct SshConfig {
    pub listen: String,
    pub signup: Signup,
    /// Accounts open sign-up creates from one address per window.
    pub signup_limit: crate::model::signup_limit::SignupLimit,
    pub max_failures_per_address: usize,
    pub max_failures_per_user: usize,
    pub failure_window: Duration,
    /// Once a user's budget is spent, each address may still try that user,
    /// first after this long, the interval doubling with each failure from
    /// that address (at most `failure_window`): slowed down, never shut out.
    pub throttle_base: Duration,
    /// Connections that have not signed in yet, from one address and in
    /// all; one more is closed at once.
    pub max_preauth_per_address: usize,
    pub max_preauth_total: usize,
    /// Every rejected attempt takes this long, whatever the reason.
    pub rejection_delay: Duration,
    pub prefix_key: crate::model::prefix_key::PrefixKey,
    /// The idle policy, for extensions and per-project settings.
    pub idle: crate::model::idle::IdlePolicy,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:2222".into(),
            signup: Signup::Closed,
            signup_limit: crate::model::signup_limit::SignupLimit {
                per_address: 3,
                window: Duration::from_secs(3600),
            },
            max_failures_per_address: 20,
            max_failures_per_user: 10,
            failure_window: Duration::from_secs(300),
            throttle_base: Duration::from_secs(5),
            max_preauth_per_address: 10,
            max_preauth_total: 200,
            rejection_delay: Duration::from_millis(1000),
            prefix_key: crate::model::prefix_key::PrefixKey::default(),
            idle: crate::model::idle::IdlePolicy::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileFile {
    pub resync_ms: Option<u64>,
    pub batch_size: Option<i64>,
    pub lease_secs: Option<u64>,
    pub concurrency: Option<usize>,
    pub write_lanes: Option<usize>,
    pub observe_interval_secs: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_cap_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFile {
    pub sandbox_command: Option<String>,
    pub admin_database_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// What a sandbox's session runs; `None` = `claude` if on PATH, else the login shell.
    pub sandbox_command: Option<String>,
    /// Where tenant databases are created; `None` = the server Kiln itself uses.
    pub admin_database_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `None` = the embedded cluster in the data dir.
    pub database_url: Option<String>,
    /// 64 hex characters; `None` = `{data_dir}/secret.key`, created once.
    pub secret_key: Option<String>,
    pub replica_id: String,
    pub reconcile: ReconcileConfig,
    pub local: LocalConfig,
    pub ssh: SshConfig,
    pub server_cluster: ServerCluster,
    pub kubernetes: crate::k8s::settings::K8sSettings,
    /// Where `/metrics`, `/livez` and `/readyz` are served; `None` = nowhere.
    pub http_listen: Option<String>,
    /// A configured SSH host key, used as it is and never generated.
    pub ssh_host_key_file: Option<PathBuf>,
    /// On SIGTERM: stop accepting, tell sessions, hand back leases, and
    /// exit within this.
    pub shutdown_grace: Duration,
    /// How long the audit trail keeps a record.
    pub audit_retention: Duration,
    pub agents: AgentsConfig,
    /// The idle stop policy (the reconcile loop sweeps, the console extends).
    pub idle: crate::model::idle::IdlePolicy,
    /// How long a notification is kept.
    pub notifications_keep_for: Duration,
    /// Which repositories projects may start from.
    pub git: crate::console::RepoPolicy,
    /// The built-in templates and those of `templates.dir`, checked.
    pub templates: crate::console::Catalog,
    /// How many pre-made resources the warm pools keep (`[pool]`).
    pub pool: crate::model::pool::PoolTargets,
}

/// What the environment and flags contribute (read by `main`).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub secret_key: Option<String>,
    pub replica_id: Option<String>,
    pub ssh_listen: Option<String>,
    pub server_cluster: Option<ServerCluster>,
    pub http_listen: Option<String>,
}

impl Config {
    /// Loads `config_path`, or `{data_dir}/kiln.toml` when it exists.
    pub fn load(
        data_dir: &Path,
        config_path: Option<&Path>,
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let default_path = data_dir.join("kiln.toml");
        let path = match config_path {
            Some(p) => Some(p.to_path_buf()),
            None => default_path.exists().then_some(default_path),
        };
        let file = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                let file = parse_file(&text).map_err(|message| ConfigError::Parse {
                    path: p.display().to_string(),
                    message,
                })?;
                if file.secret_key.is_some() {
                    check_private(p)?;
                }
                file
            }
            None => FileConfig::default(),
        };
        Self::from_parts(data_dir, file, overrides)
    }

    pub fn from_parts(
        data_dir: &Path,
        file: FileConfig,
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let mut reconcile = ReconcileConfig::default();
        let r = &file.reconcile;
        if let Some(v) = r.resync_ms {
            check("reconcile.resync_ms", v, 10..=600_000)?;
            reconcile.resync = Duration::from_millis(v);
        }
        if let Some(v) = r.batch_size {
            check("reconcile.batch_size", v, 1..=10_000)?;
            reconcile.batch_size = v;
        }
        if let Some(v) = r.lease_secs {
            check("reconcile.lease_secs", v, 1..=3600)?;
            reconcile.lease = Duration::from_secs(v);
        }
        if let Some(v) = r.concurrency {
            check("reconcile.concurrency", v, 1..=1024)?;
            reconcile.concurrency = v;
        }
        if let Some(v) = r.write_lanes {
            check("reconcile.write_lanes", v, 1..=64)?;
            reconcile.write_lanes = v;
        }
        if let Some(v) = r.observe_interval_secs {
            check("reconcile.observe_interval_secs", v, 1..=86_400)?;
            reconcile.schedule.observe_interval = Duration::from_secs(v);
        }
        if let Some(v) = r.poll_interval_ms {
            check("reconcile.poll_interval_ms", v, 10..=600_000)?;
            reconcile.schedule.poll_interval = Duration::from_millis(v);
        }
        if let Some(v) = r.backoff_base_ms {
            check("reconcile.backoff_base_ms", v, 1..=600_000)?;
            reconcile.schedule.backoff_base = Duration::from_millis(v);
        }
        if let Some(v) = r.backoff_cap_secs {
            check("reconcile.backoff_cap_secs", v, 1..=86_400)?;
            reconcile.schedule.backoff_cap = Duration::from_secs(v);
        }
        if reconcile.schedule.backoff_cap < reconcile.schedule.backoff_base {
            return Err(ConfigError::Invalid {
                key: "reconcile.backoff_cap_secs",
                value: format!("{:?}", reconcile.schedule.backoff_cap),
                why: "must not be smaller than reconcile.backoff_base_ms",
            });
        }
        let replica_id = overrides
            .replica_id
            .or(file.replica_id)
            .unwrap_or_else(default_replica_id);
        if replica_id.is_empty()
            || replica_id.len() > 100
            || replica_id.chars().any(char::is_control)
        {
            return Err(ConfigError::Invalid {
                key: "replica_id",
                value: replica_id.chars().take(40).collect(),
                why: "must be 1-100 printable characters",
            });
        }
        let mut ssh = SshConfig::default();
        let f = &file.ssh;
        if let Some(v) = overrides.ssh_listen.clone().or(f.listen.clone()) {
            if v.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    key: "ssh.listen",
                    value: v,
                    why: "must be an address and port, e.g. 0.0.0.0:2222",
                });
            }
            ssh.listen = v;
        }
        if let Some(v) = f.signup {
            ssh.signup = v;
        }
        if let Some(v) = f.max_signups_per_address {
            check("ssh.max_signups_per_address", v, 1..=100_000)?;
            ssh.signup_limit.per_address = v;
        }
        if let Some(v) = f.signup_window_secs {
            check("ssh.signup_window_secs", v, 1..=30 * 86_400)?;
            ssh.signup_limit.window = Duration::from_secs(v);
        }
        if let Some(v) = f.max_failures_per_address {
            check("ssh.max_failures_per_address", v, 1..=100_000)?;
            ssh.max_failures_per_address = v;
        }
        if let Some(v) = f.max_failures_per_user {
            check("ssh.max_failures_per_user", v, 1..=100_000)?;
            ssh.max_failures_per_user = v;
        }
        if let Some(v) = f.failure_window_secs {
            check("ssh.failure_window_secs", v, 1..=86_400)?;
            ssh.failure_window = Duration::from_secs(v);
        }
        if let Some(v) = f.throttle_base_secs {
            check("ssh.throttle_base_secs", v, 1..=3600)?;
            ssh.throttle_base = Duration::from_secs(v);
        }
        if let Some(v) = f.max_preauth_per_address {
            check("ssh.max_preauth_per_address", v, 1..=100_000)?;
            ssh.max_preauth_per_address = v;
        }
        if let Some(v) = f.max_preauth_total {
            check("ssh.max_preauth_total", v, 1..=1_000_000)?;
            ssh.max_preauth_total = v;
        }
        if let Some(v) = f.rejection_delay_ms {
            check("ssh.rejection_delay_ms", v, 0..=10_000)?;
            ssh.rejection_delay = Duration::from_millis(v);
        }
        if let Some(v) = &f.prefix_key {
            ssh.prefix_key =
                crate::model::prefix_key::PrefixKey::parse(v).map_err(ConfigError::PrefixKey)?;
        }
        file.kubernetes
            .validate()
            .map_err(ConfigError::Kubernetes)?;
        let http_listen = overrides.http_listen.clone().or(file.http.listen.clone());
        if let Some(v) = &http_listen
            && v.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid {
                key: "http.listen",
                value: v.clone(),
                why: "must be an address and port, e.g. 127.0.0.1:9090",
            });
        }
        let shutdown_grace = Duration::from_secs(file.shutdown_grace_secs.unwrap_or(20));
        if let Some(v) = file.shutdown_grace_secs {
            check("shutdown_grace_secs", v, 1..=3600)?;
        }
        // A pass in flight at shutdown gets most of the grace; the rest is
        // for telling sessions and giving leases back.
        reconcile.shutdown_grace = reconcile.shutdown_grace.min(shutdown_grace.mul_f64(0.75));
        let mut audit_retention = DEFAULT_AUDIT_RETENTION;
        if let Some(v) = file.audit.retention_days {
            check("audit.retention_days", v, 1..=36_500)?;
            audit_retention = Duration::from_secs(v * 86_400);
        }
        let hook_url = file
            .agents
            .hook_url
            .clone()
            .filter(|u| !u.trim().is_empty());
        if let Some(u) = &hook_url
            && !crate::model::webhook::is_plain_http_url(u)
        {
            return Err(ConfigError::Invalid {
                key: "agents.hook_url",
                value: u.clone(),
                why: "expected http://HOST[:PORT]/PATH (the hook speaks plain HTTP to Kiln's \
                      in-cluster listener)",
            });
        }
        reconcile.hook_url = hook_url.clone();
        let idle = idle_policy(&file.idle)?;
        reconcile.idle = idle.clone();
        ssh.idle = idle.clone();
        let mut notifications_keep_for = DEFAULT_NOTIFICATIONS_KEEP;
        if let Some(v) = &file.notifications.keep_for {
            notifications_keep_for = v.parse("notifications.keep_for")?;
            if notifications_keep_for < Duration::from_secs(60) {
                return Err(ConfigError::Invalid {
                    key: "notifications.keep_for",
                    value: format!("{notifications_keep_for:?}"),
                    why: "must be at least 1m",
                });
            }
        }
        let templates = load_templates(file.templates.dir.as_deref())?;
        let pool = pool_targets(&file.pool)?;
        Ok(Config {
            pool,
            agents: AgentsConfig {
                hook_url,
                webhook_allow_private_hosts: file
                    .agents
                    .webhook_allow_private_hosts
                    .unwrap_or(false),
            },
            idle,
            notifications_keep_for,
            templates,
            git: crate::console::RepoPolicy {
                allow_private_hosts: file.git.allow_private_hosts.unwrap_or(false),
            },
            http_listen,
            ssh_host_key_file: file.ssh.host_key_file.clone(),
            shutdown_grace,
            audit_retention,
            server_cluster: overrides
                .server_cluster
                .or(file.server_cluster)
                .unwrap_or_default(),
            kubernetes: file.kubernetes,
            ssh,
            data_dir: data_dir.to_path_buf(),
            database_url: overrides.database_url.or(file.database_url),
            secret_key: overrides.secret_key.or(file.secret_key),
            replica_id,
            reconcile,
            local: LocalConfig {
                sandbox_command: file.local.sandbox_command.filter(|c| !c.trim().is_empty()),
                admin_database_url: file.local.admin_database_url,
            },
        })
    }
}

/// The built-in templates, then those in `dir` (`*.toml`, by file name),
/// every one checked; the first broken one (or a name used twice) is named
/// with its file and field.
fn load_templates(dir: Option<&Path>) -> Result<crate::console::Catalog, ConfigError> {
    use crate::model::template::{self, TemplateError};
    let mut all =
        template::builtins().map_err(|(file, error)| ConfigError::Template { file, error })?;
    if let Some(dir) = dir {
        let read_err = |source| ConfigError::TemplatesDir {
            dir: dir.display().to_string(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(read_err)?;
            let t = template::parse(&text).map_err(|error| ConfigError::Template {
                file: file.clone(),
                error,
            })?;
            if all.iter().any(|o| o.name == t.name) {
                return Err(ConfigError::Template {
                    file,
                    error: TemplateError {
                        field: "name".into(),
                        reason: format!("{} is already the name of another template", t.name),
                    },
                });
            }
            all.push(t);
        }
    }
    Ok(std::sync::Arc::new(all))
}

/// A config file holding the secret key must be Kiln's user's alone.
fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::SecretExposed {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

pub fn parse_file(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

fn check<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    v: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            value: v.to_string(),
            why: "out of range",
        })
    }
}

/// `hostname-pid`: unique per process, readable in `kiln status`.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "kiln".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_signup_needs_confined_sandboxes_or_a_server_cluster() {
        let (mode, why) = effective_signup(Signup::Open, ServerCluster::None, false);
        assert_eq!(mode, Signup::Closed);
        let why = why.expect("a reason");
        assert!(
            why.contains("ssh.signup") && why.contains("local driver"),
            "{why}"
        );
        assert_eq!(
            effective_signup(Signup::Open, ServerCluster::None, true),
            (Signup::Open, None)
        );
        for cluster in [ServerCluster::InCluster, ServerCluster::Kubeconfig] {
            assert_eq!(
                effective_signup(Signup::Open, cluster, false),
                (Signup::Open, None)
            );
        }
        for cluster in [ServerCluster::None, ServerCluster::InCluster] {
            assert_eq!(
                effective_signup(Signup::Closed, cluster, false),
                (Signup::Closed, None)
            );
        }
    }

    #[test]
    fn pool_targets_default_to_two_and_zero_turns_a_pool_off() {
        let c = Config::from_parts(Path::new("/d"), FileConfig::default(), Overrides::default())
            .unwrap();
        assert_eq!(c.pool, crate::model::pool::PoolTargets::LOCAL_DEFAULT);
        assert_eq!(c.pool.databases, 2);
        let file = parse_file("[pool]\ndatabases = 0\nsandboxes = 10").unwrap();
        let c = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!((c.pool.databases, c.pool.sandboxes), (0, 10));
    }

    #[test]
    fn pool_targets_out_of_range_are_refused_naming_the_key() {
        for (text, key) in [
            ("[pool]\ndatabases = -1", "pool.databases"),
            ("[pool]\nsandboxes = 1001", "pool.sandboxes"),
        ] {
            let file = parse_file(text).unwrap();
            let e = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(key) && msg.contains("0 (no pool) to 1000"),
                "{msg}"
            );
        }
        let e = parse_file("[pool]\ndatabase = 3").unwrap_err();
        assert!(e.contains("database"), "{e}");
        let e = parse_file("[pool]\ndatabases = \"many\"").unwrap_err();
        assert!(e.contains("databases") || e.contains("integer"), "{e}");
    }

    #[test]
    fn defaults_then_file_then_overrides() {
        let file = parse_file(
            r#"
            database_url = "postgres://file"
            replica_id = "from-file"
            [reconcile]
            resync_ms = 500
            batch_size = 10
            [local]
            sandbox_command = "bash"
            "#,
        )
        .unwrap();
        let c = Config::from_parts(
            Path::new("/d"),
            file,
            Overrides {
                database_url: Some("postgres://env".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://env"));
        assert_eq!(c.replica_id, "from-file");
        assert_eq!(c.reconcile.resync, Duration::from_millis(500));
        assert_eq!(c.reconcile.batch_size, 10);
        assert_eq!(c.reconcile.lease, Duration::from_secs(30));
        assert_eq!(c.local.sandbox_command.as_deref(), Some("bash"));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let e = parse_file("[reconcile]\nresync = 5").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let file = parse_file("[reconcile]\nbatch_size = 0").unwrap();
        let e = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("reconcile.batch_size"), "{e}");
        let file = parse_file("[reconcile]\nbackoff_base_ms = 5000\nbackoff_cap_secs = 1").unwrap();
        assert!(Config::from_parts(Path::new("/d"), file, Overrides::default()).is_err());
        let file = parse_file("[ssh]\nprefix_key = \"C-c\"").unwrap();
        let e = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("ssh.prefix_key"), "{e}");
        assert!(e.to_string().contains("interrupt"), "{e}");
    }

    #[test]
    fn pre_sign_in_connection_caps_are_read_and_must_be_positive() {
        let file =
            parse_file("[ssh]\nmax_preauth_per_address = 3\nmax_preauth_total = 50").unwrap();
        let c = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!(
            (c.ssh.max_preauth_per_address, c.ssh.max_preauth_total),
            (3, 50)
        );
        let file = parse_file("[ssh]\nmax_preauth_total = 0").unwrap();
        let e = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("ssh.max_preauth_total"), "{e}");
    }

    #[test]
    fn a_config_file_holding_the_secret_key_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("kiln-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("kiln.toml");
        let set_mode =
            |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let load = || Config::load(&dir, None, Overrides::default());
        std::fs::write(&path, format!("secret_key = \"{}\"\n", "ab".repeat(32))).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            set_mode(mode);
            let e = load().unwrap_err().to_string();
            assert!(e.contains(&format!("chmod 600 {}", path.display())), "{e}");
            assert!(e.contains("secret_key"), "{e}");
        }
        set_mode(0o600);
        assert!(load().unwrap().secret_key.is_some());
        // Without the secret key, the file's mode is the operator's business.
        std::fs::write(&path, "replica_id = \"r1\"\n").unwrap();
        set_mode(0o644);
        assert_eq!(load().unwrap().replica_id, "r1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sign_ups_per_address_are_limited_by_default_and_configurable() {
        let none = parse_file("").unwrap();
        let c = Config::from_parts(Path::new("/d"), none, Overrides::default()).unwrap();
        assert_eq!(c.ssh.signup_limit.per_address, 3);
        assert_eq!(c.ssh.signup_limit.window, Duration::from_secs(3600));
        let file =
            parse_file("[ssh]\nmax_signups_per_address = 5\nsignup_window_secs = 60").unwrap();
        let c = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!(c.ssh.signup_limit.per_address, 5);
        assert_eq!(c.ssh.signup_limit.window, Duration::from_secs(60));
        let file = parse_file("[ssh]\nmax_signups_per_address = 0").unwrap();
        let e = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("ssh.max_signups_per_address"), "{e}");
        let file = parse_file("[audit]\nretention_days = 30").unwrap();
        let c = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!(c.audit_retention, Duration::from_secs(30 * 86_400));
        let file = parse_file("[audit]\nretention_days = 0").unwrap();
        let e = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("audit.retention_days"), "{e}");
    }

    #[test]
    fn idle_durations_as_text_or_seconds() {
        let c = Config::from_parts(Path::new("/d"), FileConfig::default(), Overrides::default())
            .unwrap();
        assert_eq!(c.idle.stop_after, Duration::from_secs(86_400));
        assert_eq!(c.idle.warn_before, Duration::from_secs(900));
        assert_eq!(c.notifications_keep_for, DEFAULT_NOTIFICATIONS_KEEP);
        let file = parse_file(
            "[idle]\nstop_after = \"3s\"\nwarn_before = 2\nsweep_every = \"200ms\"\n\
             [notifications]\nkeep_for = \"7d\"",
        )
        .unwrap();
        let c = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!(c.idle.stop_after, Duration::from_secs(3));
        assert_eq!(c.idle.warn_before, Duration::from_secs(2));
        assert_eq!(c.reconcile.idle, c.idle);
        assert_eq!(c.ssh.idle, c.idle);
        assert_eq!(c.notifications_keep_for, Duration::from_secs(7 * 86_400));
        let file = parse_file("[idle]\nstop_after = 0").unwrap();
        let c = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap();
        assert!(!c.idle.enabled());
        for bad in [
            "[idle]\nstop_after = \"soon\"",
            "[idle]\nstop_after = \"30d\"",
            "[idle]\nsweep_every = \"1ms\"",
            "[notifications]\nkeep_for = \"1s\"",
        ] {
            let file = parse_file(bad).unwrap();
            let e = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap_err();
            let key = bad.trim_start_matches('[').split(']').next().unwrap();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn the_http_listener_is_off_unless_set_and_must_be_an_address() {
        let none = parse_file("").unwrap();
        let c = Config::from_parts(Path::new("/d"), none, Overrides::default()).unwrap();
        assert_eq!(c.http_listen, None);
        assert_eq!(c.ssh_host_key_file, None);
        assert_eq!(c.shutdown_grace, Duration::from_secs(20));
        let file = parse_file(
            "shutdown_grace_secs = 4\n[http]\nlisten = \"127.0.0.1:9090\"\n\
             [ssh]\nhost_key_file = \"/etc/kiln/host-key/ssh_host_ed25519_key\"",
        )
        .unwrap();
        let c = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!(c.http_listen.as_deref(), Some("127.0.0.1:9090"));
        assert_eq!(c.shutdown_grace, Duration::from_secs(4));
        assert_eq!(c.reconcile.shutdown_grace, Duration::from_secs(3));
        assert_eq!(
            c.ssh_host_key_file.as_deref(),
            Some(Path::new("/etc/kiln/host-key/ssh_host_ed25519_key"))
        );
        let file = parse_file("[http]\nlisten = \"9090\"").unwrap();
        let e = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("http.listen"), "{e}");
        let file = parse_file("shutdown_grace_secs = 0").unwrap();
        assert!(Config::from_parts(Path::new("/d"), file, Overrides::default()).is_err());
    }

    #[test]
    fn the_prefix_key_is_ctrl_bracket_unless_configured() {
        let none = parse_file("").unwrap();
        let c = Config::from_parts(Path::new("/d"), none, Overrides::default()).unwrap();
        assert_eq!(c.ssh.prefix_key.label(), "Ctrl-]");
        let file = parse_file("[ssh]\nprefix_key = \"C-a\"").unwrap();
        let c = Config::from_parts(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!(c.ssh.prefix_key.byte(), 0x01);
    }
}
