//! A private PostgreSQL cluster under Kiln's data directory.
//!
//! When `DATABASE_URL` is not set, Kiln runs its own cluster so that a single
//! binary plus the distribution's `postgresql` package is enough to get going.
//!
//! Layout under `{data_dir}`:
//!
//! ```text
//! pg.lock                 advisory lock, held only while a process starts the cluster
//! pg/                     owned by the user the server runs as
//! pg/data/                the cluster (PGDATA), created by initdb
//! pg/sock/                the unix socket directory (mode 0700); no TCP listener
//! pg/log/postgres.log     server log (pg_ctl -l)
//! ```
//!
//! PGDATA is a subdirectory rather than `pg/` itself because initdb insists on
//! an empty (or missing) directory, and the socket and log directories must
//! exist before the server starts.
//!
//! Ownership: a handle "owns" the server only if it started it. A second Kiln
//! process (e.g. `kiln user add` while `kiln serve` runs) reuses the running
//! server and leaves it alone on `stop`. Dropping a handle without calling
//! `stop` leaves the server running; the next `start` reuses it.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::process::Command;

/// The port number only names the socket file (`.s.PGSQL.<port>`); the server
/// has no TCP listener, so clashing with a system PostgreSQL on 5432 is harmless.
pub const SOCKET_PORT: u16 = 5432;

/// Role created by initdb (superuser) and used by Kiln.
const SUPERUSER: &str = "kiln";
/// Database Kiln's own tables live in.
const KILN_DB: &str = "kiln";
/// System account the server runs as when Kiln itself runs as root.
const SYSTEM_PG_USER: &str = "postgres";
/// `sun_path` is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// How long to wait for the server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for another process that holds `pg.lock`. Generous: that
/// process may be running initdb and then waiting up to READY_TIMEOUT.
const LOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of the server log quoted in start errors.
const LOG_TAIL_LINES: usize = 20;

