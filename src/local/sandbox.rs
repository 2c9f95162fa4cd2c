//! Local sandboxes: a working directory `{data_dir}/sandboxes/{name}/`, a
//! run directory `{data_dir}/run/{name}/` and a tmux server of its own,
//! confined (see `confine`), whose default session `{name}` runs the
//! sandbox's program.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::confine::{self, Confinement, SandboxUser};
use super::server::{self, ServerPaths};
use super::tmux::{
    MAX_SOCKET_PATH, Tmux, TmuxError, escape_arg, session_pane_target, session_target,
};
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
/// environment; tmux only hands a changed environment to new panes. The
/// session's program sources it too: values on a command line would be
/// visible to every local user in `ps`.
const ENV_FILE: &str = ".kiln-env";

/// Prefix of the short-lived 0600 file of `set-environment` commands that
/// `tmux source-file` reads, for the same reason.
const TMUX_ENV_FILE: &str = ".kiln-tmux-env";

/// The patterns of the files Kiln keeps in a sandbox's working directory
/// (kept out of a cloned repository's changes).
pub(super) fn kiln_files() -> [String; 3] {
    [
        ENV_FILE.to_string(),
        format!("{TMUX_ENV_FILE}-*"),
        super::git::SETUP_LOG.to_string(),
    ]
}

/// How long `ensure` waits for a clone (and setup) before reporting it as
/// under way: a small repository is ready within the same pass.
const CLONE_INLINE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sandboxes on this host.
#[derive(Debug, Clone)]
pub struct LocalSandboxes {
    data_dir: PathBuf,
    sandboxes_dir: PathBuf,
    run_dir: PathBuf,
    tmux_binary: PathBuf,
    confinement: Confinement,
    /// Directories every sandbox may read (its database's socket directory).
    read_only: Vec<PathBuf>,
    command: String,
    /// Claude Code's hooks report here (`None`: no agent states).
    agent_hooks: Option<AgentHooks>,
    /// Output seen while observing (a program's, attached or not) is noted
    /// here as the sandbox's activity (`None`: not recorded).
    activity: Option<crate::store::activity::ActivityRecorder>,
    /// Repository clones under way.
    clones: super::git::CloneJobs,
}

/// Where agent hook reports go, and the binary that sends them.
#[derive(Debug, Clone)]
struct AgentHooks {
    listeners: super::hooks::HookListeners,
    kiln_binary: PathBuf,
    /// `kiln_binary` staged where a confined sandbox's user can reach it
    /// (see [`LocalSandboxes::staged_kiln_binary`]); once per process.
    staged: std::sync::Arc<tokio::sync::OnceCell<PathBuf>>,
}

impl LocalSandboxes {
    /// Prepares `data_dir` (made absolute) for sandboxes, confined by
    /// bubblewrap if it works on this host (see [`Self::confinement`]).
    /// `command` is what each session runs; by default `claude` if it is on
    /// PATH, else the user's login shell.
    pub fn new(data_dir: &Path, command: Option<String>) -> Result<Self, DriverError> {
        let user =
            confine::sandbox_user_for(nix::unistd::getuid().as_raw(), confine::DEFAULT_SANDBOX_UID);
        Self::with_confinement(data_dir, command, confine::detect(user))
    }

