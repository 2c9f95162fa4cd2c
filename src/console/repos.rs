//! Projects that start from a git repository: the checks a repository URL
//! and branch pass before anything is recorded (the same for the
//! dashboard, exec and the operator CLI), and reading a sandbox's git state.

use std::time::Duration;

use crate::model::git::{self, GitState, RepoUrl};
use crate::model::naming::printable;
use crate::store::projects::{ProjectSource, ProjectView};

use super::{Action, ConsoleError, ConsoleResult, UserConsole};

/// How long resolving a repository's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long reading a sandbox's git state may take before the caller is
/// told to try again (the dashboard asks again on its own).
const GIT_STATE_WAIT: Duration = Duration::from_secs(10);

/// Which repositories projects may start from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepoPolicy {
    /// `git.allow_private_hosts`: also hosts resolving to loopback,
    /// link-local or private addresses (a git server on the operator's own
    /// network; tests).
    pub allow_private_hosts: bool,
}

/// What a new project is created with besides its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewProject {
    pub description: String,
    /// A team's project (`TEAM/NAME`) instead of the actor's own.
    pub team: Option<String>,
    /// The repository its sandbox starts from (as typed).
    pub repo: Option<String>,
    /// The branch to check out (created from the default branch when
    /// missing); only with `repo`.
    pub branch: Option<String>,
    /// A template to start from: its description (unless one is given),
    /// session command, variables, repository (unless `repo` is given) and
    /// setup script.
    pub template: Option<String>,
}

impl UserConsole {
    /// Creates a project as [`UserConsole::create`] does, its sandbox
    /// starting from `new.repo` on `new.branch` when given. The URL and
    /// branch are checked first; a refused one records nothing.
    pub async fn create_from(&self, name: &str, new: &NewProject) -> ConsoleResult<ProjectView> {
        let team = new.team.as_deref();
        let action = Action::CreateProject { name, team };
        self.gated_in(action, |s| async move {
            super::projects::check_new_name(name)?;
            let template = match new.template.as_deref().map(str::trim) {
                Some(t) if !t.is_empty() => Some(self.find_template(t).await?.1),
                _ => None,
            };
            let new = &with_template(new, template.as_ref());
            let mut source = check_source(self.console.repos, new).await?;
            if let Some(t) = &template {
                source.template = Some(t.name.clone());
                source.session_command = t.command.clone();
                source.setup_script = t.setup.clone();
                source.sizing = t.kubernetes.clone().unwrap_or_default();
                source.env = t
                    .env
                    .iter()
                    .filter_map(|v| Some((v.key.clone(), v.value.clone()?)))
                    .collect();
            }
            let p = self
                .store()
                .create_project_from(
                    s.owner,
                    name,
                    &new.description,
                    &source,
                    self.actor.event_name(),
                )
                .await?;
            Ok(s.present(self.store().find_project(s.owner, &p.slug).await?))
        })
        .await
    }

    /// The git state of a project's sandbox: its branch, changed files and
    /// ahead/behind its upstream. `None` when its working directory is not
    /// a repository (yet: a clone may still be running).
    pub async fn git_state(&self, name: &str) -> ConsoleResult<Option<GitState>> {
        self.gated_in(Action::ShowProject { project: name }, |s| async move {
            let view = self.store().find_project(s.owner, &s.name).await?;
            let Some((r, _)) = super::sessions::sandbox_ref(&view, s.owner) else {
                return Ok(None);
            };
            let Some(attach) = &self.console.sessions else {
                return Err(ConsoleError::unavailable(
                    "sandboxes cannot be reached from this server",
                ));
            };
            match tokio::time::timeout(GIT_STATE_WAIT, attach.git_state(&r)).await {
                Ok(Ok(state)) => Ok(state),
                Ok(Err(e)) => Err(ConsoleError::driver("cannot read the git state", e)),
                Err(_) => Err(ConsoleError::unavailable(
                    "reading the git state took too long; try again in a moment",
                )),
            }
        })
        .await
    }
}

