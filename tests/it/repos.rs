//! Projects that start from a git repository (issue 19, part 2) and their
//! git state (part 3), through exec over a real SSH connection, the real
//! reconcile loop and the local driver, cloning from a real `git daemon` on
//! loopback (allowed by `git.allow_private_hosts`, which the test server
//! turns on).

use kiln::model::ProjectStatus;

use crate::support::git::{GitServer, git};
use crate::support::ssh::{Client, Server};

use crate::support::sandboxes::{signed_in, status_becomes, working_dir};

async fn git_status_json(c: &Client, project: &str) -> serde_json::Value {
    let r = c.exec(&format!("git {project} status --json"), b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    serde_json::from_str(&r.stdout).expect("json")
}

#[tokio::test]
async fn a_project_starts_with_its_repository_cloned_on_an_existing_branch() {
    let repos = GitServer::start().await;
    let url = repos.repository("app");
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;

    let r = c
        .exec(&format!("create app --repo {url} --branch feature"), b"")
        .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "app", ProjectStatus::Running).await;

    let dir = working_dir(&server, alice, "app").await;
    assert_eq!(
        std::fs::read_to_string(dir.join("feature.txt")).unwrap(),
        "on feature\n"
    );
    assert_eq!(
        git(&dir, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "feature"
    );
    // The token helper and the safety options are never left behind.
    let config = std::fs::read_to_string(dir.join(".git/config")).unwrap();
    assert!(!config.contains("credential"), "{config}");

    let state = git_status_json(&c, "app").await;
    assert_eq!(state["repository"], true, "{state}");
    assert_eq!(state["branch"], "feature", "{state}");
    assert_eq!(state["upstream"], "origin/feature", "{state}");
    assert_eq!(state["changed"], 0, "{state}");
    assert_eq!(
        (state["ahead"].clone(), state["behind"].clone()),
        (0.into(), 0.into())
    );

    let r = c.exec("project app", b"").await;
    assert!(
        r.stdout.contains(&format!("repository   {url} on feature")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_missing_branch_is_created_from_the_default_branch() {
    let repos = GitServer::start().await;
    let url = repos.repository("app");
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;

    let r = c
        .exec(
            &format!("create app --repo {url} --branch kiln/new-work"),
            b"",
        )
        .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "app", ProjectStatus::Running).await;

    let dir = working_dir(&server, alice, "app").await;
    assert_eq!(
        git(&dir, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "kiln/new-work"
    );
    assert_eq!(
        git(&dir, &["rev-parse", "HEAD"]),
        git(&dir, &["rev-parse", "origin/main"]),
        "the new branch starts where the default branch is"
    );
    assert!(!dir.join("feature.txt").exists());
    let r = c.exec("git app status", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout.trim(), "kiln/new-work (no upstream), clean");
}

#[tokio::test]
async fn a_missing_repository_is_an_error_carrying_gits_message() {
    let repos = GitServer::start().await;
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;

    let url = repos.url("nowhere");
    let r = c.exec(&format!("create app --repo {url}"), b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let error = status_becomes(&server, alice, "app", ProjectStatus::Error)
        .await
        .expect("a reason");
    assert!(error.contains("git clone"), "{error}");
    assert!(error.contains("fatal"), "git's own message: {error}");
    assert!(error.contains("nowhere.git"), "{error}");
    // Not a silent empty sandbox: nothing runs in it.
    let r = c.exec("project app", b"").await;
    assert!(r.stdout.contains("fatal"), "{r:?}");
}

#[tokio::test]
async fn file_urls_bare_paths_and_ext_transports_are_refused_and_nothing_is_written() {
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;
    let cases = [
        ("file:///etc", "file://"),
        ("/srv/repo.git", "local path"),
        ("./repo", "local path"),
        ("ext::sh", "ext::"),
    ];
    for (url, says) in cases {
        let r = c.exec(&format!("create app --repo '{url}'"), b"").await;
        assert_eq!(r.code, Some(1), "{url}: {r:?}");
        assert!(r.stderr.contains(says), "{url}: {r:?}");
    }
    let r = c.exec("create app --branch main", b"").await;
    assert_ne!(r.code, Some(0), "a branch alone: {r:?}");
    assert!(
        server.store.list_projects(alice).await.unwrap().is_empty(),
        "nothing was recorded"
    );
    let sandboxes = server.local_dir.as_ref().unwrap().join("sandboxes");
    let written = std::fs::read_dir(&sandboxes).map_or(0, |d| d.count());
    assert_eq!(
        written,
        0,
        "nothing was written under {}",
        sandboxes.display()
    );
}

#[tokio::test]
async fn a_private_host_is_refused_unless_the_operator_allows_it() {
    let repos = GitServer::start().await;
    let url = repos.repository("app");
    // The default policy: loopback is private.
    let server = Server::start().await;
    let (alice, c) = signed_in(&server, "alice").await;
    let r = c.exec(&format!("create app --repo {url}"), b"").await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("git.allow_private_hosts"), "{r:?}");
    assert!(server.store.list_projects(alice).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_restart_keeps_uncommitted_changes_and_never_clones_again() {
    let repos = GitServer::start().await;
    let url = repos.repository("app");
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;

    let r = c.exec(&format!("create app --repo {url}"), b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "app", ProjectStatus::Running).await;
    let dir = working_dir(&server, alice, "app").await;
    std::fs::write(dir.join("README.md"), "changed, not committed\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "new, untracked\n").unwrap();
    let state = git_status_json(&c, "app").await;
    assert_eq!(state["changed"], 2, "{state}");

    let r = c.exec("stop app", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "app", ProjectStatus::Stopped).await;
    let r = c.exec("start app", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "app", ProjectStatus::Running).await;

    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        "changed, not committed\n"
    );
    assert!(dir.join("notes.txt").exists());
    let state = git_status_json(&c, "app").await;
    assert_eq!(state["branch"], "main", "{state}");
    assert_eq!(state["changed"], 2, "{state}");
}

#[tokio::test]
async fn another_tenants_project_has_no_git_state_to_read() {
    let repos = GitServer::start().await;
    let url = repos.repository("app");
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;
    let (_, mallory) = signed_in(&server, "mallory").await;
    let r = c.exec(&format!("create app --repo {url}"), b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "app", ProjectStatus::Running).await;

    let theirs = mallory.exec("git app status", b"").await;
    let missing = mallory.exec("git nothing-here status", b"").await;
    assert_eq!(theirs.code, Some(1), "{theirs:?}");
    assert_eq!(
        theirs.stderr.replace("app", "X"),
        missing.stderr.replace("nothing-here", "X"),
        "another tenant's project reads exactly like a missing one"
    );
}
