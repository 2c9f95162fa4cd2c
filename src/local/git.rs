//! Git in a local sandbox: the one-time clone its working directory starts
//! from, and reading its git state. Git runs confined exactly like the
//! sandbox (bubblewrap, as the sandbox's user, seeing only its working
//! directory), so a repository's contents can do nothing there that the
//! sandbox's own shell could not.
//!
//! Git is told to trust nothing it is handed: no `file://` or `ext::`
//! transports, no hooks, no system or global config (the clone lands in
//! the sandbox's home, where a `.gitconfig` from the repository would
//! otherwise be read by the next command), no terminal prompt. A token
//! reaches git through a credential helper that reads the environment,
//! so it is in no argument and never written to the repository's config.
//!
//! Over 500 lines: the clone, the setup script and the job table that runs
//! them in the background share one confined way of running git.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::confine::{Confinement, SandboxMounts, bwrap_args};
use crate::driver::{DriverError, DriverResult, PrepareStep, RepoSource};
use crate::model::git::GitState;

/// How long a clone may take before it is given up as failed.
pub(crate) const CLONE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long reading the git state may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(20);
/// How many of git's last lines a failure keeps.
const ERROR_LINES: usize = 4;
/// Where a setup script's output is kept, in the working directory.
pub(crate) const SETUP_LOG: &str = ".kiln-setup.log";

/// The environment variable the credential helper reads the token from.
const TOKEN_VAR: &str = "KILN_GIT_TOKEN";

/// Options every git run gets, whatever the repository says.
const SAFE_CONFIG: &[&str] = &[
    "protocol.file.allow=never",
    "protocol.ext.allow=never",
    "protocol.fd.allow=never",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    // An empty helper first drops any configured one.
    "credential.helper=",
];

/// Answers git's `get` with the token from [`TOKEN_VAR`]; says nothing to
/// `store` or `erase`. The config value names the variable, never its value.
const TOKEN_HELPER: &str = "credential.helper=!f() { test \"$1\" = get && \
     printf 'username=x-access-token\\npassword=%s\\n' \"$KILN_GIT_TOKEN\"; }; f";

/// A template's setup script and the environment it runs with.
#[derive(Clone)]
pub(crate) struct Setup {
    pub(crate) script: String,
    /// The project's variables (checked names), secrets among them.
    pub(crate) env: Vec<(String, String)>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values: some are secrets.
        let keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Setup")
            .field("script", &self.script)
            .field("env", &keys)
            .finish()
    }
}

/// Where one sandbox's git runs.
#[derive(Debug, Clone)]
pub(crate) struct GitPlace {
    pub(crate) confinement: Confinement,
    pub(crate) name: String,
    pub(crate) sandbox_dir: PathBuf,
    pub(crate) run_dir: PathBuf,
    /// `passwd` and `group` naming the sandbox's user (git refuses a
    /// nameless uid), Kiln's own files.
    pub(crate) identity: (PathBuf, PathBuf),
    /// The sandbox's host user, who owns what is written in its directory.
    pub(crate) owner: Option<super::confine::SandboxUser>,
}

impl GitPlace {
    /// `git ARGS` in the sandbox's working directory, confined as the
    /// sandbox; with `network` it may reach the repository's host.
    fn command(
        &self,
        args: &[&str],
        network: bool,
        token: Option<&str>,
    ) -> tokio::process::Command {
        let mut git_args: Vec<OsString> = Vec::new();
        for c in SAFE_CONFIG {
            git_args.push("-c".into());
            git_args.push((*c).into());
        }
        if token.is_some() {
            git_args.push("-c".into());
            git_args.push(TOKEN_HELPER.into());
        }
        git_args.extend(args.iter().map(OsString::from));
        let mut cmd = self.confined("git", network);
        cmd.args(git_args);
        if let Some(t) = token {
            cmd.env(TOKEN_VAR, t);
        }
        cmd
    }