    /// Like [`Self::new`], with the confinement decided by the caller.
    pub fn with_confinement(
        data_dir: &Path,
        command: Option<String>,
        confinement: Confinement,
    ) -> Result<Self, DriverError> {
        let data_dir = std::path::absolute(data_dir).map_err(|e| {
            DriverError::permanent(format!(
                "invalid data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let run_dir = data_dir.join("run");
        // The longest socket: `{run}/{63-character name}/tmux.sock`.
        let longest = run_dir.as_os_str().len() + 1 + 63 + "/tmux.sock".len();
        if longest > MAX_SOCKET_PATH {
            return Err(DriverError::permanent(format!(
                "the tmux socket paths {}/<sandbox>/tmux.sock would be up to {longest} bytes, \
                 longer than the {MAX_SOCKET_PATH} a Unix socket allows: choose a shorter data \
                 directory",
                run_dir.display(),
            )));
        }
        let sandboxes = Self {
            sandboxes_dir: data_dir.join("sandboxes"),
            run_dir,
            data_dir,
            // Found once: every client run would otherwise search PATH
            // (as the sandbox user, through directories it cannot enter).
            // Not found: left to each run, which then says tmux is missing.
            tmux_binary: which::which("tmux").unwrap_or_else(|_| PathBuf::from("tmux")),
            confinement,
            read_only: Vec::new(),
            command: command.unwrap_or_else(default_command),
            agent_hooks: None,
            activity: None,
            clones: Default::default(),
        };
        sandboxes.prepare_dirs()?;
        sandboxes.retire_shared_server();
        Ok(sandboxes)
    }

    /// Kiln before confinement ran every sandbox on one tmux server at
    /// `{data}/tmux/kiln.sock`, unconfined. Its sessions are ended (each
    /// sandbox starts again on its own confined server at the next
    /// reconcile pass), so no unconfined shell outlives the upgrade.
    fn retire_shared_server(&self) {
        let dir = self.data_dir.join("tmux");
        let socket = dir.join("kiln.sock");
        if socket.exists() {
            let ended = std::process::Command::new(&self.tmux_binary)
                .arg("-N")
                .arg("-S")
                .arg(&socket)
                .arg("kill-server")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ended {
                tracing::warn!(
                    socket = %socket.display(),
                    "ended the shared, unconfined tmux server of an older Kiln: its sandboxes \
                     restart confined"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Private directories: Kiln's own user only, except that a sandbox
    /// user (when Kiln is root) may pass through the data, sandboxes and run
    /// directories (0710, group of the sandbox user) to reach its own, which
    /// bubblewrap opens as that user. It can list none of them.
    fn prepare_dirs(&self) -> Result<(), DriverError> {
        let (mode, owner) = match self.confinement.user() {
            Some(u) => (0o710, Some((None, Some(u.gid)))),
            None => (0o700, None),
        };
        for dir in [&self.data_dir, &self.sandboxes_dir, &self.run_dir] {
            // The embedded cluster, run as its own user when Kiln is root,
            // may have given the data directory search permission for others
            // (see `embedded_pg`): keep it, or that user is locked out.
            let mode = match std::fs::metadata(dir) {
                Ok(m) if dir == &self.data_dir => {
                    use std::os::unix::fs::PermissionsExt;
                    mode | (m.permissions().mode() & 0o001)
                }
                _ => mode,
            };
            super::files::ensure_dir(dir, mode, owner).map_err(|e| {
                DriverError::permanent(format!("cannot prepare {}: {e}", dir.display()))
            })?;
        }
        Ok(())
    }

    /// Uses this tmux binary instead of the one on PATH.
    pub fn with_tmux_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.tmux_binary = binary.into();
        self
    }

    /// Lets every sandbox read `dir` (bound read-only at the same path).
    pub fn with_read_only_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.read_only.push(dir.into());
        self
    }

    /// Installs Claude Code hooks in every sandbox started from now on:
    /// `kiln_binary hook` reports each event through the sandbox's own
    /// socket, and the reports arrive on `sink`.
    pub fn with_agent_hooks(
        mut self,
        sink: tokio::sync::mpsc::Sender<super::hooks::HookReport>,
        kiln_binary: impl Into<PathBuf>,
    ) -> Self {
        self.agent_hooks = Some(AgentHooks {
            listeners: super::hooks::HookListeners::new(sink),
            kiln_binary: kiln_binary.into(),
            staged: Default::default(),
        });
        self
    }

    /// Notes each sandbox's latest terminal output, as tmux saw it, into
    /// `recorder` whenever the sandbox is observed: the program's output
    /// counts as activity even while nobody is attached.
    pub fn with_activity(mut self, recorder: crate::store::activity::ActivityRecorder) -> Self {
        self.activity = Some(recorder);
        self
    }

    /// The sandbox's hook socket on the host.
    pub fn hook_socket(&self, resource: &str) -> PathBuf {
        self.run_dir.join(resource).join(super::hooks::SOCKET)
    }

    /// Paths as the sandbox sees them: its run directory, Kiln's binary.
    fn inside_paths(&self, name: &str, hooks: &AgentHooks) -> (PathBuf, PathBuf) {
        if self.confinement.is_confined() {
            (
                PathBuf::from(confine::INSIDE_RUN_DIR),
                PathBuf::from(confine::INSIDE_KILN_BINARY),
            )
        } else {
            (self.run_dir.join(name), hooks.kiln_binary.clone())
        }
    }

    /// Listens on the sandbox's hook socket and merges Kiln's hooks into
    /// the settings of its `CLAUDE_CONFIG_DIR`; returns what its server
    /// needs to run them.
    async fn install_hooks(&self, name: &str) -> DriverResult<Option<server::HookMount>> {
        let Some(hooks) = &self.agent_hooks else {
            return Ok(None);
        };
        let paths = self.server_paths(name);
        hooks
            .listeners
            .ensure(name, &self.hook_socket(name), self.owner())
            .map_err(|e| {
                DriverError::transient(format!("sandbox {name}: cannot listen for its hooks: {e}"))
            })?;
        let (inside_run, inside_kiln) = self.inside_paths(name, hooks);
        let config_dir = paths.run_dir.join("claude");
        let owner = self.owner().map(|u| (Some(u.uid), Some(u.gid)));
        let dir = config_dir.clone();
        tokio::task::spawn_blocking(move || super::files::ensure_dir(&dir, 0o700, owner))
            .await
            .map_err(|e| DriverError::transient(format!("sandbox {name}: {e}")))?
            .map_err(|e| {
                DriverError::transient(format!(
                    "sandbox {name}: cannot create {}: {e}",
                    config_dir.display()
                ))
            })?;
        let file = config_dir.join("settings.json");
        let existing = tokio::fs::read_to_string(&file).await.ok();
        let inside_socket = inside_run.join(super::hooks::SOCKET);
        let command = crate::model::agent_settings::hook_command(
            &inside_kiln.to_string_lossy(),
            &inside_socket.to_string_lossy(),
        );
        let pane_died = crate::model::agent_settings::pane_died_hook(
            &inside_kiln.to_string_lossy(),
            &inside_socket.to_string_lossy(),
            name,
        );
        if pane_died.is_none() {
            tracing::warn!(
                sandbox = %name,
                "the paths of Kiln's binary or of the sandbox's hook socket need quoting: a \
                 program killed in this sandbox is not reported as ended"
            );
        }
        let merged = crate::model::agent_settings::merge(existing.as_deref(), &command);
        let text = serde_json::to_string_pretty(&merged).expect("JSON values serialise");
        // Unchanged (a pooled sandbox's start, every start after the
        // first): no write, no flush.
        if existing.as_deref() != Some(text.as_str()) {
            super::files::write_owned(&file, text.into_bytes(), self.owner())
                .await
                .map_err(|e| {
                    DriverError::transient(format!(
                        "sandbox {name}: cannot write {}: {e}",
                        file.display()
                    ))
                })?;
        }
        let kiln_binary = if self.confinement.is_confined() {
            self.staged_kiln_binary(hooks).await?
        } else {
            hooks.kiln_binary.clone()
        };
        Ok(Some(server::HookMount {
            kiln_binary,
            claude_config_dir: inside_run.join("claude").to_string_lossy().into_owned(),
            pane_died,
        }))
    }

    /// Kiln's binary where bubblewrap, running as the sandbox's user, can
    /// open it to bind it: wherever Kiln was started from may be out of
    /// that user's reach (`/root/.cargo/bin`, a build directory under
    /// `/root`). A hard link (or a copy, across file systems) in
    /// `{run}/.kiln-bin/`, which the sandbox user may pass through; put in
    /// place by rename, so a sandbox running the previous one keeps it.
    async fn staged_kiln_binary(&self, hooks: &AgentHooks) -> DriverResult<PathBuf> {
        let dir = self.run_dir.join(".kiln-bin");
        let source = hooks.kiln_binary.clone();
        let owner = self.confinement.user().map(|u| (None, Some(u.gid)));
        let staged = hooks
            .staged
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || stage_binary(&source, &dir, owner))
                    .await
                    .map_err(std::io::Error::other)?
            })
            .await
            .map_err(|e| {
                DriverError::permanent(format!(
                    "cannot place Kiln's binary for the sandboxes' hooks: {e}"
                ))
            })?;
        Ok(staged.clone())
    }

    /// How sandboxes on this host are isolated.
    pub fn confinement(&self) -> &Confinement {
        &self.confinement
    }

    /// The files of sandbox `name`'s tmux server.
    fn server_paths(&self, name: &str) -> ServerPaths {
        ServerPaths {
            name: name.to_owned(),
            sandbox_dir: self.sandboxes_dir.join(name),
            run_dir: self.run_dir.join(name),
            lock: self.run_dir.join(format!("{name}.lock")),
            log: self.run_dir.join(format!("{name}.log")),
            network: super::network::NetworkPaths {
                dir: self.run_dir.join(format!("{name}.net")),
                port_file: self.run_dir.join(format!("{name}.port")),
            },
        }
    }

    /// Where sandbox `name`'s git runs (see `git`).
    fn git_place(&self, name: &str) -> super::git::GitPlace {
        let paths = self.server_paths(name);
        super::git::GitPlace {
            confinement: self.confinement.clone(),
            name: name.to_owned(),
            identity: (
                paths.network.dir.join("passwd"),
                paths.network.dir.join("group"),
            ),
            sandbox_dir: paths.sandbox_dir,
            run_dir: paths.run_dir,
            owner: self.owner(),
        }
    }

    /// `{run}/{name}.cloned`: the sandbox's repository was cloned, so it is
    /// never cloned again (Kiln's own file, out of the sandbox's reach).
    fn cloned_marker(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.cloned"))
    }

    /// Before a sandbox's first start: its repository, cloned in a task of
    /// its own. `Some(observed)` while that is under way (the caller
    /// reports it, git's progress as the reason); `None` once the working
    /// directory has its clone. A failed clone (or setup script) is a
    /// permanent error naming that step, with git's message (the script's
    /// last lines), once: a retry clones again into an emptied directory.
    async fn clone_first(&self, name: &str, spec: &SandboxSpec) -> DriverResult<Option<Observed>> {
        if spec.repo.is_none() && spec.setup.is_none() {
            return Ok(None);
        }
        if tokio::fs::try_exists(self.cloned_marker(name))
            .await
            .unwrap_or(false)
        {
            return Ok(None);
        }
        if self.clones.progress(name).is_none() {
            if let Some(failure) = self.clones.take_failure(name) {
                return Err(failure);
            }
            self.start_clone(name, spec).await?;
        }
        // A small repository is there within the pass; a large one is
        // reported with git's progress and looked at again.
        let deadline = tokio::time::Instant::now() + CLONE_INLINE_WAIT;
        while self.clones.progress(name).is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if let Some(reason) = self.clones.progress(name) {
            return Ok(Some(Observed::Blocked(reason)));
        }
        if let Some(failure) = self.clones.take_failure(name) {
            return Err(failure);
        }
        Ok(None)
    }

    /// Empties the working directory and starts the clone (and setup) task.
    async fn start_clone(&self, name: &str, spec: &SandboxSpec) -> DriverResult<()> {
        let paths = self.server_paths(name);
        let owner = self.owner().map(|u| (Some(u.uid), Some(u.gid)));
        for dir in [&paths.sandbox_dir, &paths.run_dir, &paths.network.dir] {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                super::files::ensure_dir(&dir, 0o700, owner).map_err(|e| (dir, e))
            })
            .await
            .map_err(|e| DriverError::transient(format!("sandbox {name}: {e}")))?
            .map_err(|(dir, e)| {
                DriverError::transient(format!(
                    "sandbox {name}: cannot create {}: {e}",
                    dir.display()
                ))
            })?;
        }
        // What a clone cut short (Kiln restarted, a failure) left behind.
        super::git::empty_dir(&paths.sandbox_dir)
            .await
            .map_err(|e| {
                DriverError::transient(format!(
                    "sandbox {name}: cannot empty {}: {e}",
                    paths.sandbox_dir.display()
                ))
            })?;
        let place = self.git_place(name);
        place.write_identity(self.owner()).await?;
        let setup = match &spec.setup {
            Some(script) => Some(super::git::Setup {
                script: script.clone(),
                env: project_env(spec)?
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            None => None,
        };
        self.clones
            .start(place, spec.repo.clone(), setup, self.cloned_marker(name));
        Ok(())
    }

    /// The git state of the sandbox's working directory (`None`: not a
    /// repository).
    pub(crate) async fn git_state(
        &self,
        r: &ResourceRef,
    ) -> DriverResult<Option<crate::model::git::GitState>> {
        validate_resource_name(&r.resource_name)?;
        let place = self.git_place(&r.resource_name);
        if self.clones.progress(&r.resource_name).is_some() {
            return Ok(None);
        }
        place.write_identity(self.owner()).await?;
        place.status().await
    }

    /// A client of sandbox `name`'s tmux server.
    pub(crate) fn tmux(&self, name: &str) -> Tmux {
        Tmux::new(
            self.tmux_binary.clone(),
            self.server_paths(name).socket(),
            self.confinement.user(),
        )
    }

    /// A blocking `tmux -S …` command on the sandbox's server, run as the
    /// identity the server admits: what an operator (or a test) uses to look
    /// at a sandbox from the host.
    pub fn tmux_command(&self, resource: &str) -> std::process::Command {
        self.tmux(resource).std_command()
    }

    /// The sandboxes whose tmux server has a socket (running, or died
    /// without cleaning up), by resource name.
    pub fn server_names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("tmux.sock").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| validate_resource_name(n).is_ok())
            .collect();
        names.sort();
        names
    }

    /// Ends every sandbox's tmux server, blocking (for shutdown paths and
    /// tests that clean up in `Drop`).
    pub fn kill_all_servers(&self) {
        for name in self.server_names() {
            let _ = self.tmux_command(&name).arg("kill-server").output();
        }
    }

    /// The host port (on 127.0.0.1) forwarded to the app port of sandbox
    /// `resource`, while it runs with a network of its own.
    pub fn app_port(&self, resource: &str) -> Option<u16> {
        let paths = self.server_paths(resource);
        if !paths.socket().exists() {
            return None;
        }
        super::network::forwarded_port(&paths.network.port_file)
    }

    /// The sandbox's tmux socket.
    pub fn socket_path(&self, resource: &str) -> PathBuf {
        self.server_paths(resource).socket()
    }

    /// The program and leading arguments of a tmux client of the sandbox's
    /// server (see [`Tmux::client_argv`]).
    pub(crate) fn client_argv(&self, name: &str) -> Vec<std::ffi::OsString> {
        self.tmux(name).client_argv()
    }

    /// The sandbox user, when it is not Kiln's own.
    fn owner(&self) -> Option<SandboxUser> {
        self.confinement.user()
    }

    /// `tmux list-sessions -F format` on the sandbox's server (no server:
    /// no sessions).
    pub(crate) async fn list_sessions_with(
        &self,
        resource: &str,
        format: &str,
    ) -> DriverResult<String> {
        self.tmux(resource)
            .list_sessions_with(format)
            .await
            .map_err(|e| e.into_driver_error("list sessions"))
    }

    /// The tmux binary in use.
    pub fn tmux_binary(&self) -> &Path {
        &self.tmux_binary
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
        // Written afresh by every start and sync, so not flushed (see
        // `files::write_owned_volatile`).
        super::files::write_owned_volatile(&path, render_env_file(env).into_bytes(), self.owner())
            .await
            .map_err(|e| {
                DriverError::transient(format!(
                    "sandbox {}: cannot write {}: {e}",
                    spec.resource.resource_name,
                    path.display()
                ))
            })
    }

    /// Runs `commands` (tmux config text holding environment values) through
    /// a private file, so no value is ever in a process's argv, then removes
    /// the file.
    async fn source_private(&self, spec: &SandboxSpec, commands: String) -> DriverResult<()> {
        let name = &spec.resource.resource_name;
        let path = self.write_private_commands(spec, commands).await?;
        let result = self.tmux(name).source_file(&path).await;
        let _ = tokio::fs::remove_file(&path).await;
        result.map(|_| ()).map_err(|e| {
            if e.is_missing_session() {
                missing_session(name)
            } else {
                e.into_driver_error(&format!("sandbox {name}"))
            }
        })
    }

    /// Writes `commands` (tmux config text holding environment values) to a
    /// private file of a fresh name for `tmux source-file`; the caller
    /// removes it once sourced, so it is not flushed.
    async fn write_private_commands(
        &self,
        spec: &SandboxSpec,
        commands: String,
    ) -> DriverResult<PathBuf> {
        let path = self
            .sandbox_dir(&spec.resource)
            .join(format!("{TMUX_ENV_FILE}-{}", uuid::Uuid::new_v4().simple()));
        super::files::write_owned_volatile(&path, commands.into_bytes(), self.owner())
            .await
            .map_err(|e| {
                DriverError::transient(format!(
                    "sandbox {}: cannot write {}: {e}",
                    spec.resource.resource_name,
                    path.display()
                ))
            })?;
        Ok(path)
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
        match self.tmux(name).run(&args).await {
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
    pub(crate) async fn respawn_dead_pane(
        &self,
        resource: &str,
        session: &str,
    ) -> Result<(), TmuxError> {
        let args = vec![
            "respawn-pane".into(),
            "-t".into(),
            session_pane_target(session),
        ];
        self.tmux(resource).run(&args).await.map(|_| ())
    }

    /// Makes tmux reap every child that has exited (see
    /// `driver::tmux_listing_awaits_reap`): `run-shell true` starts a child
    /// that exits at once. Best effort.
    pub(crate) async fn reap_exited(&self, resource: &str) {
        let args = vec!["run-shell".into(), "true".into()];
        let _ = self.tmux(resource).run(&args).await;
    }

    /// `ensure` on an existing session: a dead default pane is respawned, a
    /// live one left alone.
    async fn respawn_if_dead(&self, name: &str) -> DriverResult<()> {
        match self.respawn_dead_pane(name, name).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_pane_still_active() => Ok(()),
            // Gone again (stopped meanwhile): the next pass sees it.
            Err(e) if e.is_missing_session() => Ok(()),
            Err(e) => Err(e.into_driver_error(&format!("sandbox {name}"))),
        }
    }

    /// Whether the sandbox's server runs its default session. No socket
    /// (the common case for a stopped sandbox) costs no tmux call. The same
    /// one call notes each session's latest output (tmux keeps it per
    /// window, whether or not a client is attached) and finds a program
    /// whose exit tmux missed (see `observed`), which it is then told of.
    async fn has_default_session(&self, name: &str) -> DriverResult<bool> {
        let tmux = self.tmux(name);
        if !tokio::fs::try_exists(tmux.socket()).await.unwrap_or(false) {
            return Ok(false);
        }
        let listed = tmux
            .list_sessions_with(super::observed::FORMAT)
            .await
            .map_err(|e| e.into_driver_error(&format!("observe sandbox {name}")))?;
        let (mut found, mut exit_missed) = (false, false);
        for line in listed.lines() {
            let seen = super::observed::parse(line);
            found |= seen.name == name;
            exit_missed |= seen.exit_missed;
            if let (Some(activity), Some(at)) = (&self.activity, seen.activity) {
                activity.note_at(name, at);
            }
        }
        if exit_missed {
            let nudge = ["run-shell", "-b", super::observed::NUDGE].map(String::from);
            if let Err(e) = tmux.run(&nudge).await {
                tracing::warn!(sandbox = %name, "cannot tell tmux of an exited program: {e}");
            }
        }
        Ok(found)
    }

    /// Ends the sandbox's server: every session and process in it.
    pub(super) async fn stop_server(&self, name: &str) -> DriverResult<()> {
        if let Some(hooks) = &self.agent_hooks {
            hooks.listeners.stop(name, &self.hook_socket(name));
        }
        server::stop_server(&self.tmux(name))
            .await
            .map_err(|e| DriverError::transient(format!("sandbox {name}: {e}")))
    }

    /// Makes the sandbox's directories (owned by the sandbox user, 0700)
    /// and starts its server if it is not running.
    pub(super) async fn start_server(&self, name: &str) -> DriverResult<()> {
        let paths = self.server_paths(name);
        let owner = self.owner().map(|u| (Some(u.uid), Some(u.gid)));
        for dir in [&paths.sandbox_dir, &paths.run_dir, &paths.network.dir] {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                super::files::ensure_dir(&dir, 0o700, owner).map_err(|e| (dir, e))
            })
            .await
            .map_err(|e| DriverError::transient(format!("sandbox {name}: {e}")))?
            .map_err(|(dir, e)| {
                DriverError::transient(format!(
                    "sandbox {name}: cannot create {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let hooks = self.install_hooks(name).await?;
        server::ensure_server(
            &paths,
            &self.tmux(name),
            &self.tmux_binary,
            &self.confinement,
            &self.read_only,
            hooks.as_ref(),
        )
        .await
    }
}

/// What a start knows of the sandbox's tmux server beforehand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerKnown {
    /// Nothing: make sure it runs (one `tmux` call when it does).
    Unknown,
    /// A claimed pooled sandbox's: running, with no session, when the
    /// keeper last checked it. The `tmux` run that opens the project's
    /// session first lists the sessions the server had, so that one
    /// someone opened since is found without a run of its own.
    Pooled,
}

/// How one attempt at opening the default session went.
#[derive(Debug)]
enum Opened {
    /// Where the sandbox is now (`Running`, or a clone under way).
    Done(Observed),
    /// Opened, but next to sessions that are not the project's: a pooled
    /// sandbox's server had them (someone on the host opened them after
    /// its last health check).
    Foreign(Vec<String>),
}

impl LocalSandboxes {
    /// `ensure`'s work: the clone first if there is one, the server started
    /// unless it just answered, then the default session opened in one
    /// `tmux` client run: the session with the project's command, the keys
    /// Kiln manages, remain-on-exit, and the environment values, sourced
    /// from a private file (never argv).
    pub(super) async fn open_default_session(
        &self,
        spec: &SandboxSpec,
        server: ServerKnown,
    ) -> DriverResult<Observed> {
        let sessions = match self.open_session_once(spec, server).await? {
            Opened::Done(observed) => return Ok(observed),
            Opened::Foreign(sessions) => sessions,
        };
        let name = &spec.resource.resource_name;
        tracing::warn!(
            sandbox = %name,
            ?sessions,
            "a claimed pooled sandbox was touched after its health check: starting it afresh"
        );
        self.stop_server(name).await?;
        match self.open_session_once(spec, ServerKnown::Unknown).await? {
            Opened::Done(observed) => Ok(observed),
            // A new server's sessions are not listed.
            Opened::Foreign(_) => Ok(Observed::Running),
        }
    }

    /// [`Self::open_default_session`]'s one attempt.
    async fn open_session_once(
        &self,
        spec: &SandboxSpec,
        server: ServerKnown,
    ) -> DriverResult<Opened> {
        let name = &spec.resource.resource_name;
        validate_resource_name(name)?;
        let env = project_env(spec)?;
        let dir = self.sandbox_dir(&spec.resource);
        if let Some(preparing) = self.clone_first(name, spec).await? {
            return Ok(Opened::Done(preparing));
        }
        match server {
            // Its hooks' listener still: a Kiln started since the server
            // was lacks it.
            ServerKnown::Pooled => {
                self.install_hooks(name).await?;
            }
            ServerKnown::Unknown => self.start_server(name).await?,
        }
        self.write_env_file(spec, &env).await?;

        let mut args: Vec<String> = Vec::new();
        if server == ServerKnown::Pooled {
            args.extend(["list-sessions", "-F", "#{session_name}"].map(String::from));
            args.push(super::tmux::SEPARATOR.into());
        }
        args.extend(["new-session", "-d", "-s"].map(String::from));
        args.push(name.clone());
        args.push("-c".into());
        args.push(escape_arg(&dir.to_string_lossy()));
        args.extend(["-x", "200", "-y", "50"].map(String::from));
        // Only Kiln's own, public variable goes in argv; the program reads
        // the others from the env file, and new panes get them from the
        // session environment set below through a file.
        args.push("-e".into());
        args.push(format!("{SANDBOX_VAR}={name}"));
        args.push("--".into());
        let command = spec.command.as_deref().unwrap_or(&self.command);
        args.push(escape_arg(&session_command(command)));
        // Same command line, so the key list is recorded before anything can
        // call sync_env on the new session, the pane is kept when the
        // program exits, and the session has its environment before anyone
        // can open a window in it. A failed command skips the rest of the
        // line: a session that was already there gets none of it.
        args.push(super::tmux::SEPARATOR.into());
        args.extend(set_managed_keys(name, env.iter().map(|(k, _)| *k)));
        args.push(super::tmux::SEPARATOR.into());
        args.extend(remain_on_exit(name));
        let commands = self
            .write_private_commands(spec, render_tmux_env(name, &env, &[]))
            .await?;
        args.push(super::tmux::SEPARATOR.into());
        args.push("source-file".into());
        args.push(escape_arg(&commands.to_string_lossy()));

        let mut result = self.tmux(name).run(&args).await;
        if server == ServerKnown::Pooled && matches!(&result, Err(e) if e.is_no_server()) {
            // Gone since its health check: started again, as any
            // sandbox's (a new server has no session to list).
            result = match self.start_server(name).await {
                Ok(()) => self.tmux(name).run(&args).await,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&commands).await;
                    return Err(e);
                }
            };
        }
        let _ = tokio::fs::remove_file(&commands).await;
        match result {
            Ok(listed) => {
                // Empty unless the sessions were listed first (pooled).
                let foreign: Vec<String> = listed
                    .lines()
                    .filter(|l| !l.is_empty() && *l != name.as_str())
                    .map(str::to_owned)
                    .collect();
                if foreign.is_empty() {
                    Ok(Opened::Done(Observed::Running))
                } else {
                    Ok(Opened::Foreign(foreign))
                }
            }
            // Another reconcile pass (or replica) got there first, or the
            // session is still there: make sure its program runs.
            Err(e) if e.is_duplicate_session() => {
                self.respawn_if_dead(name).await?;
                Ok(Opened::Done(Observed::Running))
            }
            Err(e) if e.is_missing_session() => Err(DriverError::transient(format!(
                "sandbox {name}: `{}` exited as soon as it started ({e})",
                self.command
            ))),
            Err(e) => Err(e.into_driver_error(&format!("sandbox {name}"))),
        }
    }
}

#[async_trait]
impl SandboxDriver for LocalSandboxes {
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        self.open_default_session(spec, ServerKnown::Unknown).await
    }

    async fn adopt(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        validate_resource_name(&spec.resource.resource_name)?;
        let server = self.clear_for_adoption(spec).await?;
        self.open_default_session(spec, server).await
    }

    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed> {
        validate_resource_name(&r.resource_name)?;
        self.stop_server(&r.resource_name).await?;
        Ok(Observed::Stopped)
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        let name = &r.resource_name;
        validate_resource_name(name)?;
        self.clones.abort(name);
        self.stop_server(name).await?;
        let paths = self.server_paths(name);
        for dir in [&paths.sandbox_dir, &paths.run_dir, &paths.network.dir] {
            match tokio::fs::remove_dir_all(dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(DriverError::transient(format!(
                        "sandbox {name}: cannot remove {}: {e}",
                        dir.display()
                    )));
                }
            }
        }
        let cloned = self.cloned_marker(name);
        for file in [&paths.lock, &paths.log, &paths.network.port_file, &cloned] {
            let _ = tokio::fs::remove_file(file).await;
        }
        Ok(())
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
        let mut out = HashMap::with_capacity(rs.len());
        for r in rs {
            let name = &r.resource_name;
            // An invalid name cannot have been created by Kiln: report it as
            // absent rather than failing the whole batch.
            let observed = if validate_resource_name(name).is_err() {
                Observed::Absent
            } else if let Some(reason) = self.clones.progress(name) {
                Observed::Blocked(reason)
            } else if self.has_default_session(name).await? {
                // A Kiln started after the sandbox listens for it again.
                if let Some(hooks) = &self.agent_hooks
                    && let Err(e) =
                        hooks
                            .listeners
                            .ensure(name, &self.hook_socket(name), self.owner())
                {
                    tracing::warn!(sandbox = %name, "cannot listen for its hooks: {e}");
                }
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

        let current: HashSet<&str> = env.iter().map(|(k, _)| *k).collect();
        // Keys come from our own option, but it is writable by anyone on the
        // socket: re-check before using one in a command.
        let removed: Vec<&str> = previous
            .iter()
            .map(String::as_str)
            .filter(|k| !current.contains(k) && valid_env_key(k))
            .collect();
        self.source_private(spec, render_tmux_env(name, &env, &removed))
            .await
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
/// in `export` lines and tmux commands) and values must not hold NUL, which
/// neither a file line nor an environment can carry.
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

/// What tmux runs in a new session: `command`, in the user's shell as
/// before, after a POSIX shell has sourced the env file from the session's
/// directory. The argv of every process involved holds only the file name.
fn session_command(command: &str) -> String {
    format!(
        "exec /bin/sh -c '. ./{ENV_FILE} && exec \"${{SHELL:-/bin/sh}}\" -c \"$0\"' {}",
        shell_quote(command)
    )
}

/// tmux config text that sets `env` in session `name`, removes `removed`,
/// and records the keys Kiln now manages; last, so a failure part-way leaves
/// the old keys recorded and the next attempt still removes them.
fn render_tmux_env(name: &str, env: &[(&str, &str)], removed: &[&str]) -> String {
    let target = tmux_quote(&session_target(name));
    let mut out = String::new();
    for (k, v) in env {
        out.push_str(&format!(
            "set-environment -t {target} {k} {}\n",
            tmux_quote(v)
        ));
    }
    for k in removed {
        out.push_str(&format!("set-environment -u -t {target} {k}\n"));
    }
    let keys: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
    out.push_str(&format!(
        "set-option -t {} {MANAGED_KEYS_OPTION} {}\n",
        tmux_quote(&session_pane_target(name)),
        tmux_quote(&keys.join(" "))
    ));
    out
}

/// Double-quotes a value for tmux's config syntax, where `\`, `"` and `$`
/// (environment expansion) are special and a line ends the command: those
/// get a backslash, and control characters become escapes tmux decodes
/// (`\n`, `\t`, `\r`, or three octal digits).
fn tmux_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' | '"' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

/// Links (or copies) `source` to `dir/kiln`, readable and runnable by
/// anyone who may pass through `dir` (0710, group `owner`'s).
fn stage_binary(
    source: &std::path::Path,
    dir: &std::path::Path,
    owner: Option<(Option<u32>, Option<u32>)>,
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if owner.is_some() { 0o710 } else { 0o700 };
    super::files::ensure_dir(dir, mode, owner)?;
    let target = dir.join("kiln");
    let temp = dir.join(format!(".kiln-{}", uuid::Uuid::new_v4().simple()));
    if std::fs::hard_link(source, &temp).is_err() {
        std::fs::copy(source, &temp)?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&temp, &target)?;
    Ok(target)
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
    fn tmux_quoting_escapes_what_tmux_config_syntax_interprets() {
        assert_eq!(tmux_quote(""), "\"\"");
        assert_eq!(
            tmux_quote("a\"b\\c$HOME'd #{e} ;"),
            "\"a\\\"b\\\\c\\$HOME'd #{e} ;\""
        );
        assert_eq!(
            tmux_quote("x\ny\tz\r\u{1}\u{7f}"),
            "\"x\\ny\\tz\\r\\001\\177\""
        );
    }

    #[test]
    fn tmux_env_text_sets_removes_then_records_keys() {
        let text = render_tmux_env("s", &[("A", "v")], &["OLD"]);
        assert_eq!(
            text,
            "set-environment -t \"=s\" A \"v\"\n\
             set-environment -u -t \"=s\" OLD\n\
             set-option -t \"=s:\" @kiln_env_keys \"A\"\n"
        );
    }

    #[test]
    fn the_session_command_holds_no_value_and_quotes_the_program() {
        assert_eq!(
            session_command("it's"),
            "exec /bin/sh -c '. ./.kiln-env && exec \"${SHELL:-/bin/sh}\" -c \"$0\"' 'it'\\''s'"
        );
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
