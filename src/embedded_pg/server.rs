//! Running the server's programs for [`EmbeddedPostgres`]: preparing its
//! directories, initdb, its configuration, pg_ctl start/status/stop, and
//! waiting until it accepts connections.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::process::Command;

use super::host::RunAs;
use super::{
    EmbeddedPgError, EmbeddedPostgres, KILN_DB, LOG_TAIL_LINES, READY_TIMEOUT, SOCKET_PORT,
    SUPERUSER,
};

impl EmbeddedPostgres {
    pub(super) fn is_initialised(&self) -> bool {
        self.pgdata.join("PG_VERSION").is_file()
    }

    /// Creates `pg/`, `pg/sock`, `pg/tenant`, `pg/log` and, as root, hands
    /// them to the server's user and makes sure that user can reach them.
    pub(super) async fn prepare_dirs(&self) -> Result<(), EmbeddedPgError> {
        let pg_root = self.pgdata.parent().expect("pgdata has a parent");
        let log_dir = self.log_file.parent().expect("log file has a parent");
        for dir in [&self.socket_dir, log_dir] {
            create_dir_all(dir)?;
            // Only the server's user (and Kiln) need these.
            set_mode(dir, 0o700)?;
        }
        // Confined sandboxes (another uid when Kiln is root) pass through it
        // to `tenant/`; they can list nothing, and every entry is private.
        create_dir_all(pg_root)?;
        set_mode(pg_root, 0o711)?;
        // Sandboxes get this one bound into their view, possibly under
        // another uid: they may enter it and connect to the socket (whose
        // name is known), not list it. Passwords are the access control.
        create_dir_all(&self.tenant_socket_dir)?;
        set_mode(&self.tenant_socket_dir, 0o711)?;
        let Some(run_as) = &self.run_as else {
            return Ok(());
        };
        for path in [
            pg_root,
            &self.socket_dir,
            &self.tenant_socket_dir,
            log_dir,
            &self.log_file,
        ] {
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
    pub(super) async fn can_traverse(
        &self,
        run_as: &RunAs,
        dir: &Path,
    ) -> Result<bool, EmbeddedPgError> {
        let mut cmd = Command::new(&run_as.runuser);
        cmd.args(["-u", &run_as.name, "--", "test", "-x"]).arg(dir);
        let (status, _, _) = run(cmd, "runuser ... test -x").await?;
        Ok(status.success())
    }

    pub(super) async fn initdb(&self) -> Result<(), EmbeddedPgError> {
        tracing::info!(pgdata = %self.pgdata.display(), "initialising private PostgreSQL cluster");
        let mut cmd = self.pg_command(&self.bins.initdb);
        cmd.arg("-D")
            .arg(&self.pgdata)
            // Trust only until the first start replaces pg_hba.conf, which
            // happens before the server ever listens (see auth.rs).
            .args(["-A", "trust", "-U", SUPERUSER, "--encoding", "UTF8"])
            // The C locale exists everywhere and is compatible with UTF8, so
            // initdb does not depend on the host's locale settings.
            .arg("--no-locale");
        self.checked(cmd, "initdb").await.map(drop)
    }

    pub(super) fn write_config(&self) -> Result<(), EmbeddedPgError> {
        let kiln_conf = self.pgdata.join("kiln.conf");
        let contents = format!(
            "# Written by kiln on every start; edits are overwritten.\n\
             listen_addresses = ''\n\
             port = {SOCKET_PORT}\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0777\n\
             password_encryption = 'scram-sha-256'\n",
            // Kiln's socket first: the lock file and postmaster.pid name it.
            conf_quote(&format!(
                "{}, {}",
                conf_list_item(&self.socket_dir.to_string_lossy()),
                conf_list_item(&self.tenant_socket_dir.to_string_lossy())
            ))
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
    pub(super) async fn is_running(&self) -> Result<bool, EmbeddedPgError> {
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

    pub(super) async fn pg_ctl_start(&self) -> Result<(), EmbeddedPgError> {
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

    pub(super) async fn pg_ctl_stop(&self) -> Result<(), EmbeddedPgError> {
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
    pub(super) async fn wait_ready(&self) -> Result<(), EmbeddedPgError> {
        let started = Instant::now();
        let url = self.admin_url();
        loop {
            let last_error = match PgConnection::connect(&url).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                // invalid_password: waiting will not change that.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("28P01") => {
                    return Err(EmbeddedPgError::SuperuserPasswordRefused {
                        pgdata: self.pgdata.clone(),
                        password_file: self.password_file.clone(),
                    });
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

    pub(super) async fn ensure_kiln_database(&self) -> Result<(), EmbeddedPgError> {
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
        // Every role may connect to a database by default; tenant roles have
        // no business in Kiln's own database or the maintenance ones.
        sqlx::raw_sql(
            "REVOKE CONNECT, TEMPORARY ON DATABASE kiln, postgres, template1 FROM PUBLIC",
        )
        .execute(&mut conn)
        .await
        .map_err(|source| EmbeddedPgError::Sql {
            action: "revoke public access to the kiln and maintenance databases",
            source,
        })?;
        // A server started by an older Kiln listens on Kiln's socket only
        // until it restarts; sandboxes are told to use the tenant socket.
        let dirs: String = sqlx::query_scalar("SHOW unix_socket_directories")
            .fetch_one(&mut conn)
            .await
            .map_err(|source| EmbeddedPgError::Sql {
                action: "read unix_socket_directories",
                source,
            })?;
        if !dirs.contains(&*self.tenant_socket_dir.to_string_lossy()) {
            tracing::warn!(
                pgdata = %self.pgdata.display(),
                tenant_socket_dir = %self.tenant_socket_dir.display(),
                "the running PostgreSQL does not listen on the tenant socket yet; sandboxes \
                 cannot reach their databases until it restarts (stop kiln and the server, \
                 then start kiln)"
            );
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// A command for a PostgreSQL program, run as the server's user when we
    /// are root (initdb, pg_ctl and postgres all refuse to run as root).
    pub(super) fn pg_command(&self, program: &Path) -> Command {
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
    pub(super) async fn checked(
        &self,
        cmd: Command,
        what: &str,
    ) -> Result<String, EmbeddedPgError> {
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

    pub(super) fn log_excerpt(&self) -> String {
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

pub(super) fn create_dir_all(dir: &Path) -> Result<(), EmbeddedPgError> {
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

/// One element of a comma-separated list setting: double-quoted (so a
/// comma or space in a path survives), `"` doubled.
fn conf_list_item(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// Quotes a string for postgresql.conf.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}