    /// `program` in the sandbox's working directory, confined as the
    /// sandbox, with a clean environment.
    fn confined(&self, program: &str, network: bool) -> tokio::process::Command {
        let mut cmd = match &self.confinement {
            Confinement::Bubblewrap {
                binary,
                user,
                system,
                ..
            } => {
                let (uid, gid) = match user {
                    Some(u) => (u.uid, u.gid),
                    None => (
                        nix::unistd::getuid().as_raw(),
                        nix::unistd::getgid().as_raw(),
                    ),
                };
                let mounts = SandboxMounts {
                    sandbox_dir: &self.sandbox_dir,
                    run_dir: &self.run_dir,
                    read_only: &[],
                    hostname: &self.name,
                    own_network: None,
                    identity: Some((&self.identity.0, &self.identity.1)),
                    kiln_binary: None,
                };
                let mut cmd = tokio::process::Command::new(binary);
                if let Some(u) = user {
                    cmd.uid(u.uid).gid(u.gid);
                }
                cmd.args(bwrap_args(system, &mounts, uid, gid));
                cmd.arg("--die-with-parent");
                if !network {
                    cmd.arg("--unshare-net");
                }
                cmd.arg("--").arg(program);
                cmd
            }
            Confinement::Unconfined { .. } => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.current_dir(&self.sandbox_dir);
                cmd
            }
        };
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C")
            // A tmpfs of its own when confined; nothing to read otherwise.
            .env("HOME", "/tmp")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Writes the identity files the confined git needs.
    pub(crate) async fn write_identity(
        &self,
        owner: Option<super::confine::SandboxUser>,
    ) -> DriverResult<()> {
        let Some((uid, gid)) = (match (&self.confinement, owner) {
            (Confinement::Bubblewrap { .. }, Some(u)) => Some((u.uid, u.gid)),
            (Confinement::Bubblewrap { .. }, None) => Some((
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            )),
            (Confinement::Unconfined { .. }, _) => None,
        }) else {
            return Ok(());
        };
        let (passwd, group) = super::confine::identity_files(uid, gid, &self.sandbox_dir);
        for (file, text) in [(&self.identity.0, passwd), (&self.identity.1, group)] {
            super::files::write_owned(file, text.into_bytes(), owner)
                .await
                .map_err(|e| {
                    DriverError::transient(format!(
                        "sandbox {}: cannot write {}: {e}",
                        self.name,
                        file.display()
                    ))
                })?;
        }
        Ok(())
    }

