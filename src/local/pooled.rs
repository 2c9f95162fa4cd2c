//! The warm pool of local sandboxes (issue 23): sandboxes started ahead of
//! any project, so a new project's sandbox is RUNNING as soon as its
//! default session opens, without waiting for bubblewrap, its tmux server
//! and slirp4netns (most of a start).
//!
//! **Names and paths.** A confined sandbox sees its working directory at the
//! same path as the host does (`{data}/sandboxes/{name}`, bound by
//! bubblewrap), its hostname is its name, and Kiln's tmux clients reach its
//! server at `{data}/run/{name}/tmux.sock`. None of that can change while
//! the sandbox runs: renaming the host directory after the start would
//! leave the inside bound to the old path, so `new-session -c`, `HOME` and
//! every path Kiln hands the sandbox would name a directory it cannot see.
//! So a pooled sandbox is started under a name it keeps for life
//! (`sb-{13 random}`, see `model::naming::pooled_sandbox_name`), and a claim
//! gives that name to the project's sandbox row (`store::pool`). Adoption is
//! then the ordinary start: the server was checked by the keeper
//! (below), so the start only opens the project's default session, with the
//! project's command, environment and `DATABASE_URL` (through private
//! files, never argv), in one `tmux` client run; a repository is cloned
//! into the still empty working directory first, as for any sandbox. A
//! claimed sandbox whose server has died meanwhile is simply started again.
//!
//! **Nothing from before.** A pooled sandbox holds no tenant data: it is
//! made with an empty working directory and a server with no session (so no
//! history), and the keeper's health check hands out only those still so
//! (server answering, no session, empty working directory); any other is
//! ended and removed, never claimed. Its first start after a claim
//! (`adopt`) checks again, for what someone on the host may have done since
//! the last check: a file in the working directory is removed before the
//! project's session opens, and a session that is not the project's (listed
//! by the same `tmux` run that opens the project's) ends the server, and
//! the start is made again on a fresh one, before the sandbox is reported
//! RUNNING.

use std::collections::HashMap;

use async_trait::async_trait;

use super::LocalSandboxes;
use super::sandbox::ServerKnown;
use super::tmux::TmuxError;
use super::validate_resource_name;
use crate::driver::{
    DriverError, DriverResult, Observed, ResourceRef, SandboxPoolDriver, SandboxSpec,
};

#[async_trait]
impl SandboxPoolDriver for LocalSandboxes {
    async fn prepare_pooled(&self, r: &ResourceRef) -> DriverResult<()> {
        validate_resource_name(&r.resource_name)?;
        self.start_server(&r.resource_name).await
    }

    async fn observe_pooled(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let mut out = HashMap::with_capacity(rs.len());
        for r in rs {
            let observed = match validate_resource_name(&r.resource_name) {
                Err(_) => Observed::Absent,
                Ok(()) => self.pooled_health(r).await,
            };
            out.insert(r.resource_name.clone(), observed);
        }
        Ok(out)
    }
}

impl LocalSandboxes {
    /// `Running` when the pooled sandbox is as it was made: see
    /// [`SandboxPoolDriver::observe_pooled`].
    async fn pooled_health(&self, r: &ResourceRef) -> Observed {
        let tmux = self.tmux(&r.resource_name);
        if !tokio::fs::try_exists(tmux.socket()).await.unwrap_or(false) {
            return Observed::Absent;
        }
        let args = ["list-sessions", "-F", "#{session_name}"].map(String::from);
        let sessions = match tmux.run(&args).await {
            Ok(out) => out,
            Err(e) if e.is_no_server() || e.is_server_gone() => {
                return Observed::Failed("its tmux server is gone".into());
            }
            Err(e) => return Observed::Failed(format!("its tmux server does not answer: {e}")),
        };
        if let Some(session) = sessions.lines().find(|l| !l.is_empty()) {
            return Observed::Failed(format!("it has a session ({session:?})"));
        }
        match first_entry(&self.sandbox_dir(r)).await {
            Ok(None) => Observed::Running,
            Ok(Some(entry)) => {
                Observed::Failed(format!("its working directory is not empty ({entry:?})"))
            }
            Err(e) => Observed::Failed(format!("its working directory: {e}")),
        }
    }
}

impl LocalSandboxes {
    /// Before a claimed pooled sandbox's first start (see the module
    /// comment): a file someone put in its working directory since its
    /// health check ends its server and is removed. Its sessions are
    /// listed by the very `tmux` run that opens the project's
    /// ([`ServerKnown::Pooled`]), which saves a run of its own on every
    /// claim. Says what the start may take its server to be.
    pub(super) async fn clear_for_adoption(&self, spec: &SandboxSpec) -> DriverResult<ServerKnown> {
        let name = &spec.resource.resource_name;
        let dir = self.sandbox_dir(&spec.resource);
        // Its working directory gone since its health check (removed by
        // hand, a cleaned-up /tmp): a server still running there has the
        // old one bound, and nothing could be written for the session.
        // Started afresh, as any sandbox, which makes the directories.
        if matches!(tokio::fs::try_exists(&dir).await, Ok(false)) {
            tracing::warn!(
                sandbox = %name,
                "a claimed pooled sandbox lost its working directory after its health check: \
                 starting it afresh"
            );
            self.stop_server(name).await?;
            return Ok(ServerKnown::Unknown);
        }
        // A sandbox with a repository (or a setup script) has its working
        // directory emptied before its clone, and then holds the clone: its
        // files are the project's, whichever attempt this is.
        if spec.repo.is_some() || spec.setup.is_some() {
            return Ok(ServerKnown::Pooled);
        }
        let strays = stray_entries(&dir).await.map_err(|e| {
            DriverError::transient(format!(
                "sandbox {name}: cannot read {}: {e}",
                dir.display()
            ))
        })?;
        if strays.is_empty() {
            return Ok(ServerKnown::Pooled);
        }
        // Files, and the project's session already open: an earlier
        // attempt adopted it (its outcome was not written), and the files
        // are the project's own. Nothing is cleared.
        let args = ["list-sessions", "-F", "#{session_name}"].map(String::from);
        match self.tmux(name).run(&args).await {
            Ok(listed) if listed.lines().any(|l| l == name.as_str()) => {
                return Ok(ServerKnown::Pooled);
            }
            Ok(_) => {}
            // No server (or no tmux: the start says so): started afresh.
            Err(e) if e.is_no_server() || matches!(e, TmuxError::NotInstalled { .. }) => {}
            Err(e) => return Err(e.into_driver_error(&format!("sandbox {name}"))),
        }
        tracing::warn!(
            sandbox = %name,
            ?strays,
            "a claimed pooled sandbox was touched after its health check: starting it afresh"
        );
        self.stop_server(name).await?;
        super::git::empty_dir(&dir).await.map_err(|e| {
            DriverError::transient(format!(
                "sandbox {name}: cannot empty {}: {e}",
                dir.display()
            ))
        })?;
        Ok(ServerKnown::Unknown)
    }
}

/// The entries of `dir` that are not Kiln's own files for the sandbox
/// (`.kiln-…`, written by an earlier attempt of this start).
async fn stray_entries(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut strays = Vec::new();
    while let Some(e) = entries.next_entry().await? {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".kiln-") {
            strays.push(name);
        }
    }
    Ok(strays)
}

/// The name of some entry of `dir` (`None`: it is empty).
async fn first_entry(dir: &std::path::Path) -> std::io::Result<Option<String>> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    Ok(entries
        .next_entry()
        .await?
        .map(|e| e.file_name().to_string_lossy().into_owned()))
}
