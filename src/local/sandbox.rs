//! Local sandboxes: a working directory `{data_dir}/sandboxes/{name}/` plus a
//! tmux session `{name}` on Kiln's private tmux server.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::tmux::{Tmux, TmuxError, escape_arg, session_pane_target, session_target};
use super::validate_resource_name;
use crate::driver::{DriverError, DriverResult, Observed, ResourceRef, SandboxDriver, SandboxSpec};

/// Set in every session so a program can tell which sandbox it runs in.
/// Kiln owns it: a project variable of the same name is ignored.
const SANDBOX_VAR: &str = "KILN_SANDBOX";

/// The session option holding the keys Kiln put in the session's
/// environment, so `sync_env` removes only those and never a variable that
/// something else set (tmux's own, or one a user set by hand).
const MANAGED_KEYS_OPTION: &str = "@kiln_env_keys";

/// The file a shell inside the sandbox can `source` to pick up the current
/// environment; tmux only hands a changed environment to new panes.
const ENV_FILE: &str = ".kiln-env";

/// Sandboxes on this host.
#[derive(Debug, Clone)]
pub struct LocalSandboxes {
    sandboxes_dir: PathBuf,
    tmux: Tmux,
    command: String,
}

impl LocalSandboxes {
    /// Prepares `data_dir` (made absolute) for sandboxes. `command` is what
    /// each session runs; by default `claude` if it is on PATH, else the
    /// user's login shell.
    pub fn new(data_dir: &Path, command: Option<String>) -> Result<Self, DriverError> {
        let data_dir = std::path::absolute(data_dir).map_err(|e| {
            DriverError::permanent(format!(
                "invalid data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let tmux = Tmux::prepare(&data_dir.join("tmux"))?;
        Ok(Self {
            sandboxes_dir: data_dir.join("sandboxes"),
            tmux,
            command: command.unwrap_or_else(default_command),
        })
    }

    /// Uses this tmux binary instead of the one on PATH.
    pub fn with_tmux_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.tmux.set_binary(binary.into());
        self
    }

    /// `tmux list-sessions -F format` (no server: no sessions).
    pub(crate) async fn list_sessions_with(&self, format: &str) -> DriverResult<String> {
        self.tmux
            .list_sessions_with(format)
            .await
            .map_err(|e| e.into_driver_error("list sessions"))
    }

    /// The tmux binary in use.
    pub fn tmux_binary(&self) -> &Path {
        self.tmux.binary()
    }

    /// The private tmux server's socket (`tmux -S` this to reach a session).
    pub fn socket_path(&self) -> &Path {
        self.tmux.socket()
    }

    /// The config file the tmux server starts with (`tmux -f`).
    pub fn conf_path(&self) -> &Path {
        self.tmux.conf()
    }

    /// The tmux session of a sandbox.
    pub fn session_name(r: &ResourceRef) -> String {
        r.resource_name.clone()
    }

    /// The sandbox's working directory.
    pub fn sandbox_dir(&self, r: &ResourceRef) -> PathBuf {
        self.sandboxes_dir.join(&r.resource_name)
    }

    /// What each new session runs.
    pub fn command(&self) -> &str {
        &self.command
    }

    async fn write_env_file(&self, spec: &SandboxSpec, env: &[(&str, &str)]) -> DriverResult<()> {
        let path = self.sandbox_dir(&spec.resource).join(ENV_FILE);
        write_private_file(&path, render_env_file(env).into_bytes())
            .await
            .map_err(|e| {
                DriverError::transient(format!(
                    "sandbox {}: cannot write {}: {e}",
                    spec.resource.resource_name,
                    path.display()
                ))
            })
    }

    /// The keys `sync_env` or `ensure` last put in the session's environment.
    async fn managed_keys(&self, name: &str) -> DriverResult<Vec<String>> {
        let args = vec![
            "show-options".into(),
            "-v".into(),
            "-t".into(),
            session_pane_target(name),
            MANAGED_KEYS_OPTION.into(),
        ];
        match self.tmux.run(&args).await {
            Ok(out) => Ok(out.split_whitespace().map(str::to_owned).collect()),
            Err(e) if e.is_missing_session() => Err(missing_session(name)),
            // Unset (a session Kiln did not create): Kiln manages nothing in it yet.
            Err(e) if format!("{e}").contains("invalid option") => Ok(Vec::new()),
            Err(e) => Err(e.into_driver_error(&format!("sandbox {name}"))),
        }
    }

    /// Starts the program of session `name` again if it has exited (its
    /// current pane is dead). Without `-k`, tmux itself refuses a pane whose
    /// program still runs, so this can never kill a live program, even one
    /// restarted by someone else a moment ago.
    pub(crate) async fn respawn_dead_pane(&self, name: &str) -> Result<(), TmuxError> {
        let args = vec![
            "respawn-pane".into(),
            "-t".into(),
            session_pane_target(name),
        ];
        self.tmux.run(&args).await.map(|_| ())
    }

    /// Makes tmux reap every child that has exited (see
    /// `driver::tmux_listing_awaits_reap`): `run-shell true` starts a child
    /// that exits at once. Best effort.
    pub(crate) async fn reap_exited(&self) {
        let args = vec!["run-shell".into(), "true".into()];
        let _ = self.tmux.run(&args).await;
    }

    /// `ensure` on an existing session: a dead default pane is respawned, a
    /// live one left alone.
    async fn respawn_if_dead(&self, name: &str) -> DriverResult<()> {
        match self.respawn_dead_pane(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_pane_still_active() => Ok(()),
            // Gone again (stopped meanwhile): the next pass sees it.
            Err(e) if e.is_missing_session() => Ok(()),
            Err(e) => Err(e.into_driver_error(&format!("sandbox {name}"))),
        }
    }

    async fn kill_session(&self, name: &str) -> DriverResult<()> {
        let args = vec!["kill-session".into(), "-t".into(), session_target(name)];
        match self.tmux.run(&args).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_missing_session() || e.is_server_gone() => Ok(()),
            // No tmux, no session to kill.
            Err(super::tmux::TmuxError::NotInstalled { .. }) => Ok(()),
            Err(e) => Err(e.into_driver_error(&format!("sandbox {name}"))),
        }
    }
}

#[async_trait]
impl SandboxDriver for LocalSandboxes {
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        let name = &spec.resource.resource_name;
        validate_resource_name(name)?;
        let env = project_env(spec)?;
        let dir = self.sandbox_dir(&spec.resource);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            DriverError::transient(format!(
                "sandbox {name}: cannot create {}: {e}",
                dir.display()
            ))
        })?;
        self.write_env_file(spec, &env).await?;