    /// Clones `repo` into the (empty) working directory and checks out its
    /// branch, creating it from the default branch when the repository has
    /// none of that name. `progress` holds git's latest progress line.
    /// The error is git's own message.
    pub(crate) async fn clone(
        &self,
        repo: &RepoSource,
        progress: Arc<Mutex<String>>,
    ) -> Result<(), String> {
        let token = repo.token.as_ref().map(|t| t.expose_str());
        let clone = self.command(&["clone", "--progress", "--", &repo.url, "."], true, token);
        let shown = crate::model::naming::printable(&repo.url, 120);
        match tokio::time::timeout(CLONE_TIMEOUT, run_with_progress(clone, progress)).await {
            Err(_) => {
                return Err(format!(
                    "git clone {shown} took longer than {} minutes and was given up",
                    CLONE_TIMEOUT.as_secs() / 60
                ));
            }
            Ok(Err(message)) => return Err(format!("git clone {shown} failed: {message}")),
            Ok(Ok(())) => {}
        }
        self.exclude_kiln_files().await?;
        let Some(branch) = &repo.branch else {
            return Ok(());
        };
        let remote = format!("refs/remotes/origin/{branch}");
        let exists = self
            .command(&["rev-parse", "--verify", "--quiet", &remote], false, None)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .map(|s| s.success())
            .map_err(|e| format!("cannot run git: {e}"))?;
        let upstream = format!("origin/{branch}");
        let args: Vec<&str> = if exists {
            vec!["checkout", "-q", "-B", branch, "--track", &upstream]
        } else {
            vec!["checkout", "-q", "-b", branch]
        };
        let out = self
            .command(&args, false, None)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "git checkout {branch} failed: {}",
                last_lines(&String::from_utf8_lossy(&out.stderr))
            ));
        }
        Ok(())
    }

    /// Runs a template's setup script once (`sh -c`, confined, in the
    /// working directory, with the network and the project's environment,
    /// as its sessions will have it), its output kept in [`SETUP_LOG`]
    /// there and its latest line in `progress`.
    pub(crate) async fn setup(
        &self,
        setup: &Setup,
        progress: Arc<Mutex<String>>,
    ) -> Result<(), String> {
        let mut cmd = self.confined("sh", true);
        // The environment, not argv: values (DATABASE_URL, secrets) stay
        // out of the process list. Kiln's own variables come after, so the
        // project cannot move git's config or the home.
        cmd.envs(setup.env.iter().map(|(k, v)| (k, v)));
        // Everything on one stream, in order, for the log and the progress.
        cmd.arg("-c")
            .arg(format!("exec 1>&2\n{}", setup.script))
            .env("HOME", &self.sandbox_dir)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        let run = run_capturing(cmd, progress);
        let (ok, output) = match tokio::time::timeout(CLONE_TIMEOUT, run).await {
            Err(_) => {
                return Err(format!(
                    "the setup script took longer than {} minutes and was given up",
                    CLONE_TIMEOUT.as_secs() / 60
                ));
            }
            Ok(r) => r?,
        };
        // Replaced, never followed: the script may have put a link there.
        let log = self.sandbox_dir.join(SETUP_LOG);
        let _ = super::files::write_owned(&log, output.clone().into_bytes(), self.owner).await;
        if ok {
            Ok(())
        } else {
            Err(format!("the setup script failed: {}", last_lines(&output)))
        }
    }

    /// Kiln's own files in the working directory (the env file, and the
    /// short-lived tmux one) are no change of the user's: listed in the
    /// clone's `.git/info/exclude`, which is never committed.
    async fn exclude_kiln_files(&self) -> Result<(), String> {
        let script = format!(
            "mkdir -p .git/info && printf '%s\\n' {} >> .git/info/exclude",
            super::sandbox::kiln_files()
                .iter()
                .map(|f| format!("'{f}'"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = self
            .confined("sh", false)
            .arg("-c")
            .arg(script)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .map_err(|e| format!("cannot run sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cannot write .git/info/exclude: {}",
                last_lines(&String::from_utf8_lossy(&out.stderr))
            ))
        }
    }

    /// The working tree's state (`None` when it is not a git repository).
    pub(crate) async fn status(&self) -> DriverResult<Option<GitState>> {
        if !tokio::fs::try_exists(self.sandbox_dir.join(".git"))
            .await
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let run = self
            .command(
                &[
                    "status",
                    "--porcelain=v2",
                    "--branch",
                    "--untracked-files=normal",
                ],
                false,
                None,
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output();
        let out = tokio::time::timeout(STATUS_TIMEOUT, run)
            .await
            .map_err(|_| DriverError::transient("git status took too long"))?
            .map_err(|e| DriverError::transient(format!("cannot run git: {e}")))?;
        if !out.status.success() {
            return Err(DriverError::transient(format!(
                "git status failed: {}",
                last_lines(&String::from_utf8_lossy(&out.stderr))
            )));
        }
        Ok(Some(crate::model::git::parse_status(
            &String::from_utf8_lossy(&out.stdout),
        )))
    }
}

/// Runs `cmd`, keeping its latest stderr line in `progress`; on failure,
/// its last lines.
async fn run_with_progress(
    cmd: tokio::process::Command,
    progress: Arc<Mutex<String>>,
) -> Result<(), String> {
    let (ok, all) = run_capturing(cmd, progress).await?;
    if ok { Ok(()) } else { Err(last_lines(&all)) }
}

/// Runs `cmd`, keeping its latest stderr line in `progress`; whether it
/// succeeded, and the tail of what it printed on stderr.
async fn run_capturing(
    mut cmd: tokio::process::Command,
    progress: Arc<Mutex<String>>,
) -> Result<(bool, String), String> {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped");
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                // Progress lines end in \r; keep only the tail of the text.
                if all.len() > 64 * 1024 {
                    all.drain(..all.len() - 32 * 1024);
                }
                let text = String::from_utf8_lossy(&all);
                if let Some(line) = text
                    .split(['\r', '\n'])
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                    && let Ok(mut p) = progress.lock()
                {
                    *p = crate::model::naming::printable(line, 100);
                }
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    Ok((status.success(), String::from_utf8_lossy(&all).into_owned()))
}

/// The last lines git printed that are not progress, joined, printable.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .split('\n')
        .filter_map(|l| l.rsplit('\r').next())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(ERROR_LINES);
    let text = lines[start..].join("; ");
    if text.is_empty() {
        "git exited with an error and printed nothing".into()
    } else {
        crate::model::naming::printable(&text, 600)
    }
}

/// The clones running (or failed) on this host, by sandbox. A clone runs
/// as a task of its own, so a reconcile pass never waits for one: the
/// sandbox reports `Blocked` with git's progress meanwhile.
#[derive(Debug, Clone, Default)]
pub(crate) struct CloneJobs(Arc<Mutex<HashMap<String, CloneJob>>>);

#[derive(Debug)]
enum CloneJob {
    Running {
        url: String,
        progress: Arc<Mutex<String>>,
        task: tokio::task::AbortHandle,
    },
    /// Why, as the error the sandbox's start reports (the step named).
    Failed(DriverError),
}

impl CloneJobs {
    /// What a running clone of sandbox `name` is doing, as a status reason.
    pub(crate) fn progress(&self, name: &str) -> Option<String> {
        let jobs = self.0.lock().ok()?;
        match jobs.get(name)? {
            CloneJob::Running { url, progress, .. } => {
                let now = progress.lock().map(|p| p.clone()).unwrap_or_default();
                let url = crate::model::naming::printable(url, 80);
                let what = if url == "the setup script" {
                    "preparing:".to_string()
                } else {
                    format!("cloning {url}:")
                };
                Some(if now.is_empty() {
                    what.trim_end_matches(':').to_string()
                } else {
                    format!("{what} {now}")
                })
            }
            CloneJob::Failed(_) => None,
        }
    }

    /// The failure of sandbox `name`'s last clone, once (a retry clones again).
    pub(crate) fn take_failure(&self, name: &str) -> Option<DriverError> {
        let mut jobs = self.0.lock().ok()?;
        if matches!(jobs.get(name), Some(CloneJob::Failed(_)))
            && let Some(CloneJob::Failed(m)) = jobs.remove(name)
        {
            return Some(m);
        }
        None
    }

    /// Ends sandbox `name`'s clone, if one runs (its git is killed).
    pub(crate) fn abort(&self, name: &str) {
        if let Ok(mut jobs) = self.0.lock()
            && let Some(CloneJob::Running { task, .. }) = jobs.remove(name)
        {
            task.abort();
        }
    }

    /// Starts cloning `repo` for sandbox `name` unless a clone runs already;
    /// `done` is written when it succeeds.
    pub(crate) fn start(
        &self,
        place: GitPlace,
        repo: Option<RepoSource>,
        setup: Option<Setup>,
        done: PathBuf,
    ) {
        let Ok(mut jobs) = self.0.lock() else { return };
        if matches!(jobs.get(&place.name), Some(CloneJob::Running { .. })) {
            return;
        }
        let progress = Arc::new(Mutex::new(String::new()));
        let name = place.name.clone();
        let url = repo
            .as_ref()
            .map_or_else(|| "the setup script".to_string(), |r| r.url.clone());
        let (me, shown) = (self.clone(), progress.clone());
        let task = tokio::spawn(async move {
            let mut result = match &repo {
                Some(repo) => (place.clone(repo, shown.clone()).await)
                    .map_err(|m| DriverError::prepare(PrepareStep::Clone, m)),
                None => Ok(()),
            };
            if result.is_ok()
                && let Some(script) = &setup
            {
                if let Ok(mut p) = shown.lock() {
                    *p = "running the setup script".into();
                }
                result = (place.setup(script, shown).await)
                    .map_err(|m| DriverError::prepare(PrepareStep::Setup, m));
            }
            if result.is_ok()
                && let Err(e) = super::files::write_owned(&done, Vec::new(), None).await
            {
                result = Err(DriverError::permanent(format!(
                    "cannot record the clone: {e}"
                )));
            }
            if let Ok(mut jobs) = me.0.lock() {
                match result {
                    Ok(()) => jobs.remove(&place.name),
                    Err(m) => jobs.insert(place.name.clone(), CloneJob::Failed(m)),
                };
            }
        });
        jobs.insert(
            name,
            CloneJob::Running {
                url,
                progress,
                task: task.abort_handle(),
            },
        );
    }
}

/// Removes everything in `dir` (a clone that failed half-way, or was cut
/// by a restart of Kiln), keeping the directory itself.
pub(crate) async fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if entry.file_type().await?.is_dir() {
            tokio::fs::remove_dir_all(&path).await?;
        } else {
            tokio::fs::remove_file(&path).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_gits_last_lines_without_progress() {
        let err = "Cloning into '.'...\nremote: Counting objects: 10% (1/10)\rremote: Counting \
                   objects: 100% (10/10)\nfatal: remote error: \n  no such repository: /x\n";
        assert_eq!(
            last_lines(err),
            "Cloning into '.'...; remote: Counting objects: 100% (10/10); fatal: remote error:; \
             no such repository: /x"
        );
        assert_eq!(
            last_lines(""),
            "git exited with an error and printed nothing"
        );
    }

    #[test]
    fn the_token_helper_names_the_variable_not_a_value() {
        assert!(TOKEN_HELPER.contains(TOKEN_VAR));
        let place = GitPlace {
            confinement: Confinement::Unconfined {
                reason: "test".into(),
            },
            name: "s".into(),
            sandbox_dir: "/tmp/s".into(),
            run_dir: "/tmp/r".into(),
            identity: ("/tmp/p".into(), "/tmp/g".into()),
            owner: None,
        };
        let cmd = place.command(&["clone", "--", "https://h/r", "."], true, Some("tok-123"));
        let std = cmd.as_std();
        let args: Vec<String> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.iter().all(|a| !a.contains("tok-123")), "{args:?}");
        assert!(args.iter().any(|a| a == "protocol.file.allow=never"));
        assert!(args.iter().any(|a| a == "core.hooksPath=/dev/null"));
        let env: Vec<(String, Option<String>)> = std
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(env.contains(&(TOKEN_VAR.into(), Some("tok-123".into()))));
        assert!(env.contains(&("GIT_TERMINAL_PROMPT".into(), Some("0".into()))));
    }
}
