//! Runs the `tmux` client against Kiln's private server: one socket, one
//! config file, a timeout on every call, and errors that say which tmux
//! command failed and what tmux printed.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::driver::DriverError;

/// A Unix socket path must fit `sockaddr_un.sun_path` (108 bytes on Linux,
/// 104 on macOS); keep a margin so the error comes from us, not from tmux.
const MAX_SOCKET_PATH: usize = 100;

/// tmux sends a client's whole argv to the server in one message of at most
/// 16 KiB; stay well below it when batching commands.
const MAX_BATCH_BYTES: usize = 12 * 1024;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server-wide settings every Kiln tmux server starts with. A private
/// config (`-f`) means the user's `~/.tmux.conf` never changes a sandbox.
const CONF: &str = "\
# Written by Kiln; rewritten at every start.
set -g status off
set -g history-limit 50000
set -g default-terminal tmux-256color
set -as terminal-features ',*:RGB'
set -s escape-time 0
# Several viewers: the window follows the one who typed or resized last.
# (Read-only viewers attach with -r, which implies ignore-size: they never
# move it.)
set -g window-size latest
# A program that exits leaves its pane (and session) behind, dead, so the
# dashboard can show it as exited and restart it (respawn-pane). Sessions
# also set it themselves, for a server started with an older config.
set -g remain-on-exit on
";

/// The parts of Kiln's own environment a tmux server may inherit. Everything
/// else (Kiln's database URL, its secret key) stays out of the sandboxes:
/// the server's global environment is copied into every session.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
];

/// The private tmux server Kiln's sandboxes live on.
#[derive(Debug, Clone)]
pub(crate) struct Tmux {
    binary: PathBuf,
    socket: PathBuf,
    conf: PathBuf,
    timeout: Duration,
}

impl Tmux {
    /// Prepares `{tmux_dir}/kiln.sock` and writes `{tmux_dir}/tmux.conf`.
    /// The directory is private (0700) because whoever can reach the socket
    /// can type into every sandbox.
    pub(crate) fn prepare(tmux_dir: &Path) -> Result<Self, DriverError> {
        let socket = tmux_dir.join("kiln.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(DriverError::permanent(format!(
                "the tmux socket path {} is {} bytes, longer than the {MAX_SOCKET_PATH} a Unix \
                 socket allows: choose a shorter data directory",
                socket.display(),
                socket.as_os_str().len()
            )));
        }
        create_private_dir(tmux_dir)?;
        let conf = tmux_dir.join("tmux.conf");
        std::fs::write(&conf, CONF)
            .map_err(|e| DriverError::permanent(format!("cannot write {}: {e}", conf.display())))?;
        Ok(Self {
            binary: PathBuf::from("tmux"),
            socket,
            conf,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    pub(crate) fn set_binary(&mut self, binary: PathBuf) {
        self.binary = binary;
    }

    pub(crate) fn binary(&self) -> &Path {
        &self.binary
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    pub(crate) fn conf(&self) -> &Path {
        &self.conf
    }

    /// Runs one tmux command line (which may hold several commands joined by
    /// [`SEPARATOR`]) and returns its stdout.
    pub(crate) async fn run(&self, args: &[String]) -> Result<String, TmuxError> {
        let what = describe(args);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.conf)
            .args(args)
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|k| Some((k, std::env::var_os(k)?))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out client must not linger; the server is unaffected.
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                TmuxError::NotInstalled {
                    binary: self.binary.clone(),
                }
            } else {
                TmuxError::Spawn {
                    binary: self.binary.clone(),
                    source,
                }
            }
        })?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => {
                return Err(TmuxError::TimedOut {
                    what,
                    after: self.timeout,
                });
            }
            Ok(Err(source)) => {
                return Err(TmuxError::Spawn {
                    binary: self.binary.clone(),
                    source,
                });
            }
            Ok(Ok(out)) => out,
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(TmuxError::Failed {
                what,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Runs many commands in as few tmux calls as the message size allows.
    /// Each batch is applied by the server in order; a failing command stops
    /// its batch and the remaining batches.
    pub(crate) async fn run_batched(&self, commands: Vec<Vec<String>>) -> Result<(), TmuxError> {
        for batch in batches(commands, MAX_BATCH_BYTES) {
            self.run(&batch).await?;
        }
        Ok(())
    }

    /// Names of all sessions on the server; no server means no sessions.
    pub(crate) async fn list_sessions_with(&self, format: &str) -> Result<String, TmuxError> {
        let args = vec!["list-sessions".into(), "-F".into(), format.to_string()];
        match self.run(&args).await {
            Ok(out) => Ok(out),
            Err(e) if e.is_no_server() || matches!(e, TmuxError::NotInstalled { .. }) => {
                Ok(String::new())
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn session_names(&self) -> Result<Vec<String>, TmuxError> {
        let args = vec![
            "list-sessions".into(),
            "-F".into(),
            "#{session_name}".into(),
        ];
        match self.run(&args).await {
            Ok(out) => Ok(out.lines().map(str::to_owned).collect()),
            // Without the tmux binary no session can exist either, so
            // observing (and with it stop and delete) still works.
            Err(e) if e.is_no_server() || matches!(e, TmuxError::NotInstalled { .. }) => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }
}

/// Separates commands on one tmux command line.
pub(crate) const SEPARATOR: &str = ";";

/// Makes an untrusted string safe as one tmux argument. tmux treats an
/// argument ending in `;` as "this argument, then a command separator", and
/// `\;` at the end as a literal `;`; so a trailing `;` gets a backslash in
/// front of it, which tmux takes away again. Nothing else in argv is parsed.
pub(crate) fn escape_arg(s: &str) -> String {
    match s.strip_suffix(';') {
        Some(head) => format!("{head}\\;"),
        None => s.to_owned(),
    }
}

/// The exact-match target for a session: without `=`, tmux matches a prefix
/// (`-t ab` would find `ab-1`).
pub(crate) fn session_target(name: &str) -> String {
    format!("={name}")
}

/// The exact-match target for commands that take a pane (`set-option`).
pub(crate) fn session_pane_target(name: &str) -> String {
    format!("={name}:")
}

/// Groups commands into command lines of at most `limit` argument bytes.
/// A single command larger than the limit still gets a line of its own, and
/// tmux's own "command too long" error then names the problem.
fn batches(commands: Vec<Vec<String>>, limit: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for command in commands {
        let len: usize = command.iter().map(|a| a.len() + 1).sum();
        match out.last_mut() {
            Some(line) if size + len + 2 <= limit => {
                line.push(SEPARATOR.into());
                line.extend(command);
                size += len + 2;
            }
            _ => {
                out.push(command);
                size = len;
            }
        }
    }
    out
}

/// Names the tmux subcommands of a command line for error messages. Only the
/// subcommands: arguments may hold environment values, which are secrets.
fn describe(args: &[String]) -> String {
    let mut names = Vec::new();
    let mut next_is_command = true;
    for a in args {
        if next_is_command && !names.contains(&a.as_str()) {
            names.push(a.as_str());
        }
        next_is_command = a == SEPARATOR;
    }
    format!("tmux {}", names.join(" + "))
}

fn create_private_dir(dir: &Path) -> Result<(), DriverError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| DriverError::permanent(format!("cannot create {}: {e}", dir.display())))
}

/// Why a tmux call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TmuxError {
    #[error(
        "tmux is not installed on this host ({} not found): install the tmux package \
         (e.g. apt install tmux)",
        binary.display()
    )]
    NotInstalled { binary: PathBuf },
    #[error("cannot run {}: {source}", binary.display())]
    Spawn { binary: PathBuf, source: io::Error },
    #[error("{what} did not answer within {after:?}")]
    TimedOut { what: String, after: Duration },
    #[error("{what} failed: {stderr}")]
    Failed { what: String, stderr: String },
}

