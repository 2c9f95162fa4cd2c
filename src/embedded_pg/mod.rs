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
//! pg/sock/                Kiln's unix socket directory (mode 0700); no TCP listener
//! pg/tenant/              the tenant socket directory (mode 0711), the only part
//!                         of the cluster a confined sandbox gets (read-only)
//! pg/superuser.password   the `kiln` role's password (mode 0600, Kiln's user)
//! pg/log/postgres.log     server log (pg_ctl -l)
//! ```
//!
//! Every role authenticates with SCRAM-SHA-256 on both sockets (see
//! [`auth`]): the socket directories' modes are a second line, not the
//! access control.
//!
//! PGDATA is a subdirectory rather than `pg/` itself because initdb insists on
//! an empty (or missing) directory, and the socket and log directories must
//! exist before the server starts.
//!
//! Ownership: a handle "owns" the server only if it started it. A second Kiln
//! process (e.g. `kiln user add` while `kiln serve` runs) reuses the running
//! server and leaves it alone on `stop`. Dropping a handle without calling
//! `stop` leaves the server running; the next `start` reuses it.

mod auth;
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

use crate::model::secret::Secret;

/// The port number only names the socket file (`.s.PGSQL.<port>`); the server
/// has no TCP listener, so clashing with a system PostgreSQL on 5432 is harmless.
pub const SOCKET_PORT: u16 = 5432;

/// The tenant socket directory's name under `{data_dir}/pg`.
pub const TENANT_SOCKET_DIR_NAME: &str = "tenant";

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
    tenant_socket_dir: PathBuf,
    password_file: PathBuf,
    superuser_password: Secret<String>,
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

    /// The tenant socket directory for `data_dir` (give it absolute, as
    /// [`start`](Self::start) resolves it): `{data_dir}/pg/tenant`. The server
    /// listens there as well as on Kiln's own socket; database URLs handed to
    /// sandboxes point there, and a confined sandbox needs exactly this
    /// directory bound (read-only suffices to connect to a socket).
    pub fn tenant_socket_dir_for(data_dir: &Path) -> PathBuf {
        data_dir.join("pg").join(TENANT_SOCKET_DIR_NAME)
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
        let tenant_socket_dir = Self::tenant_socket_dir_for(&data_dir);
        check_socket_path(&socket_dir)?;
        check_socket_path(&tenant_socket_dir)?;

        let bins = Self::locate_binaries()?;
        let run_as = if is_root() {
            Some(postgres_system_user()?)
        } else {
            None
        };

        let mut handle = EmbeddedPostgres {
            pgdata: Self::cluster_dir_for(&data_dir),
            log_file: pg_root.join("log").join("postgres.log"),
            password_file: pg_root.join("superuser.password"),
            superuser_password: Secret::default(),
            socket_dir,
            tenant_socket_dir,
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
        let password = auth::load_or_create_password(&handle.password_file)?;
        handle.superuser_password = password.password;
        // Rewritten on every start so that a moved data directory gets the
        // right socket paths.
        handle.write_config()?;
        let hba_current = handle.hba_is_current()?;

        let running = handle.is_running().await?;
        if running {
            tracing::info!(pgdata = %handle.pgdata.display(), "reusing running PostgreSQL");
        } else {
            if !hba_current || password.fresh {
                handle.set_password_offline().await?;
                handle.write_hba()?;
            }
            handle.pg_ctl_start().await?;
            handle.started_here = true;
        }

        let ready = async {
            handle.wait_ready().await?;
            if running && !hba_current {
                // Started by an older Kiln that trusted every local connection.
                handle.secure_running().await?;
            }
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

    /// `postgres://kiln:<password>@localhost/kiln?host=<abs socket dir>`,
    /// usable by sqlx. It holds the superuser password: never log it.
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

    /// The directory holding Kiln's own unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The directory holding the socket sandboxes use; see
    /// [`tenant_socket_dir_for`](Self::tenant_socket_dir_for).
    pub fn tenant_socket_dir(&self) -> &Path {
        &self.tenant_socket_dir
    }

    /// The file holding the superuser password (mode 0600).
    pub fn superuser_password_file(&self) -> &Path {
        &self.password_file
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
        // The password is letters and digits only (auth.rs), so it needs no
        // escaping in the URL.
        format!(
            "postgres://{SUPERUSER}:{}@localhost{port}/{database}?host={}&sslmode=disable",
            self.superuser_password.expose_str(),
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
