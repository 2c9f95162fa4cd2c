//! Who may connect to the private cluster: every role authenticates with
//! SCRAM-SHA-256, on every socket.
//!
//! PostgreSQL's `local` lines in pg_hba.conf apply to all of its unix
//! sockets alike, and sandboxes can reach the tenant socket, so the
//! superuser needs a password too. It is generated at first start and kept
//! in `pg/superuser.password` (mode 0600, owned by the user Kiln runs as;
//! as root, the server's own user cannot read it). Only its SCRAM verifier
//! ever reaches the server.
//!
//! A cluster from an older Kiln (pg_hba `trust`) is converted on start: the
//! superuser password is set first (through single-user mode when the
//! server is down, so nothing listens while it is unprotected; through a
//! connection when it is already running), then the new pg_hba.conf is
//! written and, for a running server, reloaded.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, SqlSafeStr};
use tokio::io::AsyncWriteExt;

use super::{EmbeddedPgError, EmbeddedPostgres, SUPERUSER};
use crate::model::naming::random_password;
use crate::model::scram;
use crate::model::secret::Secret;

/// The whole pg_hba.conf. No replication lines: nothing replicates from
/// this cluster, so replication connections are refused.
pub(super) const PG_HBA: &str = "\
# Written by kiln on every start; edits are overwritten.
# Every role authenticates, on every socket: sandboxes can reach the tenant
# socket, and `local` lines cannot tell the sockets apart.
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       all            scram-sha-256
host    all       all   all      scram-sha-256
";

/// The superuser password, and whether it was generated just now (so the
/// cluster does not know it yet).
pub(super) struct SuperuserPassword {
    pub(super) password: Secret<String>,
    pub(super) fresh: bool,
}

