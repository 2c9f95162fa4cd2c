//! The `kiln` command line: argument shapes and what each subcommand does.
//! Operator commands reach the same intents the console uses.

mod hook;
mod operator;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::runtime::Database;

use operator::{agents, audit, mute, project, quota, status, team, template, user};
use serve::serve;

pub use operator::age;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "A multi-tenant platform for AI coding sandboxes, driven from the terminal"
)]
pub struct Cli {
    /// Where Kiln keeps its state: the embedded database, the secret key, sandboxes.
    #[arg(long, global = true, env = "KILN_DATA_DIR", default_value = "./.kiln")]
    pub data_dir: PathBuf,
    /// A TOML config file (default: {data-dir}/kiln.toml when it exists).
    #[arg(long, global = true, env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the SSH console listens (overrides `ssh.listen`; default 0.0.0.0:2222).
    #[arg(long, global = true, env = "KILN_SSH_LISTEN")]
    pub ssh_listen: Option<String>,
    /// Where `/metrics`, `/livez` and `/readyz` are served (overrides
    /// `http.listen`; default: no HTTP listener).
    #[arg(long, global = true, env = "KILN_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// The cluster for users without a kubeconfig of their own (overrides
    /// `server_cluster`; default none = the local driver).
    #[arg(long, global = true, env = "KILN_SERVER_CLUSTER", value_enum)]
    pub server_cluster: Option<crate::config::ServerCluster>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, then the SSH console and the reconcile loop, until SIGINT/SIGTERM.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage a user's projects (the same intents the console records).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// What the replicas are doing: leases held, queue depth, recent errors.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks that print numbers.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Teams: their members and roles. A team's projects are TEAM/NAME.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Limits per user or team: projects that may exist, sandboxes that may run.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Read the audit trail of every user (sign-ins, changes, attaches, refusals), oldest first.
    Audit(AuditArgs),
    /// A user's sessions and their agent states (as `ssh … agents` shows them to the user).
    Agents {
        #[command(flatten)]
        owner: Owner,
        #[arg(long)]
        json: bool,
    },
    /// A user's sessions that need them, oldest wait first (as `ssh … inbox`).
    Inbox {
        #[command(flatten)]
        owner: Owner,
        #[arg(long)]
        json: bool,
    },
    /// Mute a user's project's agent notifications; --off unmutes (as `ssh … mute`).
    Mute {
        name: String,
        #[command(flatten)]
        owner: Owner,
        #[arg(long)]
        off: bool,
    },
    /// Global templates everyone may start a project from (built-in ones ship with Kiln).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Claude Code's hook command inside a sandbox: reads the hook's JSON
    /// on stdin and hands it to Kiln; always exits 0, within about 0.5 s.
    #[command(hide = true)]
    Hook {
        /// The sandbox's hook socket (a local sandbox); without it, HTTP to
        /// KILN_HOOK_URL with the token in KILN_HOOK_TOKEN (Kubernetes).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Report that the session's program exited (run by tmux's
        /// pane-died hook) instead of reading a hook's JSON from stdin.
        #[arg(long)]
        exited: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Add (or replace) a global template from a TOML file; a broken one is refused, naming the field.
    Add { file: PathBuf },
    /// List the built-in and global templates.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a global template.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create a team (its name is taken from the names users have too).
    Create { name: String },
    /// Delete a team that has no projects left.
    Delete { name: String },
    /// List teams with their members and projects counted.
    List {
        #[arg(long)]
        json: bool,
    },
    /// List a team's members and their roles.
    Members { name: String },
    /// Add a user to a team with a role (owner, member or viewer).
    Add {
        name: String,
        user: String,
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Change a member's role.
    Role {
        name: String,
        user: String,
        role: String,
    },
    /// Remove a user from a team; their open sessions on its projects are detached.
    Remove { name: String, user: String },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set the limits of one user or team (a limit left out means none).
    Set {
        /// The user whose quota this is.
        #[arg(long, required_unless_present = "team", conflicts_with = "team")]
        user: Option<String>,
        /// The team whose quota this is.
        #[arg(long)]
        team: Option<String>,
        /// How many projects may exist (those being deleted do not count).
        #[arg(long)]
        projects: Option<i64>,
        /// How many sandboxes may be running or asked to run at once.
        #[arg(long)]
        running: Option<i64>,
        /// On Kubernetes: the CPU all running sandboxes may request together (4, 1.5, 500m).
        #[arg(long, value_parser = |s: &str| crate::model::quota::parse_cpu(s))]
        cpu: Option<i64>,
        /// On Kubernetes: the memory they may request together (8Gi, 512Mi).
        #[arg(long, value_parser = |s: &str| crate::model::quota::parse_memory(s))]
        memory: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only the records of this user (as named in the record).
    #[arg(long)]
    pub user: Option<String>,
    /// Only the records about this project (name or slug, as the actor typed it).
    #[arg(long)]
    pub project: Option<String>,
    /// Only records since then: 30m, 12h, 7d, or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// How many of the newest records to show (1-10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is prompted for (or read from stdin).
    Add {
        username: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Create the user without a password (then give --ssh-key).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
        /// Register an OpenSSH public key file (e.g. ~/.ssh/id_ed25519.pub) for the user.
        #[arg(long, value_name = "FILE")]
        ssh_key: Option<PathBuf>,
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: they can no longer log in; their projects stay.
    Disable { username: String },
}

#[derive(Debug, Args)]
pub struct Owner {
    /// The user who owns the project.
    #[arg(long = "user")]
    pub user: String,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    Create {
        name: String,
        #[command(flatten)]
        owner: Owner,
        #[arg(long, default_value = "")]
        description: String,
        /// Create it in this team, on the user's behalf: it is then TEAM/NAME.
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
        /// Clone this repository into the sandbox first (https://, ssh://, git:// or user@host:path).
        #[arg(long, value_name = "URL")]
        repo: Option<String>,
        /// The branch to check out (created from the default branch if missing).
        #[arg(long, value_name = "B")]
        branch: Option<String>,
        /// Start from this template (`kiln template list`).
        #[arg(long, value_name = "T")]
        template: Option<String>,
    },
    List {
        #[command(flatten)]
        owner: Owner,
        #[arg(long)]
        json: bool,
    },
    Start {
        name: String,
        #[command(flatten)]
        owner: Owner,
    },
    Stop {
        name: String,
        #[command(flatten)]
        owner: Owner,
    },
    Delete {
        name: String,
        #[command(flatten)]
        owner: Owner,
    },
    /// Try again after an ERROR, toward what the project was heading for.
    Retry {
        name: String,
        #[command(flatten)]
        owner: Owner,
    },
    /// Show a project's idle stop, or set its own idle time (DURATION, off or default).
    Idle {
        name: String,
        #[command(flatten)]
        owner: Owner,
        #[arg(long, value_name = "DURATION|off|default")]
        after: Option<String>,
    },
    /// Postpone a running project's idle stop (by its idle time unless --for).
    Extend {
        name: String,
        #[command(flatten)]
        owner: Owner,
        #[arg(long = "for", value_name = "DURATION")]
        for_: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Reconcile throughput with a zero-latency fake driver, and the cost of an idle resync.
    Reconcile {
        /// Projects created for each throughput run (each has 2 resources).
        #[arg(long, default_value_t = 5000)]
        projects: usize,
        /// RUNNING projects present for the idle-resync measurement.
        #[arg(long, default_value_t = 10_000)]
        idle_projects: usize,
    },
    /// Attach against OpenSSH sshd + tmux attach: echo latency, throughput, CPU.
    Attach {
        /// Keystrokes timed per path for the echo latency (the p99 rests on
        /// the slowest hundredth of them).
        #[arg(long, default_value_t = 3000)]
        keys: usize,
        /// MiB sent through the session in each throughput run.
        #[arg(long, default_value_t = 100)]
        megabytes: usize,
    },
    /// Status propagation to open dashboards, and the cost of idle sessions.
    Console {
        /// Status changes timed from commit to drawn.
        #[arg(long, default_value_t = 200)]
        changes: usize,
        /// Idle session counts to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "50,200,500")]
        sessions: Vec<usize>,
    },
    /// Teams: the console's authorization and quota check per action, and a
    /// member's dashboard project list, against many users, teams and projects.
    Teams {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 100)]
        teams: usize,
        /// Projects in all (a tenth of them the teams').
        #[arg(long, default_value_t = 10_000)]
        projects: usize,
        /// How many teams the measured user is in.
        #[arg(long, default_value_t = 5)]
        member_of: usize,
        /// Timed runs per action.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
    },
    /// Create → RUNNING on the local driver (p50/p99), the warm pools (databases, sandboxes) off and
    /// on side by side: a plain project, and one from a template that clones a small
    /// repository and runs a setup script.
    Create {
        /// Projects created per run, one after another.
        #[arg(long, default_value_t = 100)]
        creates: usize,
    },
    /// Agent hooks: fired → drawn on an open dashboard, and the hook command's own run time.
    Agents {
        /// Transitions timed (alternating needs_input and working).
        #[arg(long, default_value_t = 200)]
        transitions: usize,
    },
    /// The fault suite: replica processes killed with SIGKILL mid-reconcile,
    /// two replicas on one database; checks the invariants, prints figures,
    /// exits non-zero when one fails.
    Faults(FaultsArgs),
    /// The fault suite's SSH front end (no reconcile loop), for the soak.
    #[command(hide = true)]
    FaultsFront {
        #[arg(long, env = "KILN_FAULTS_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long)]
        listen: String,
    },
    /// One replica of the fault suite: the reconcile loop only, on the
    /// counting driver (started by `bench faults`).
    #[command(hide = true)]
    FaultsReplica {
        /// Kiln's database (the suite's scratch database).
        #[arg(long, env = "KILN_FAULTS_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The counting driver's database.
        #[arg(long, env = "KILN_FAULTS_WORLD_URL", hide_env_values = true)]
        world_url: String,
        #[arg(long)]
        replica_id: String,
        #[arg(long)]
        lease_ms: u64,
        #[arg(long)]
        latency_ms: u64,
    },
}

#[derive(Debug, Args)]
pub struct FaultsArgs {
    /// Projects churning in the soak scenario.
    #[arg(long, default_value_t = 500)]
    soak_projects: usize,
    /// Idle dashboards open in the soak scenario.
    #[arg(long, default_value_t = 200)]
    soak_sessions: usize,
    /// How long the soak scenario churns, in seconds.
    #[arg(long, default_value_t = 180)]
    soak_secs: u64,
    /// Projects in flight (each has a sandbox and a database).
    #[arg(long, default_value_t = 200)]
    projects: usize,
    /// SIGKILLs in the kill scenario, at random intervals of 0.3 to 1.5 s.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Replica processes in the kill scenario.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Time each driver call takes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The replicas' lease, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    /// Scenarios to run, comma-separated: kill, two-replicas, pg-restart.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill,two-replicas,pg-restart"
    )]
    scenarios: Vec<String>,
    /// Dashboards open during the PostgreSQL restarts (pg-restart).
    #[arg(long, default_value_t = 4)]
    dashboards: usize,
    /// Seconds PostgreSQL stays stopped in the second outage (pg-restart).
    #[arg(long, default_value_t = 10)]
    pg_outage_secs: u64,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // A hook runs inside a sandbox: no config, no database, nothing to fail.
    if let Command::Hook { socket, exited } = &cli.command {
        hook::run(socket.as_deref(), *exited);
        return Ok(());
    }
    // A fault-suite replica needs nothing but its arguments (no config, and
    // never the embedded cluster).
    if let Command::Bench(BenchCommand::FaultsReplica {
        database_url,
        world_url,
        replica_id,
        lease_ms,
        latency_ms,
    }) = cli.command
    {
        let args = crate::bench::faults::ReplicaArgs {
            database_url,
            world_url,
            lease: std::time::Duration::from_millis(lease_ms),
            latency: std::time::Duration::from_millis(latency_ms),
        };
        return crate::bench::faults::run_replica(args, replica_id).await;
    }
    if let Command::Bench(BenchCommand::FaultsFront {
        database_url,
        listen,
    }) = &cli.command
    {
        return crate::bench::faults::run_front(database_url, listen).await;
    }
    let overrides = Overrides {
        database_url: std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()),
        secret_key: std::env::var("KILN_SECRET_KEY")
            .ok()
            .filter(|s| !s.is_empty()),
        replica_id: std::env::var("KILN_REPLICA_ID")
            .ok()
            .filter(|s| !s.is_empty()),
        ssh_listen: cli.ssh_listen.clone(),
        server_cluster: cli.server_cluster,
        http_listen: cli.http_listen.clone(),
    };
    let config = Config::load(&cli.data_dir, cli.config.as_deref(), overrides)?;
    crate::ops::logs::set_replica(&config.replica_id);
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = Database::open(&config, 2).await?;
            println!("migrations applied");
            db.close().await
        }
        Command::User(cmd) => with_db(&config, async |db| user(db, cmd).await).await,
        Command::Project(cmd) => {
            let (idle, repos, catalog) =
                (config.idle.clone(), config.git, config.templates.clone());
            with_db(&config, async |db| {
                project(db, idle, cmd, repos, catalog).await
            })
            .await
        }
        Command::Status { json } => with_db(&config, async |db| status(db, json).await).await,
        Command::Team(cmd) => with_db(&config, async |db| team(db, cmd).await).await,
        Command::Template(cmd) => {
            let catalog = config.templates.clone();
            with_db(&config, async |db| template(db, cmd, catalog).await).await
        }
        Command::Quota(cmd) => with_db(&config, async |db| quota(db, cmd).await).await,
        Command::Audit(args) => with_db(&config, async |db| audit(db, args).await).await,
        Command::Agents { owner, json } => {
            with_db(&config, async |db| agents(db, &owner, false, json).await).await
        }
        Command::Inbox { owner, json } => {
            with_db(&config, async |db| agents(db, &owner, true, json).await).await
        }
        Command::Mute { name, owner, off } => {
            with_db(&config, async |db| mute(db, &name, &owner, !off).await).await
        }
        Command::Bench(BenchCommand::Reconcile {
            projects,
            idle_projects,
        }) => {
            crate::bench::reconcile_available()?;
            let db = Database::open(&config, 4).await?;
            let admin = db.admin_url.clone();
            let r = crate::bench::reconcile(&admin, projects, idle_projects).await;
            db.close().await?;
            r
        }
        Command::Bench(BenchCommand::Attach { keys, megabytes }) => {
            let db = Database::open(&config, 2).await?;
            let admin = db.admin_url.clone();
            let r = crate::bench::attach(&admin, keys, megabytes).await;
            db.close().await?;
            r
        }
        Command::Bench(BenchCommand::Console { changes, sessions }) => {
            let db = Database::open(&config, 2).await?;
            let admin = db.admin_url.clone();
            let r = crate::bench::console(&admin, changes, &sessions).await;
            db.close().await?;
            r
        }
        Command::Bench(BenchCommand::Teams {
            users,
            teams,
            projects,
            member_of,
            samples,
        }) => {
            let db = Database::open(&config, 2).await?;
            let admin = db.admin_url.clone();
            let b = crate::bench::teams::TeamsBench {
                users,
                teams,
                projects,
                samples,
                member_of,
            };
            let r = crate::bench::teams(&admin, &b).await;
            db.close().await?;
            r
        }
        Command::Bench(BenchCommand::Create { creates }) => {
            let db = Database::open(&config, 2).await?;
            let admin = db.admin_url.clone();
            let r = crate::bench::create(&admin, creates).await;
            db.close().await?;
            r
        }
        Command::Bench(BenchCommand::Agents { transitions }) => {
            let db = Database::open(&config, 2).await?;
            let admin = db.admin_url.clone();
            let r = crate::bench::agents(&admin, transitions).await;
            db.close().await?;
            r
        }
        Command::Bench(BenchCommand::Faults(args)) => {
            let mut opts = crate::bench::faults::FaultOptions::new(std::env::current_exe()?);
            opts.projects = args.projects;
            opts.kills = args.kills;
            opts.replicas = args.replicas;
            opts.latency = std::time::Duration::from_millis(args.latency_ms);
            opts.lease = std::time::Duration::from_millis(args.lease_ms);
            opts.scenarios = args.scenarios;
            opts.soak_projects = args.soak_projects;
            opts.soak_sessions = args.soak_sessions;
            opts.soak = std::time::Duration::from_secs(args.soak_secs);
            opts.dashboards = args.dashboards;
            opts.pg_outage = std::time::Duration::from_secs(args.pg_outage_secs);
            let db = Database::open(&config, 2).await?;
            let admin = db.admin_url.clone();
            let r = crate::bench::faults(&admin, &opts).await;
            db.close().await?;
            let failures = r?.failures();
            if !failures.is_empty() {
                anyhow::bail!(
                    "{} invariants failed:\n  {}",
                    failures.len(),
                    failures.join("\n  ")
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::FaultsReplica { .. } | BenchCommand::FaultsFront { .. })
        | Command::Hook { .. } => {
            unreachable!("handled above")
        }
    }
}

/// Runs an operator command and always closes the database (stopping an
/// embedded cluster this command started).
async fn with_db<F>(config: &Config, f: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Database) -> anyhow::Result<()>,
{
    let db = Database::open(config, 4).await?;
    let result = f(&db).await;
    db.close().await?;
    result
}
