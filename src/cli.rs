//! The `kiln` command line: argument shapes and what each subcommand does.
//! Operator commands reach the same intents the console uses.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Overrides};
use crate::model::intent::Intent;
use crate::model::naming::printable;
use crate::reconcile::Reconciler;
use crate::runtime::Database;
use crate::store::projects::ProjectView;
use crate::store::resources::ResourceKind;

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
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Reconcile throughput with a zero-latency fake driver, and the cost of an idle resync.
    Reconcile {
        /// Projects created for the throughput run (each has 2 resources).
        #[arg(long, default_value_t = 2000)]
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
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
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
    };
    let config = Config::load(&cli.data_dir, cli.config.as_deref(), overrides)?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = Database::open(&config, 2).await?;
            println!("migrations applied");
            db.close().await
        }
        Command::User(cmd) => with_db(&config, async |db| user(db, cmd).await).await,
        Command::Project(cmd) => with_db(&config, async |db| project(db, cmd).await).await,
        Command::Status { json } => with_db(&config, async |db| status(db, json).await).await,
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let db = Database::open(&config, 30).await?;
    let sandboxes =
        crate::local::LocalSandboxes::new(&config.data_dir, config.local.sandbox_command.clone())
            .context("setting up local sandboxes")?;
    let databases = crate::local::LocalDatabases::connect(&db.admin_url)
        .await
        .context("connecting to the Postgres server for tenant databases")?;
    let feed = Arc::new(db.store.listen().await.context("listening for changes")?);
    let host_key =
        crate::ssh::hostkey::load_or_create(&config.data_dir.join("ssh_host_ed25519_key"))?;
    let listener = crate::ssh::server::bind(&config.ssh.listen).await?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let server_cluster = server_cluster_client(config.server_cluster).await?;
    let (drift_tx, drift_rx) = tokio::sync::mpsc::channel(1024);
    let drift_marker = crate::backends::spawn_drift_marker(db.store.clone(), drift_rx);
    let backends = Arc::new(
        crate::backends::Backends::new(
            crate::backends::LocalBackend {
                sandboxes: Arc::new(sandboxes.clone()),
                databases: Arc::new(databases),
                attach: Some(Arc::new(sandboxes.clone())),
            },
            server_cluster,
            Arc::new(config.kubernetes.clone()),
            Arc::new(db.store.clone()),
        )
        .with_drift_watch(drift_tx),
    );
    let reconciler = Reconciler::new(
        db.store.clone(),
        backends.clone(),
        backends.clone(),
        config.reconcile.clone(),
        config.replica_id.clone(),
    );
    eprintln!(
        "kiln: replica {} serving SSH on {} (data dir {})",
        config.replica_id,
        listener.local_addr()?,
        config.data_dir.display()
    );
    let drivers = crate::ssh::server::ConsoleDrivers {
        attach: Some(backends.clone()),
        logs: Some(backends.clone()),
    };
    let ssh = crate::ssh::server::run(
        db.store.clone(),
        feed.clone(),
        drivers,
        config.ssh.clone(),
        host_key,
        listener,
        LOCAL_NOTICE.to_string(),
        shutdown.clone(),
    );
    let reconcile = reconciler.run(Some(feed.subscribe()), shutdown.clone());
    // Either one failing stops the other: a replica half-up is worse than down.
    let (ssh_result, reconcile_result) = tokio::join!(
        async {
            let r = ssh.await;
            shutdown.cancel();
            r
        },
        async {
            let r = reconcile.await;
            shutdown.cancel();
            r
        }
    );
    drift_marker.abort();
    drop(feed);
    db.close().await?;
    ssh_result?;
    reconcile_result.map(|_| ()).map_err(Into::into)
}

/// The server's own cluster client, when configured; a configured cluster
/// that cannot be reached stops Kiln at start rather than failing every
/// project later.
async fn server_cluster_client(
    mode: crate::config::ServerCluster,
) -> anyhow::Result<Option<kube::Client>> {
    use crate::config::ServerCluster;
    let config = match mode {
        ServerCluster::None => return Ok(None),
        ServerCluster::InCluster => kube::Config::incluster()
            .context("server_cluster = in-cluster, but this is not a pod with a service account")?,
        ServerCluster::Kubeconfig => kube::Config::from_kubeconfig(
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .context(
            "server_cluster = kubeconfig, but KUBECONFIG (or ~/.kube/config) cannot be used",
        )?,
    };
    let client = kube::Client::try_from(config).context("building the cluster client")?;
    let version = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        client.apiserver_version(),
    )
    .await
    .context("the server's cluster did not answer within 15 s")?
    .context("the server's cluster does not answer")?;
    eprintln!(
        "kiln: server cluster: Kubernetes {}.{}",
        version.major, version.minor
    );
    Ok(Some(client))
}

/// Shown on every dashboard while sandboxes run on this host.
const LOCAL_NOTICE: &str =
    "local driver: sandboxes run on this host as the Kiln user (trusted single-host use)";

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("kiln: shutting down (releasing leases)");
        shutdown.cancel();
    });
}

const OPERATOR: &str = "operator";

