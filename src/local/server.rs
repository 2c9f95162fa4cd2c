//! One tmux server per sandbox: started (confined, see `confine`) when the
//! sandbox starts, ended when it stops. The server runs in the foreground
//! (`tmux -D`) as the sandbox's first process, so when it ends the whole
//! sandbox (its PID namespace) ends with it.
//!
//! Starting is serialised per sandbox by a lock file outside the sandbox's
//! reach, across tasks and replicas on this host alike: two servers for one
//! sandbox would leave one running where no socket names it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::confine::{Confinement, INSIDE_RUN_DIR, SandboxMounts, bwrap_args};
use super::tmux::{CONF, INHERITED_ENV, Tmux};
use crate::driver::{DriverError, DriverResult};

/// How long a new server may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of one sandbox's server.
#[derive(Debug, Clone)]
pub(crate) struct ServerPaths {
    pub(crate) name: String,
    pub(crate) sandbox_dir: PathBuf,
    /// `{data}/run/{name}`: owned by the sandbox, bound at `/run/kiln`.
    pub(crate) run_dir: PathBuf,
    /// `{data}/run/{name}.lock` and `.log`: Kiln's own, out of the
    /// sandbox's reach (it could otherwise point them anywhere).
    pub(crate) lock: PathBuf,
    pub(crate) log: PathBuf,
    /// `{data}/run/{name}.net/` and `.port`: its network's control files
    /// (see `network`), out of its view.
    pub(crate) network: super::network::NetworkPaths,
}

impl ServerPaths {
    pub(crate) fn socket(&self) -> PathBuf {
        self.run_dir.join("tmux.sock")
    }
}

/// What a server needs for Claude Code's hooks to reach Kiln.
#[derive(Debug, Clone)]
pub(crate) struct HookMount {
    /// Kiln's binary on the host (bound read-only inside when confined).
    pub(crate) kiln_binary: PathBuf,
    /// `CLAUDE_CONFIG_DIR` as the sandbox sees it.
    pub(crate) claude_config_dir: String,
    /// The `tmux.conf` line reporting a session's program exiting (see
    /// `model::agent_settings::pane_died_hook`).
    pub(crate) pane_died: Option<String>,
}