/// Reads the password file, or creates it (mode 0600 from the first byte)
/// with a new random password. A file left empty by a crash is replaced.
pub(super) fn load_or_create_password(path: &Path) -> Result<SuperuserPassword, EmbeddedPgError> {
    let io = |action: &'static str| {
        move |source: std::io::Error| EmbeddedPgError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    match fs::File::open(path) {
        Ok(mut file) => {
            let mode = file.metadata().map_err(io("inspect"))?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the superuser password file was readable by others; making it 0600");
                file.set_permissions(fs::Permissions::from_mode(0o600))
                    .map_err(io("set permissions of"))?;
            }
            let mut text = String::new();
            file.read_to_string(&mut text).map_err(io("read"))?;
            let password = text.trim();
            if valid_password(password) {
                return Ok(SuperuserPassword {
                    password: password.to_string().into(),
                    fresh: false,
                });
            }
            tracing::warn!(path = %path.display(), "the superuser password file is empty or damaged; generating a new password");
            fs::remove_file(path).map_err(io("remove"))?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("read")(e)),
    }
    let password = random_password();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create"))?;
    file.write_all(format!("{password}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("write"))?;
    Ok(SuperuserPassword {
        password: password.into(),
        fresh: true,
    })
}

/// Only what [`random_password`] makes: it goes into URLs and a SQL literal.
fn valid_password(p: &str) -> bool {
    (16..=256).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `ALTER ROLE kiln PASSWORD '<verifier>'`: a verifier has no quote in it
/// (base64, digits, `$`, `:`), so it is a safe literal.
fn set_password_sql(password: &str) -> String {
    format!(
        "ALTER ROLE {SUPERUSER} PASSWORD '{}'",
        scram::new_verifier(password)
    )
}

impl EmbeddedPostgres {
    pub(super) fn hba_is_current(&self) -> Result<bool, EmbeddedPgError> {
        let path = self.pgdata.join("pg_hba.conf");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text == PG_HBA),
            Err(source) => Err(EmbeddedPgError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    pub(super) fn write_hba(&self) -> Result<(), EmbeddedPgError> {
        // Writing in place keeps the file's owner (the server's user) and mode.
        let path = self.pgdata.join("pg_hba.conf");
        fs::write(&path, PG_HBA).map_err(|source| EmbeddedPgError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// Sets the superuser password while the server is down, through
    /// `postgres --single` on stdin: no socket is open meanwhile.
    pub(super) async fn set_password_offline(&self) -> Result<(), EmbeddedPgError> {
        tracing::info!(pgdata = %self.pgdata.display(), "setting the superuser password of the private PostgreSQL");
        let mut cmd = self.pg_command(&self.bins.postgres);
        cmd.arg("--single")
            .arg("-D")
            .arg(&self.pgdata)
            // A failed statement ends the session with a non-zero exit.
            .args(["-c", "exit_on_error=on", "postgres"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = "postgres --single";
        let spawn_err = |source| EmbeddedPgError::Spawn {
            program: what.to_string(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let sql = format!(
            "{};\n",
            set_password_sql(self.superuser_password.expose_str())
        );
        let written = stdin.write_all(sql.as_bytes()).await;
        drop(stdin);
        let output = child.wait_with_output().await.map_err(spawn_err)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if written.is_err() || !output.status.success() || stdout.contains("ERROR") {
            return Err(EmbeddedPgError::Command {
                command: format!("{what} -D {}", self.pgdata.display()),
                status: output.status,
                stderr: format!("{}\n{}", stderr.trim(), stdout.trim()),
            });
        }
        Ok(())
    }

    /// Converts a running server that still trusts everyone: sets the
    /// superuser password unless it already verifies, then requires
    /// passwords and reloads. Connecting works either way (trust ignores
    /// the password in the URL).
    pub(super) async fn secure_running(&self) -> Result<(), EmbeddedPgError> {
        tracing::info!(pgdata = %self.pgdata.display(), "requiring passwords on the running private PostgreSQL");
        let sql_err = |action| move |source| EmbeddedPgError::Sql { action, source };
        let mut conn = PgConnection::connect(&self.admin_url())
            .await
            .map_err(sql_err("connect to the postgres database"))?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = current_user")
                .fetch_one(&mut conn)
                .await
                .map_err(sql_err("read the superuser's password verifier"))?;
        let password = self.superuser_password.expose_str();
        if !stored.is_some_and(|s| scram::verifies(&s, password)) {
            let sql = AssertSqlSafe(set_password_sql(password)).into_sql_str();
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .map_err(sql_err("set the superuser password"))?;
        }
        self.write_hba()?;
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&mut conn)
            .await
            .map_err(sql_err("reload the configuration"))?;
        let _ = conn.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_line_requires_scram() {
        let lines: Vec<&str> = PG_HBA
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 2);
        for line in lines {
            assert!(line.trim_end().ends_with("scram-sha-256"), "{line}");
        }
        assert!(!PG_HBA.contains("trust") && !PG_HBA.contains("peer"));
    }

    #[test]
    fn the_password_file_is_created_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("kiln-pw-{}", random_password()));
        fs::create_dir(&dir).unwrap();
        let path = dir.join("superuser.password");

        let first = load_or_create_password(&path).unwrap();
        assert!(first.fresh);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create_password(&path).unwrap();
        assert!(!again.fresh);
        assert_eq!(again.password, first.password);

        // Damaged: replaced by a new one. Too open: tightened.
        fs::write(&path, "").unwrap();
        let replaced = load_or_create_password(&path).unwrap();
        assert!(replaced.fresh);
        assert_ne!(replaced.password, first.password);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!load_or_create_password(&path).unwrap().fresh);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_superuser_ddl_carries_a_verifier_not_the_password() {
        let sql = set_password_sql("Plaintext1234567");
        assert!(!sql.contains("Plaintext1234567"), "{sql}");
        assert!(sql.starts_with("ALTER ROLE kiln PASSWORD 'SCRAM-SHA-256$4096:"));
    }
}