/// Things that can go wrong; every message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in \
         /usr/lib/postgresql/*/bin; install the postgresql package, e.g. apt install postgresql \
         (or set DATABASE_URL to use an existing server)"
    )]
    BinariesNotFound,

    #[error(
        "the PostgreSQL socket path {path} is {len} bytes, longer than the {max}-byte limit for \
         unix sockets; use a shorter --data-dir (or set DATABASE_URL)"
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },

    #[error(
        "PostgreSQL refuses to run as root and there is no `{SYSTEM_PG_USER}` system user to run \
         it as; run kiln as an ordinary user or set DATABASE_URL"
    )]
    RootWithoutPostgresUser,

    #[error(
        "PostgreSQL refuses to run as root and `runuser` (needed to run it as the \
         `{SYSTEM_PG_USER}` user) was not found; install util-linux, run kiln as an ordinary \
         user, or set DATABASE_URL"
    )]
    RunuserNotFound,

    #[error(
        "the `{user}` user cannot enter {dir}, so the PostgreSQL server (which runs as that user \
         because kiln runs as root) cannot reach {data_dir}; allow it (e.g. chmod o+x {dir}), \
         choose a --data-dir under a directory it can traverse, or set DATABASE_URL"
    )]
    NotTraversable {
        user: String,
        dir: PathBuf,
        data_dir: PathBuf,
    },

    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("could not run {program}: {source}; check the PostgreSQL installation")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    #[error(
        "timed out after {}s waiting for {} (another kiln process is starting PostgreSQL); \
         if it is stuck, stop it and retry",
        waited.as_secs(), path.display()
    )]
    LockTimeout { path: PathBuf, waited: Duration },

    /// `log_excerpt` names the server log and quotes its last lines, which
    /// usually hold the real reason.
    #[error("PostgreSQL in {} did not start: {detail}\n{log_excerpt}", pgdata.display())]
    StartFailed {
        pgdata: PathBuf,
        detail: String,
        log_excerpt: String,
    },

    #[error(
        "PostgreSQL is not accepting connections on {} after {waited_secs}s: {last_error}\n\
         {log_excerpt}",
        socket_dir.display()
    )]
    NotReady {
        socket_dir: PathBuf,
        waited_secs: u64,
        last_error: String,
        log_excerpt: String,
    },

    #[error("could not {action} in the private PostgreSQL cluster: {source}")]
    Sql {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// The PostgreSQL server programs, all from one installation directory so that
/// initdb and the server always agree on the on-disk format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub bin_dir: PathBuf,
    pub initdb: PathBuf,
    pub pg_ctl: PathBuf,
    pub postgres: PathBuf,
}

impl PgBinaries {
    fn in_dir(dir: &Path) -> Option<Self> {
        let bins = PgBinaries {
            bin_dir: dir.to_path_buf(),
            initdb: dir.join("initdb"),
            pg_ctl: dir.join("pg_ctl"),
            postgres: dir.join("postgres"),
        };
        [&bins.initdb, &bins.pg_ctl, &bins.postgres]
            .iter()
            .all(|p| is_executable(p))
            .then_some(bins)
    }
}

/// The user the server runs as when Kiln runs as root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
    runuser: PathBuf,
}

/// A handle on the private cluster in `{data_dir}/pg`.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    bins: PgBinaries,
    run_as: Option<RunAs>,
    started_here: bool,
}

impl EmbeddedPostgres {
    /// Finds initdb/pg_ctl/postgres: the first PATH directory holding all three,
    /// else the newest `/usr/lib/postgresql/<version>/bin` (Debian/Ubuntu keep
    /// the server programs off PATH).
    pub fn locate_binaries() -> Result<PgBinaries, EmbeddedPgError> {
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                if let Some(bins) = PgBinaries::in_dir(&dir) {
                    return Ok(bins);
                }
            }
        }
        let mut versioned: Vec<(Vec<u64>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                // "16" or "9.6": compare numerically so 16 beats 9.6.
                let version = name
                    .split('.')
                    .map(|part| part.parse::<u64>().ok())
                    .collect::<Option<Vec<_>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versioned.sort();
        versioned
            .iter()
            .rev()
            .find_map(|(_, dir)| PgBinaries::in_dir(dir))
            .ok_or(EmbeddedPgError::BinariesNotFound)
    }

    /// Where the cluster (PGDATA) for `data_dir` lives.
    pub fn cluster_dir_for(data_dir: &Path) -> PathBuf {
        data_dir.join("pg").join("data")
    }

    /// Initialises `{data_dir}/pg` if needed, starts the server unless it is
    /// already running (then reuses it without owning it), waits until it
    /// accepts connections and creates the `kiln` database if missing.
    pub async fn start(data_dir: &Path) -> Result<Self, EmbeddedPgError> {
        let data_dir = std::path::absolute(data_dir).map_err(|source| EmbeddedPgError::Io {
            action: "resolve the data directory",
            path: data_dir.to_path_buf(),
            source,
        })?;
        let pg_root = data_dir.join("pg");
        let socket_dir = pg_root.join("sock");
        check_socket_path(&socket_dir)?;

        let bins = Self::locate_binaries()?;
        let run_as = if is_root() {
            Some(postgres_system_user()?)
        } else {
            None
        };

        let mut handle = EmbeddedPostgres {
            pgdata: Self::cluster_dir_for(&data_dir),
            log_file: pg_root.join("log").join("postgres.log"),
            socket_dir,
            data_dir,
            bins,
            run_as,
            started_here: false,
        };

        create_dir_all(&handle.data_dir)?;
        let _lock = FileLock::acquire(&handle.data_dir.join("pg.lock")).await?;
        handle.prepare_dirs().await?;

        if !handle.is_initialised() {
            handle.initdb().await?;
        }
        // Rewritten on every start so that a moved data directory gets the
        // right socket path.
        handle.write_config()?;

        if handle.is_running().await? {
            tracing::info!(pgdata = %handle.pgdata.display(), "reusing running PostgreSQL");
        } else {
            handle.pg_ctl_start().await?;
            handle.started_here = true;
        }

        let ready = async {
            handle.wait_ready().await?;
            handle.ensure_kiln_database().await
        };
        if let Err(err) = ready.await {
            // Do not leave a half-working server behind that nobody owns.
            if handle.started_here {
                let _ = handle.pg_ctl_stop().await;
            }
            return Err(err);
        }
        Ok(handle)
    }

    /// `postgres://kiln@localhost/kiln?host=<abs socket dir>`, usable by sqlx.
    pub fn database_url(&self) -> String {
        self.url_for(KILN_DB)
    }

    /// URL of the `postgres` maintenance database on the same socket, for
    /// creating and dropping tenant databases.
    pub fn admin_url(&self) -> String {
        self.url_for("postgres")
    }

    /// Whether this handle started the server (and so stops it in `stop`).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// The cluster directory (PGDATA).
    pub fn cluster_dir(&self) -> &Path {
        &self.pgdata
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Stops the server (`pg_ctl stop -m fast`) if this handle started it;
    /// otherwise leaves it running for the process that owns it.
    pub async fn stop(self) -> Result<(), EmbeddedPgError> {
        if !self.started_here {
            return Ok(());
        }
        // Take the lock so that we never stop the server in the middle of
        // another process's start (which would then fail its readiness wait).
        let _lock = FileLock::acquire(&self.data_dir.join("pg.lock")).await?;
        self.pg_ctl_stop().await
    }

    fn url_for(&self, database: &str) -> String {
        let port = if SOCKET_PORT == 5432 {
            String::new()
        } else {
            format!(":{SOCKET_PORT}")
        };
        // sslmode=disable: TLS does not exist on unix sockets, so skip the
        // SSLRequest round trip.
        format!(
            "postgres://{SUPERUSER}@localhost{port}/{database}?host={}&sslmode=disable",
            percent_encode(&self.socket_dir.to_string_lossy())
        )
    }

    fn is_initialised(&self) -> bool {
        self.pgdata.join("PG_VERSION").is_file()
    }

    /// Creates `pg/`, `pg/sock`, `pg/log` and, as root, hands them to the
    /// server's user and makes sure that user can reach them.
    async fn prepare_dirs(&self) -> Result<(), EmbeddedPgError> {
        let pg_root = self.pgdata.parent().expect("pgdata has a parent");
        let log_dir = self.log_file.parent().expect("log file has a parent");
        for dir in [pg_root, &self.socket_dir, log_dir] {
            create_dir_all(dir)?;
            // Only the server's user needs these; trust auth makes the socket
            // directory's permissions the access control.
            set_mode(dir, 0o700)?;
        }
        let Some(run_as) = &self.run_as else {
            return Ok(());
        };
        for path in [pg_root, &self.socket_dir, log_dir, &self.log_file] {
            if path.exists() {
                std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)).map_err(
                    |source| EmbeddedPgError::Io {
                        action: "hand to the postgres user",
                        path: path.to_path_buf(),
                        source,
                    },
                )?;
            }
        }
        // The data directory is ours to adjust: add search permission for
        // others so the server's user can reach pg/ (the listing and all
        // other entries stay private). Parents outside it are left alone.
        let mode = fs::metadata(&self.data_dir)
            .map_err(|source| EmbeddedPgError::Io {
                action: "inspect",
                path: self.data_dir.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            set_mode(&self.data_dir, (mode & 0o7777) | 0o001)?;
        }
        if !self.can_traverse(run_as, pg_root).await? {
            // Name the first directory on the way down that blocks the user.
            let mut culprit = pg_root.to_path_buf();
            let mut dirs: Vec<&Path> = pg_root.ancestors().collect();
            dirs.reverse();
            for dir in dirs {
                if !self.can_traverse(run_as, dir).await? {
                    culprit = dir.to_path_buf();
                    break;
                }
            }
            return Err(EmbeddedPgError::NotTraversable {
                user: run_as.name.clone(),
                dir: culprit,
                data_dir: self.data_dir.clone(),
            });
        }
        Ok(())
    }

    /// Asks the system rather than reading mode bits, so ACLs and
    /// supplementary groups are honoured.
    async fn can_traverse(&self, run_as: &RunAs, dir: &Path) -> Result<bool, EmbeddedPgError> {
        let mut cmd = Command::new(&run_as.runuser);
        cmd.args(["-u", &run_as.name, "--", "test", "-x"]).arg(dir);
        let (status, _, _) = run(cmd, "runuser ... test -x").await?;
        Ok(status.success())
    }

    async fn initdb(&self) -> Result<(), EmbeddedPgError> {
        tracing::info!(pgdata = %self.pgdata.display(), "initialising private PostgreSQL cluster");
        let mut cmd = self.pg_command(&self.bins.initdb);
        cmd.arg("-D")
            .arg(&self.pgdata)
            .args(["-A", "trust", "-U", SUPERUSER, "--encoding", "UTF8"])
            // The C locale exists everywhere and is compatible with UTF8, so
            // initdb does not depend on the host's locale settings.
            .arg("--no-locale");
        self.checked(cmd, "initdb").await.map(drop)
    }

    fn write_config(&self) -> Result<(), EmbeddedPgError> {
        let kiln_conf = self.pgdata.join("kiln.conf");
        let contents = format!(
            "# Written by kiln on every start; edits are overwritten.\n\
             listen_addresses = ''\n\
             port = {SOCKET_PORT}\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0700\n",
            conf_quote(&self.socket_dir.to_string_lossy())
        );
        write_file(&kiln_conf, &contents)?;
        if let Some(run_as) = &self.run_as {
            std::os::unix::fs::chown(&kiln_conf, Some(run_as.uid), Some(run_as.gid)).map_err(
                |source| EmbeddedPgError::Io {
                    action: "hand to the postgres user",
                    path: kiln_conf.clone(),
                    source,
                },
            )?;
        }

        // Include it from postgresql.conf (once) rather than passing -c options
        // to pg_ctl, whose -o string goes through a shell; a manual
        // `pg_ctl start -D` then also gets the socket-only settings.
        let main_conf = self.pgdata.join("postgresql.conf");
        let current = fs::read_to_string(&main_conf).map_err(|source| EmbeddedPgError::Io {
            action: "read",
            path: main_conf.clone(),
            source,
        })?;
        let include = "include = 'kiln.conf'";
        if !current.lines().any(|line| line.trim() == include) {
            let mut updated = current;
            if !updated.ends_with('\n') {
                updated.push('\n');
            }
            updated.push_str("\n# Kiln's socket-only settings.\n");
            updated.push_str(include);
            updated.push('\n');
            // Writing in place keeps the file's owner (the server's user).
            write_file(&main_conf, &updated)?;
        }
        Ok(())
    }

    /// `pg_ctl status`: exit 0 means a live postmaster owns PGDATA.
    async fn is_running(&self) -> Result<bool, EmbeddedPgError> {
        let mut cmd = self.pg_command(&self.bins.pg_ctl);
        cmd.arg("status").arg("-D").arg(&self.pgdata);
        let (status, _, stderr) = run(cmd, "pg_ctl status").await?;
        match status.code() {
            Some(0) => Ok(true),
            // 3: not running (possibly a stale postmaster.pid, which the
            // server itself will clean up on start).
            Some(3) => Ok(false),
            _ => Err(EmbeddedPgError::Command {
                command: format!("pg_ctl status -D {}", self.pgdata.display()),
                status,
                stderr,
            }),
        }
    }

    async fn pg_ctl_start(&self) -> Result<(), EmbeddedPgError> {
        tracing::info!(pgdata = %self.pgdata.display(), "starting private PostgreSQL");
        let mut cmd = self.pg_command(&self.bins.pg_ctl);
        cmd.arg("start")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", &READY_TIMEOUT.as_secs().to_string()])
            // Own process group: a Ctrl-C aimed at kiln in a terminal must not
            // also hit the server (SIGINT is a fast shutdown for postgres);
            // the owner shuts it down in order through `stop`.
            .process_group(0);
        match self.checked(cmd, "pg_ctl start").await {
            Ok(_) => Ok(()),
            Err(err) => Err(EmbeddedPgError::StartFailed {
                pgdata: self.pgdata.clone(),
                detail: err.to_string(),
                log_excerpt: self.log_excerpt(),
            }),
        }
    }

    async fn pg_ctl_stop(&self) -> Result<(), EmbeddedPgError> {
        tracing::info!(pgdata = %self.pgdata.display(), "stopping private PostgreSQL");
        let mut cmd = self.pg_command(&self.bins.pg_ctl);
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w"]);
        self.checked(cmd, "pg_ctl stop").await.map(drop)
    }

    /// Polls until a real connection succeeds: pg_ctl -w only watches
    /// postmaster.pid, and a reused server may still be recovering.
    async fn wait_ready(&self) -> Result<(), EmbeddedPgError> {
        let started = Instant::now();
        let url = self.admin_url();
        loop {
            let last_error = match PgConnection::connect(&url).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(err) => err.to_string(),
            };
            if started.elapsed() >= READY_TIMEOUT {
                return Err(EmbeddedPgError::NotReady {
                    socket_dir: self.socket_dir.clone(),
                    waited_secs: READY_TIMEOUT.as_secs(),
                    last_error,
                    log_excerpt: self.log_excerpt(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn ensure_kiln_database(&self) -> Result<(), EmbeddedPgError> {
        let mut conn = PgConnection::connect(&self.admin_url())
            .await
            .map_err(|source| EmbeddedPgError::Sql {
                action: "connect to the postgres database",
                source,
            })?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(KILN_DB)
                .fetch_one(&mut conn)
                .await
                .map_err(|source| EmbeddedPgError::Sql {
                    action: "look up the kiln database",
                    source,
                })?;
        if !exists {
            // CREATE DATABASE takes no bind parameters; the literal must match KILN_DB.
            match sqlx::query("CREATE DATABASE kiln").execute(&mut conn).await {
                Ok(_) => {}
                // Someone else (outside our lock, e.g. an operator) got there first.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
                Err(source) => {
                    return Err(EmbeddedPgError::Sql {
                        action: "create the kiln database",
                        source,
                    });
                }
            }
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// A command for a PostgreSQL program, run as the server's user when we
    /// are root (initdb, pg_ctl and postgres all refuse to run as root).
    fn pg_command(&self, program: &Path) -> Command {
        let mut cmd = match &self.run_as {
            Some(run_as) => {
                let mut cmd = Command::new(&run_as.runuser);
                cmd.args(["-u", &run_as.name, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        // Our working directory (e.g. /root) may be unreadable for the
        // server's user; initdb and postgres complain about that.
        cmd.current_dir("/");
        cmd
    }

    /// Runs a command and turns a non-zero exit into an error with its output.
    async fn checked(&self, cmd: Command, what: &str) -> Result<String, EmbeddedPgError> {
        let (status, stdout, stderr) = run(cmd, what).await?;
        if status.success() {
            Ok(stdout)
        } else {
            let mut output = stderr.trim().to_string();
            if output.is_empty() {
                output = stdout.trim().to_string();
            }
            Err(EmbeddedPgError::Command {
                command: format!("{what} -D {}", self.pgdata.display()),
                status,
                stderr: output,
            })
        }
    }

    fn log_excerpt(&self) -> String {
        let path = self.log_file.display();
        match fs::read_to_string(&self.log_file) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
                format!("last lines of {path}:\n{tail}")
            }
            Err(err) => format!("(could not read {path}: {err})"),
        }
    }
}

/// Runs a command to completion, capturing stdout and stderr.
async fn run(
    mut cmd: Command,
    what: &str,
) -> Result<(ExitStatus, String, String), EmbeddedPgError> {
    // stdin closed so nothing (e.g. a password prompt) can block on it.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = cmd
        .output()
        .await
        .map_err(|source| EmbeddedPgError::Spawn {
            program: what.to_string(),
            source,
        })?;
    Ok((
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

fn check_socket_path(socket_dir: &Path) -> Result<(), EmbeddedPgError> {
    let path = socket_dir.join(format!(".s.PGSQL.{SOCKET_PORT}"));
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(EmbeddedPgError::SocketPathTooLong {
            path,
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks up the `postgres` system user and `runuser`, needed when running as root.
fn postgres_system_user() -> Result<RunAs, EmbeddedPgError> {
    let (uid, gid) = lookup_user(SYSTEM_PG_USER).ok_or(EmbeddedPgError::RootWithoutPostgresUser)?;
    let runuser = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join("runuser"))
        .find(|p| is_executable(p))
        .ok_or(EmbeddedPgError::RunuserNotFound)?;
    Ok(RunAs {
        name: SYSTEM_PG_USER.to_string(),
        uid,
        gid,
        runuser,
    })
}

/// (uid, gid) of a user, via the reentrant getpwnam_r.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: passwd is plain old data, and all-zero is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and
        // buf.len() is the real buffer size; the strings pwd points to live in
        // buf, but we only copy out the integer ids.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some((pwd.pw_uid, pwd.pw_gid));
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn create_dir_all(dir: &Path) -> Result<(), EmbeddedPgError> {
    fs::create_dir_all(dir).map_err(|source| EmbeddedPgError::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), EmbeddedPgError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        EmbeddedPgError::Io {
            action: "set permissions of",
            path: path.to_path_buf(),
            source,
        }
    })
}

fn write_file(path: &Path, contents: &str) -> Result<(), EmbeddedPgError> {
    fs::write(path, contents).map_err(|source| EmbeddedPgError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Quotes a string for postgresql.conf.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Percent-encodes everything but unreserved characters and `/`, so any
/// socket path survives as a URL query value.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// An exclusive `flock` on `{data_dir}/pg.lock`, released on drop (and by the
/// kernel if the process dies, so it can never go stale). It serialises
/// initdb/start/stop between kiln processes; flock conflicts between separate
/// opens even within one process, so concurrent tasks are serialised too.
struct FileLock {
    _file: File,
}

impl FileLock {
    async fn acquire(path: &Path) -> Result<Self, EmbeddedPgError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| EmbeddedPgError::Io {
                action: "open lock file",
                path: path.to_path_buf(),
                source,
            })?;
        let started = Instant::now();
        loop {
            // Non-blocking attempts so the async runtime is never blocked and
            // we can give up with a useful message.
            // SAFETY: the fd is valid while `file` lives.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
                _ => {
                    return Err(EmbeddedPgError::Io {
                        action: "lock",
                        path: path.to_path_buf(),
                        source: err,
                    });
                }
            }
            if started.elapsed() >= LOCK_TIMEOUT {
                return Err(EmbeddedPgError::LockTimeout {
                    path: path.to_path_buf(),
                    waited: LOCK_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
