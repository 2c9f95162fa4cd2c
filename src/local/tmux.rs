//! Runs the `tmux` client against one sandbox's tmux server: one socket, a
//! timeout on every call, and errors that say which tmux command failed and
//! what tmux printed. Clients never start a server (`-N`): only the sandbox
//! driver does, confined (see `confine`), so a server that has gone away is
//! an error here, never an unconfined server started by accident.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::confine::SandboxUser;
use crate::driver::DriverError;

/// A Unix socket path must fit `sockaddr_un.sun_path` (108 bytes on Linux,
/// 104 on macOS); keep a margin so the error comes from us, not from tmux.
pub(crate) const MAX_SOCKET_PATH: usize = 100;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server-wide settings every sandbox's tmux server starts with. A
/// private config (`-f`) means no `~/.tmux.conf` ever changes a sandbox.
pub(crate) const CONF: &str = "\
# Written by Kiln; rewritten at every start of this sandbox's server.
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
pub(crate) const INHERITED_ENV: &[&str] = &[
    "PATH", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
];

/// A client of one sandbox's tmux server.
#[derive(Debug, Clone)]
pub(crate) struct Tmux {
    binary: PathBuf,
    socket: PathBuf,
    /// The host identity the server runs under, when it is not Kiln's own:
    /// tmux admits only its owner, so clients switch to it.
    user: Option<SandboxUser>,
    timeout: Duration,
}

impl Tmux {
    pub(crate) fn new(binary: PathBuf, socket: PathBuf, user: Option<SandboxUser>) -> Self {
        Self {
            binary,
            socket,
            user,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// A blocking `tmux -N -S SOCKET` command under the right identity, for
    /// callers outside the async runtime (terminal clients, tests).
    pub(crate) fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("-N").arg("-S").arg(&self.socket);
        if let Some(u) = self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd
    }

    /// The program and leading arguments that run a tmux client on this
    /// server under the right identity, for a pseudo-terminal spawner that
    /// cannot switch users itself (`setpriv` does it, then runs tmux).
    pub(crate) fn client_argv(&self) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(u) = self.user {
            argv.extend(
                [
                    "setpriv".to_string(),
                    format!("--reuid={}", u.uid),
                    format!("--regid={}", u.gid),
                    "--clear-groups".to_string(),
                    "--".to_string(),
                ]
                .map(Into::into),
            );
        }
        argv.push(self.binary.clone().into_os_string());
        argv.extend([
            "-N".into(),
            "-S".into(),
            self.socket.clone().into_os_string(),
        ]);
        argv
    }

    /// Runs one tmux command line (which may hold several commands joined by
    /// [`SEPARATOR`]) and returns its stdout.
    pub(crate) async fn run(&self, args: &[String]) -> Result<String, TmuxError> {
        let what = describe(args);
        let mut cmd = Command::new(&self.binary);
        if let Some(u) = self.user {
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd.arg("-N")
            .arg("-S")
            .arg(&self.socket)
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

    /// Runs the tmux commands in `path` (a config file). Environment values
    /// travel this way, never in argv, where `ps` would show them to every
    /// local user.
    pub(crate) async fn source_file(&self, path: &Path) -> Result<String, TmuxError> {
        let args = vec!["source-file".into(), escape_arg(&path.to_string_lossy())];
        self.run(&args).await
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