/// What is asked for, with the template's repository, branch and
/// description where the request names none.
fn with_template(
    new: &NewProject,
    template: Option<&crate::model::template::Template>,
) -> NewProject {
    let mut out = new.clone();
    let Some(t) = template else { return out };
    let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    if !given(&new.repo) {
        out.repo = t.repo.clone();
        if !given(&new.branch) {
            out.branch = t.branch.clone();
        }
    }
    if new.description.trim().is_empty() {
        out.description = t.description.clone();
    }
    out
}

/// The repository and branch a project may start from, checked: an
/// accepted transport, a valid branch, and a host that resolves to
/// addresses the policy allows.
pub(crate) async fn check_source(
    policy: RepoPolicy,
    new: &NewProject,
) -> ConsoleResult<ProjectSource> {
    let repo = new.repo.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let branch = new
        .branch
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let Some(repo) = repo else {
        if branch.is_some() {
            return Err(ConsoleError::invalid(
                "branch",
                "a branch needs a repository: give --repo URL too",
            ));
        }
        return Ok(ProjectSource::default());
    };
    let url =
        git::parse_repo_url(repo).map_err(|e| ConsoleError::invalid("repo", e.to_string()))?;
    let branch = branch
        .map(git::check_branch)
        .transpose()
        .map_err(|e| ConsoleError::invalid("branch", e.to_string()))?;
    check_host(policy, &url).await?;
    Ok(ProjectSource {
        git_repo: Some(url.url),
        git_branch: branch,
        ..ProjectSource::default()
    })
}

/// Refuses a host that does not resolve, or resolves to an address the
/// policy forbids (any of them: git may use any).
async fn check_host(policy: RepoPolicy, url: &RepoUrl) -> ConsoleResult<()> {
    let host = printable(&url.host, 100);
    let lookup = tokio::net::lookup_host((url.host.as_str(), url.port_or_default()));
    let addrs: Vec<std::net::SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await
    {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(_)) | Err(_) => Vec::new(),
    };
    if addrs.is_empty() {
        return Err(ConsoleError::invalid(
            "repo",
            format!("the repository host {host} does not resolve; check the URL"),
        ));
    }
    if !policy.allow_private_hosts && addrs.iter().any(|a| git::is_private_address(a.ip())) {
        return Err(ConsoleError::invalid(
            "repo",
            format!(
                "the repository host {host} has a loopback, link-local or private address, \
                 which Kiln does not clone from (the operator can allow it with \
                 git.allow_private_hosts)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(repo: Option<&str>, branch: Option<&str>) -> NewProject {
        NewProject {
            repo: repo.map(Into::into),
            branch: branch.map(Into::into),
            ..NewProject::default()
        }
    }

    #[tokio::test]
    async fn private_hosts_are_refused_unless_allowed() {
        let url = new(Some("git://127.0.0.1:9/r"), Some("main"));
        let e = check_source(RepoPolicy::default(), &url).await.unwrap_err();
        assert!(e.to_string().contains("git.allow_private_hosts"), "{e}");
        let allowed = RepoPolicy {
            allow_private_hosts: true,
        };
        let s = check_source(allowed, &url).await.unwrap();
        assert_eq!(s.git_repo.as_deref(), Some("git://127.0.0.1:9/r"));
        assert_eq!(s.git_branch.as_deref(), Some("main"));
    }

    #[tokio::test]
    async fn a_branch_alone_or_a_bad_one_is_refused() {
        let p = RepoPolicy {
            allow_private_hosts: true,
        };
        let e = check_source(p, &new(None, Some("main"))).await.unwrap_err();
        assert!(
            matches!(
                e,
                ConsoleError::Invalid {
                    field: "branch",
                    ..
                }
            ),
            "{e}"
        );
        let e = check_source(p, &new(Some("git://127.0.0.1/r"), Some("a..b")))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ConsoleError::Invalid {
                    field: "branch",
                    ..
                }
            ),
            "{e}"
        );
        let e = check_source(p, &new(Some("file:///srv/r"), None))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("file://"), "{e}");
        assert_eq!(
            check_source(p, &new(Some("  "), None)).await.unwrap(),
            ProjectSource::default()
        );
    }
}