impl TmuxError {
    fn stderr(&self) -> &str {
        match self {
            Self::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }

    /// The server is not running (no socket, or a stale one).
    pub(crate) fn is_no_server(&self) -> bool {
        let s = self.stderr();
        s.contains("no server running") || s.contains("error connecting to")
    }

    /// The server went away while answering: killing its last session ends
    /// it (tmux's `exit-empty`), sometimes before the reply is sent.
    pub(crate) fn is_server_gone(&self) -> bool {
        self.stderr().contains("server exited unexpectedly")
    }

    /// The session named in the command does not exist.
    pub(crate) fn is_missing_session(&self) -> bool {
        let s = self.stderr();
        self.is_no_server() || s.contains("can't find session") || s.contains("no such session")
    }

    /// `respawn-pane` without `-k` on a pane whose program still runs.
    pub(crate) fn is_pane_still_active(&self) -> bool {
        self.stderr().contains("still active")
    }

    pub(crate) fn is_duplicate_session(&self) -> bool {
        self.stderr().contains("duplicate session")
    }

    /// Classifies the failure for the reconcile loop; `context` says what
    /// was being done to what ("sandbox x").
    pub(crate) fn into_driver_error(self, context: &str) -> DriverError {
        let permanent = match &self {
            Self::NotInstalled { .. } => true,
            Self::Spawn { source, .. } => source.kind() == io::ErrorKind::PermissionDenied,
            Self::TimedOut { .. } => false,
            // Too large an environment will not shrink by retrying.
            Self::Failed { stderr, .. } => stderr.contains("command too long"),
        };
        let msg = match &self {
            Self::Failed { stderr, .. } if stderr.contains("command too long") => format!(
                "{context}: {self} (tmux takes about 16 KiB per command: the \
                 environment is too large)"
            ),
            _ => format!("{context}: {self}"),
        };
        if permanent {
            DriverError::Permanent(msg)
        } else {
            DriverError::Transient(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn trailing_semicolons_are_escaped_and_nothing_else_is() {
        assert_eq!(escape_arg("a;"), "a\\;");
        assert_eq!(escape_arg("a\\;"), "a\\\\;");
        assert_eq!(escape_arg(";"), "\\;");
        assert_eq!(escape_arg("a;b"), "a;b");
        assert_eq!(escape_arg("$(x) 'y' #{z}"), "$(x) 'y' #{z}");
    }

    #[test]
    fn commands_are_batched_under_the_limit_in_order() {
        let cmds = vec![
            strings(&["a", "1"]),
            strings(&["b", "2"]),
            strings(&["c", "3"]),
        ];
        assert_eq!(
            batches(cmds.clone(), 1000),
            vec![strings(&["a", "1", ";", "b", "2", ";", "c", "3"])]
        );
        assert_eq!(
            batches(cmds, 10),
            vec![strings(&["a", "1", ";", "b", "2"]), strings(&["c", "3"])]
        );
    }

    #[test]
    fn descriptions_name_commands_but_not_values() {
        let args = strings(&[
            "set-environment",
            "-t",
            "=x",
            "K",
            "secret",
            ";",
            "set-option",
        ]);
        assert_eq!(describe(&args), "tmux set-environment + set-option");
    }
}
