//! What can go wrong with the private cluster; every message says what
//! failed and what to do.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::SYSTEM_PG_USER;

/// Things that can go wrong with the private cluster.
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

    #[error(
        "PostgreSQL in {} refuses the superuser password in {}; stop the server if it runs \
         (pg_ctl stop -D {}), delete that file and start kiln again: it then sets a new password",
        pgdata.display(), password_file.display(), pgdata.display()
    )]
    SuperuserPasswordRefused {
        pgdata: PathBuf,
        password_file: PathBuf,
    },

    #[error("could not {action} in the private PostgreSQL cluster: {source}")]
    Sql {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
}
