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

mod error;
mod host;
mod lock;
mod server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use error::EmbeddedPgError;
pub use host::PgBinaries;
use host::{RunAs, is_root, postgres_system_user};
use lock::FileLock;
use server::create_dir_all;

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
        host::locate_binaries()
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

/// Everything but unreserved characters and `/`, so any socket path
/// survives as a URL query value.
const SOCKET_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, SOCKET_QUERY).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_keep_their_slashes_and_encode_the_rest() {
        assert_eq!(
            percent_encode("/var/lib/kiln-1/pg/sock"),
            "/var/lib/kiln-1/pg/sock"
        );
        assert_eq!(
            percent_encode("/tmp/a b/%?&=#é~_."),
            "/tmp/a%20b/%25%3F%26%3D%23%C3%A9~_."
        );
    }
}