        let mut args: Vec<String> = vec!["new-session".into(), "-d".into(), "-s".into()];
        args.push(name.clone());
        args.push("-c".into());
        args.push(escape_arg(&dir.to_string_lossy()));
        args.extend(["-x", "200", "-y", "50"].map(String::from));
        for (k, v) in &env {
            args.push("-e".into());
            args.push(escape_arg(&format!("{k}={v}")));
        }
        args.push("-e".into());
        args.push(format!("{SANDBOX_VAR}={name}"));
        args.push("--".into());
        args.push(escape_arg(&self.command));
        // Same command line, so the key list is recorded before anything can
        // call sync_env on the new session, and the pane is kept when the
        // program exits.
        args.push(super::tmux::SEPARATOR.into());
        args.extend(set_managed_keys(name, env.iter().map(|(k, _)| *k)));
        args.push(super::tmux::SEPARATOR.into());
        args.extend(remain_on_exit(name));

        match self.tmux.run(&args).await {
            Ok(_) => Ok(Observed::Running),
            // Another reconcile pass (or replica) got there first, or the
            // session is still there: make sure its program runs.
            Err(e) if e.is_duplicate_session() => {
                self.respawn_if_dead(name).await?;
                Ok(Observed::Running)
            }
            Err(e) if e.is_missing_session() => Err(DriverError::transient(format!(
                "sandbox {name}: `{}` exited as soon as it started ({e})",
                self.command
            ))),
            Err(e) => Err(e.into_driver_error(&format!("sandbox {name}"))),
        }
    }

    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed> {
        validate_resource_name(&r.resource_name)?;
        self.kill_session(&r.resource_name).await?;
        Ok(Observed::Stopped)
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        let name = &r.resource_name;
        validate_resource_name(name)?;
        self.kill_session(name).await?;
        let dir = self.sandbox_dir(r);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::transient(format!(
                "sandbox {name}: cannot remove {}: {e}",
                dir.display()
            ))),
        }
    }

    /// A sandbox whose session exists is Running, even when the program in
    /// its default session has exited (the pane is kept dead by
    /// `remain-on-exit`): the sandbox itself (directory, environment,
    /// database, named sessions) is still up, exactly as a pod whose tmux
    /// pane died is still a running pod. The session listing
    /// (`SessionAttach::sessions`) shows the default session as exited, and
    /// the user restarts it from there; the reconcile loop does not restart
    /// it behind their back (it would hide the exit and its status), but
    /// `ensure` (start, retry) respawns a dead default pane.
    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let sessions: HashSet<String> = self
            .tmux
            .session_names()
            .await
            .map_err(|e| e.into_driver_error("observe sandboxes"))?
            .into_iter()
            .collect();
        let mut out = HashMap::with_capacity(rs.len());
        for r in rs {
            let name = &r.resource_name;
            // An invalid name cannot have been created by Kiln: report it as
            // absent rather than failing the whole batch.
            let observed = if validate_resource_name(name).is_err() {
                Observed::Absent
            } else if sessions.contains(name) {
                Observed::Running
            } else if tokio::fs::try_exists(self.sandbox_dir(r))
                .await
                .unwrap_or(false)
            {
                Observed::Stopped
            } else {
                Observed::Absent
            };
            out.insert(name.clone(), observed);
        }
        Ok(out)
    }

    /// Updates the session environment, which new windows and panes get;
    /// the running program keeps its environment (restarting it would lose
    /// the user's work). `.kiln-env` lets a shell in the sandbox catch up.
    async fn sync_env(&self, spec: &SandboxSpec) -> DriverResult<()> {
        let name = &spec.resource.resource_name;
        validate_resource_name(name)?;
        let env = project_env(spec)?;
        let previous = self.managed_keys(name).await?;
        self.write_env_file(spec, &env).await?;

        let target = session_target(name);
        let mut commands: Vec<Vec<String>> = Vec::new();
        for (k, v) in &env {
            commands.push(vec![
                "set-environment".into(),
                "-t".into(),
                target.clone(),
                (*k).into(),
                escape_arg(v),
            ]);
        }
        let current: HashSet<&str> = env.iter().map(|(k, _)| *k).collect();
        for k in previous.iter().filter(|k| !current.contains(k.as_str())) {
            // Keys come from our own option, but it is writable by anyone on
            // the socket: re-check before using one as an argument.
            if valid_env_key(k) {
                commands.push(vec![
                    "set-environment".into(),
                    "-u".into(),
                    "-t".into(),
                    target.clone(),
                    k.clone(),
                ]);
            }
        }
        // Last, so a failure part-way leaves the old keys recorded and the
        // next attempt still removes them.
        commands.push(set_managed_keys(name, env.iter().map(|(k, _)| *k)));
        self.tmux.run_batched(commands).await.map_err(|e| {
            if e.is_missing_session() {
                missing_session(name)
            } else {
                e.into_driver_error(&format!("sandbox {name}"))
            }
        })
    }
}