/// Starts the sandbox's server unless one answers on its socket. Returns
/// once the server accepts clients.
pub(crate) async fn ensure_server(
    paths: &ServerPaths,
    tmux: &Tmux,
    tmux_binary: &Path,
    confinement: &Confinement,
    read_only: &[PathBuf],
    hooks: Option<&HookMount>,
) -> DriverResult<()> {
    if answers(tmux).await {
        return Ok(());
    }
    let _lock = lock(&paths.lock).await?;
    // Someone else may have started it while we waited for the lock.
    if answers(tmux).await {
        return Ok(());
    }
    let name = &paths.name;
    // Resolved on the host: the same path is visible inside (a binary
    // outside the system directories is not, and fails to start below).
    let tmux_binary = which::which(tmux_binary).map_err(|_| {
        super::tmux::TmuxError::NotInstalled {
            binary: tmux_binary.to_owned(),
        }
        .into_driver_error(&format!("sandbox {name}"))
    })?;
    let tmux_binary = tmux_binary.as_path();
    // A socket left by a server that died (host restart) would make the
    // new one fail to bind.
    let _ = tokio::fs::remove_file(paths.socket()).await;
    let mut conf = CONF.to_owned();
    if let Some(line) = hooks.and_then(|h| h.pane_died.as_deref()) {
        conf.push_str(
            "# A program that exits without saying SessionEnd (killed) is reported too.\n",
        );
        conf.push_str(line);
        conf.push('\n');
    }
    super::files::write_owned(
        &paths.run_dir.join("tmux.conf"),
        conf.into_bytes(),
        confinement.user(),
    )
    .await
    .map_err(|e| DriverError::transient(format!("sandbox {name}: cannot write tmux.conf: {e}")))?;
    let log = std::fs::File::create(&paths.log).map_err(|e| {
        DriverError::transient(format!(
            "sandbox {name}: cannot create {}: {e}",
            paths.log.display()
        ))
    })?;

    // With a network of its own: the pipes that tell Kiln the sandbox's
    // pid (to attach slirp4netns) and tie slirp4netns's life to it.
    let mut confined = None;
    let mut cmd = match confinement {
        Confinement::Bubblewrap {
            binary,
            user,
            system,
            network: slirp,
        } => {
            let (uid, gid) = match user {
                Some(u) => (u.uid, u.gid),
                None => (
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::getgid().as_raw(),
                ),
            };
            let resolv = paths.network.dir.join("resolv.conf");
            if slirp.is_some() {
                super::files::write_owned(
                    &resolv,
                    super::network::resolv_conf().into_bytes(),
                    *user,
                )
                .await
                .map_err(|e| {
                    DriverError::transient(format!(
                        "sandbox {name}: cannot write {}: {e}",
                        resolv.display()
                    ))
                })?;
            }
            let (passwd_text, group_text) =
                super::confine::identity_files(uid, gid, &paths.sandbox_dir);
            let passwd = paths.network.dir.join("passwd");
            let group = paths.network.dir.join("group");
            for (file, text) in [(&passwd, passwd_text), (&group, group_text)] {
                super::files::write_owned(file, text.into_bytes(), *user)
                    .await
                    .map_err(|e| {
                        DriverError::transient(format!(
                            "sandbox {name}: cannot write {}: {e}",
                            file.display()
                        ))
                    })?;
            }
            let mounts = SandboxMounts {
                sandbox_dir: &paths.sandbox_dir,
                run_dir: &paths.run_dir,
                read_only,
                hostname: name,
                own_network: slirp.as_ref().map(|_| resolv.as_path()),
                identity: Some((passwd.as_path(), group.as_path())),
                kiln_binary: hooks.map(|h| h.kiln_binary.as_path()),
            };
            let mut cmd = tokio::process::Command::new(binary);
            if let Some(u) = user {
                cmd.uid(u.uid).gid(u.gid);
            }
            cmd.args(bwrap_args(system, &mounts, uid, gid));
            // Always told the sandbox's first pid, to end the whole sandbox
            // if starting fails half-way (ending bwrap alone leaves it).
            use std::os::fd::AsRawFd;
            let (info_r, info_w) = std::io::pipe().map_err(|e| {
                DriverError::transient(format!("sandbox {name}: cannot make a pipe: {e}"))
            })?;
            cmd.arg("--info-fd").arg(info_w.as_raw_fd().to_string());
            let mut inherited = vec![info_w.as_raw_fd()];
            let life = match slirp {
                Some(slirp) => {
                    let (life_r, life_w) = std::io::pipe().map_err(|e| {
                        DriverError::transient(format!("sandbox {name}: cannot make a pipe: {e}"))
                    })?;
                    cmd.arg("--sync-fd").arg(life_w.as_raw_fd().to_string());
                    inherited.push(life_w.as_raw_fd());
                    Some((slirp.clone(), life_r, life_w))
                }
                None => None,
            };
            super::network::inherit_fds(&mut cmd, inherited);
            confined = Some((info_r, info_w, life));
            cmd.arg("--")
                .arg(tmux_binary)
                .arg("-S")
                .arg(format!("{INSIDE_RUN_DIR}/tmux.sock"))
                .arg("-f")
                .arg(format!("{INSIDE_RUN_DIR}/tmux.conf"));
            cmd
        }
        Confinement::Unconfined { .. } => {
            let mut cmd = tokio::process::Command::new(tmux_binary);
            cmd.arg("-S")
                .arg(paths.socket())
                .arg("-f")
                .arg(paths.run_dir.join("tmux.conf"))
                .current_dir(&paths.sandbox_dir);
            cmd
        }
    };
    cmd.arg("-D")
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?))),
        )
        .env("HOME", &paths.sandbox_dir)
        // Every session's Claude Code reads Kiln's hook settings (see
        // `model::agent_settings` for why this scope).
        .envs(hooks.map(|h| ("CLAUDE_CONFIG_DIR", h.claude_config_dir.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        // Its own process group: Ctrl-C in the terminal running `kiln
        // serve` must not end every sandbox, and sandboxes outlive Kiln.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        DriverError::permanent(format!(
            "sandbox {name}: cannot start its tmux server ({}): {e}",
            confinement.describe()
        ))
    })?;
    let mut sandbox_pid = None;
    let mut network = None;
    if let Some((info_r, info_w, life)) = confined {
        // Only bubblewrap may hold the write ends: their closing is the
        // signal (info written; sandbox gone).
        drop(info_w);
        let (slirp, life_r) = match life {
            Some((slirp, life_r, life_w)) => {
                drop(life_w);
                (Some(slirp), Some(life_r))
            }
            None => (None, None),
        };
        match super::network::read_child_pid(info_r).await {
            Ok(pid) => sandbox_pid = Some(pid),
            Err(e) => {
                end_sandbox(&mut child, None);
                return Err(DriverError::transient(format!("sandbox {name}: {e}")));
            }
        }
        network = slirp.zip(life_r);
    }

    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            end_sandbox(&mut child, sandbox_pid);
            let log = tokio::fs::read_to_string(&paths.log)
                .await
                .unwrap_or_default();
            return Err(DriverError::transient(format!(
                "sandbox {name}: its tmux server exited at once ({status}): {}",
                last_lines(&log, 5)
            )));
        }
        if answers(tmux).await {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            end_sandbox(&mut child, sandbox_pid);
            return Err(DriverError::transient(format!(
                "sandbox {name}: its tmux server did not open its socket within {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only now that its server runs is bubblewrap done setting up the
    // namespace (its own loopback included): slirp4netns configuring the
    // same namespace earlier races that setup, and bubblewrap fails.
    if let (Some((slirp, life_r)), Some(pid)) = (network, sandbox_pid)
        && let Err(e) = super::network::connect(&slirp, pid, life_r, &paths.network).await
    {
        end_sandbox(&mut child, sandbox_pid);
        return Err(DriverError::transient(format!(
            "sandbox {name}: its network: {e}"
        )));
    }
    // Reap it whenever it ends; it is not killed when Kiln exits.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}

/// Ends a sandbox whose start failed: its first process (the PID
/// namespace's init, which takes everything in it along) and bubblewrap.
fn end_sandbox(child: &mut tokio::process::Child, sandbox_pid: Option<u32>) {
    if let Some(pid) = sandbox_pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.start_kill();
}

/// Whether a server answers on the socket.
pub(crate) async fn answers(tmux: &Tmux) -> bool {
    if !tokio::fs::try_exists(tmux.socket()).await.unwrap_or(false) {
        return false;
    }
    tmux.run(&["list-sessions".into(), "-F".into(), "x".into()])
        .await
        .is_ok()
}

/// Ends the server and with it every session and process of the sandbox.
pub(crate) async fn stop_server(tmux: &Tmux) -> DriverResult<()> {
    if !tokio::fs::try_exists(tmux.socket()).await.unwrap_or(false) {
        return Ok(());
    }
    match tmux.run(&["kill-server".into()]).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_no_server() || e.is_server_gone() => Ok(()),
        Err(super::tmux::TmuxError::NotInstalled { .. }) => Ok(()),
        Err(e) => Err(e.into_driver_error("stopping the sandbox's tmux server")),
    }?;
    let _ = tokio::fs::remove_file(tmux.socket()).await;
    Ok(())
}

/// An exclusive lock on `path`, held until the guard is dropped.
async fn lock(path: &Path) -> DriverResult<nix::fcntl::Flock<std::fs::File>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| DriverError::transient(format!("cannot open {}: {e}", path.display())))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            DriverError::transient(format!("cannot lock {}: {e}", path.display()))
        })
    })
    .await
    .map_err(|e| DriverError::transient(format!("lock task: {e}")))?
}

/// The last `n` non-empty lines of `text`, on one line.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = &lines[lines.len().saturating_sub(n)..];
    if shown.is_empty() {
        "(it printed nothing)".into()
    } else {
        crate::model::naming::printable(&shown.join(" | "), 400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_shows_the_last_lines_it_printed() {
        assert_eq!(last_lines("", 5), "(it printed nothing)");
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b | c");
    }
}