async fn user(db: &Database, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            username,
            password_stdin,
            no_password,
            ssh_key,
            admin,
        } => {
            if no_password && ssh_key.is_none() {
                bail!("a user needs a way in: give a password or --ssh-key FILE");
            }
            // Read and check the key before creating anything.
            let key_line = match &ssh_key {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            if let Some(line) = &key_line {
                russh::keys::PublicKey::from_openssh(line.trim()).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not an OpenSSH public key ({e}); nothing was created",
                        ssh_key.as_ref().expect("key path").display()
                    )
                })?;
            }
            let password = if no_password {
                None
            } else if password_stdin {
                Some(read_stdin_line()?)
            } else {
                Some(prompt_new_password()?)
            };
            let u = db
                .store
                .create_user(&username, password.as_deref(), admin)
                .await?;
            if let Some(line) = key_line
                && let Err(e) = db.store.add_ssh_key(u.id, &line).await
            {
                // Keep "nothing was created" true: undo the user.
                let _ = db.store.delete_user(u.id).await;
                return Err(e).context("registering the SSH key; nothing was created");
            }
            println!("created user {} ({})", u.username, u.role);
        }
        UserCommand::List { json } => {
            let users = db.store.list_users().await?;
            if json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "username": u.username, "role": u.role,
                            "disabled": u.disabled_at.is_some(), "created_at": u.created_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<32} {:<7} {:<9} CREATED", "USERNAME", "ROLE", "STATE");
                for u in users {
                    let state = if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<32} {:<7} {:<9} {}",
                        u.username,
                        u.role,
                        state,
                        u.created_at.format("%Y-%m-%d %H:%M")
                    );
                }
            }
        }
        UserCommand::Disable { username } => {
            db.store.disable_user(&username).await?;
            println!("disabled user {username}");
        }
    }
    Ok(())
}

async fn project(db: &Database, cmd: ProjectCommand) -> anyhow::Result<()> {
    let intent = |name: String, owner: Owner, intent: Intent| async move {
        let u = db.store.require_user(&owner.user).await?;
        let status = db
            .store
            .record_intent(u.id, &name, intent, OPERATOR)
            .await?;
        println!(
            "{} requested for {}: now {status}",
            intent,
            printable(&name, 60)
        );
        anyhow::Ok(())
    };
    match cmd {
        ProjectCommand::Create {
            name,
            owner,
            description,
        } => {
            let u = db.store.require_user(&owner.user).await?;
            let p = db
                .store
                .create_project(u.id, &name, &description, OPERATOR)
                .await?;
            println!(
                "created project {} (slug {}): {}",
                printable(&p.name, 60),
                p.slug,
                p.status
            );
            Ok(())
        }
        ProjectCommand::List { owner, json } => {
            let u = db.store.require_user(&owner.user).await?;
            let projects = db.store.list_projects(u.id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&projects)?);
            } else {
                print_projects(&projects);
            }
            Ok(())
        }
        ProjectCommand::Start { name, owner } => intent(name, owner, Intent::Start).await,
        ProjectCommand::Stop { name, owner } => intent(name, owner, Intent::Stop).await,
        ProjectCommand::Delete { name, owner } => intent(name, owner, Intent::Delete).await,
        ProjectCommand::Retry { name, owner } => intent(name, owner, Intent::Retry).await,
    }
}

fn print_projects(projects: &[ProjectView]) {
    println!(
        "{:<24} {:<12} {:<12} {:<12} {:>6}  ERROR",
        "NAME", "STATUS", "SANDBOX", "DATABASE", "AGE"
    );
    for p in projects {
        let sub = |k: ResourceKind| {
            p.resources
                .iter()
                .find(|r| r.kind == k)
                .map(|r| r.status.as_str())
                .unwrap_or("-")
        };
        let error = p
            .resources
            .iter()
            .find_map(|r| r.last_error.as_deref())
            .map(|e| printable(e, 60))
            .unwrap_or_default();
        println!(
            "{:<24} {:<12} {:<12} {:<12} {:>6}  {}",
            printable(&p.project.name, 24),
            p.project.status.as_str(),
            sub(ResourceKind::Sandbox),
            sub(ResourceKind::Database),
            age(p.project.created_at),
            error
        );
    }
}

/// `45s`, `12m`, `3h`, `9d`.
pub fn age(since: chrono::DateTime<Utc>) -> String {
    let s = (Utc::now() - since).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

async fn status(db: &Database, json: bool) -> anyhow::Result<()> {
    let s = db.store.replica_status().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("queue depth (due, unleased): {}", s.queue_depth);
    println!("projects by status:");
    for (status, n) in &s.by_status {
        println!("  {status:<12} {n}");
    }
    println!("leases held:");
    if s.lease_holders.is_empty() {
        println!("  none");
    }
    for h in &s.lease_holders {
        let until = h
            .until
            .map(|u| u.format("%H:%M:%S").to_string())
            .unwrap_or_default();
        println!("  {:<40} {:>5} until {until}", h.owner, h.leases);
    }
    println!("recent errors:");
    if s.errors.is_empty() {
        println!("  none");
    }
    for e in &s.errors {
        let next = e
            .next_attempt_at
            .map(|t| format!("next attempt {}", t.format("%H:%M:%S")))
            .unwrap_or_else(|| "waiting for retry".into());
        println!(
            "  {} {} [{}] attempts {} ({next}): {}",
            e.kind,
            e.resource_name,
            e.status,
            e.attempts,
            printable(&e.last_error, 120)
        );
    }
    Ok(())
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!("no password on stdin");
    }
    Ok(pw)
}

fn prompt_new_password() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to prompt for a password: use --password-stdin or --no-password");
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    if first != second {
        bail!("the passwords do not match; nothing was created");
    }
    Ok(first)
}