fn missing_session(name: &str) -> DriverError {
    DriverError::transient(format!(
        "sandbox {name} has no tmux session: it is not running, so its environment cannot be \
         updated yet"
    ))
}

/// Keeps the session's panes when their program exits (see `CONF`).
pub(crate) fn remain_on_exit(name: &str) -> Vec<String> {
    vec![
        "set-option".into(),
        "-t".into(),
        session_pane_target(name),
        "remain-on-exit".into(),
        "on".into(),
    ]
}

fn set_managed_keys<'a>(name: &str, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let keys: Vec<&str> = keys.collect();
    vec![
        "set-option".into(),
        "-t".into(),
        session_pane_target(name),
        MANAGED_KEYS_OPTION.into(),
        keys.join(" "),
    ]
}

/// The project's variables, checked: keys must be POSIX names (they end up
/// in `export` lines and tmux arguments) and values must fit in argv.
fn project_env(spec: &SandboxSpec) -> DriverResult<Vec<(&str, &str)>> {
    let name = &spec.resource.resource_name;
    let mut env = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        if !valid_env_key(k) {
            return Err(DriverError::permanent(format!(
                "sandbox {name}: invalid environment variable name {k:?}: expected \
                 [A-Za-z_][A-Za-z0-9_]*"
            )));
        }
        if v.contains('\0') {
            return Err(DriverError::permanent(format!(
                "sandbox {name}: environment variable {k} contains a NUL byte"
            )));
        }
        if k != SANDBOX_VAR {
            env.push((k.as_str(), v.as_str()));
        }
    }
    Ok(env)
}

fn valid_env_key(k: &str) -> bool {
    let mut bytes = k.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `export K='V'` lines for a POSIX shell.
fn render_env_file(env: &[(&str, &str)]) -> String {
    let mut out = String::from("# Written by Kiln: the sandbox environment. `source` it.\n");
    for (k, v) in env {
        out.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    out
}

/// Single-quotes a value for a POSIX shell: inside single quotes nothing is
/// special, and a `'` is written as `'\''` (close, escaped quote, reopen).
fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// Writes a 0600 file atomically: a reader never sees half of it, and the
/// secrets in it are never readable by others, not even for a moment.
async fn write_private_file(path: &Path, contents: Vec<u8>) -> std::io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // A name of its own: concurrent writers (two reconcile passes) must
        // not rename each other's half-written file.
        let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = f
            .write_all(&contents)
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
    .await
    .map_err(std::io::Error::other)?
}

/// `claude` if it is on PATH, else the login shell.
fn default_command() -> String {
    if on_path("claude") {
        return "claude".into();
    }
    if let Some(shell) = std::env::var_os("SHELL").filter(|s| !s.is_empty()) {
        return shell.to_string_lossy().into_owned();
    }
    if Path::new("/bin/bash").exists() {
        "/bin/bash".into()
    } else {
        "/bin/sh".into()
    }
}

fn on_path(program: &str) -> bool {
    which::which(program).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_quotes_values_for_a_posix_shell() {
        let text = render_env_file(&[("A", "it's $HOME `x` \"y\""), ("B", "")]);
        assert!(text.contains("export A='it'\\''s $HOME `x` \"y\"'\n"));
        assert!(text.contains("export B=''\n"));
    }

    #[test]
    fn env_keys_must_be_posix_names() {
        for good in ["A", "_x", "DATABASE_URL", "a1"] {
            assert!(valid_env_key(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B", "É"] {
            assert!(!valid_env_key(bad), "{bad}");
        }
    }
}
