//! Projects that start from a git repository (issue 19, part 2) and their
//! git state (part 3), through exec over a real SSH connection, the real
//! reconcile loop and the local driver, cloning from a real `git daemon` on
//! loopback (allowed by `git.allow_private_hosts`, which the test server
//! turns on).

use kiln::model::ProjectStatus;

use crate::support::git::{GitServer, git};
use crate::support::git_http::PrivateGitServer;
use crate::support::ssh::{Client, Server, line_with};

use crate::support::sandboxes::{signed_in, status_becomes, working_dir};

/// Every regular file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                todo.push(e.path());
            } else if kind.is_file()
                && std::fs::read(e.path())
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(e.path());
            }
        }
    }
    found
}

/// The processes on this host whose environment holds `needle`.
fn environments_containing(needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.windows(needle.len()).any(|w| w == needle)
        {
            let args = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            found.push(format!("{pid}: {}", String::from_utf8_lossy(&args)));
        }
    }
    found
}

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
async fn a_failed_clone_is_a_clone_failed_notification_for_its_owner_only() {
    let repos = GitServer::start().await;
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;
    let (_, bob) = signed_in(&server, "bob").await;

    let url = repos.url("nowhere");
    let r = c.exec(&format!("create app --repo {url}"), b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let error = status_becomes(&server, alice, "app", ProjectStatus::Error)
        .await
        .expect("a reason");

    // On the dashboard: counted in the header, N lists it by its kind.
    let screen = c.shell(120, 30).await;
    screen
        .wait_until("the unread count", |t| t.contains("✉ 1 unread (N)"))
        .await;
    screen.send(b"N").await;
    screen
        .wait_until("the notification", |t| {
            line_with(t, "app")
                .is_some_and(|l| l.contains("clone failed") && l.contains("nowhere.git"))
        })
        .await;

    // Over exec (read now, so --all).
    let r = c.exec("notifications --all --json", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let list: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 1, "one notification for one failure: {list:?}");
    assert_eq!(list[0]["kind"], "clone_failed", "{list:?}");
    assert_eq!(list[0]["project"], "app", "{list:?}");
    let message = list[0]["message"].as_str().expect("a message");
    assert!(message.contains("fatal"), "git's own message: {message}");
    assert!(message.contains("nowhere.git"), "{message}");
    assert_eq!(
        message, error,
        "the notification says what the project says"
    );

    // The text listing names the kind too.
    let r = c.exec("notifications --all", b"").await;
    assert!(r.stdout.contains("clone_failed"), "{r:?}");

    let theirs = bob.exec("notifications --all --json", b"").await;
    assert_eq!(theirs.code, Some(0), "{theirs:?}");
    assert_eq!(theirs.stdout.trim(), "[]", "another user sees none");
}

#[tokio::test]
async fn a_private_repository_clones_only_with_the_users_token_which_is_never_shown_or_kept() {
    let token = format!("kiln-token-{}", uuid::Uuid::new_v4().simple());
    let repos = PrivateGitServer::start(&token).await;
    let url = repos.repository("private");
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;

    // Without the user's token: git is refused, and says so.
    let r = c
        .exec(&format!("create app --repo {url} --branch feature"), b"")
        .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let error = status_becomes(&server, alice, "app", ProjectStatus::Error)
        .await
        .expect("a reason");
    assert!(error.contains("git clone"), "{error}");
    assert!(error.contains("fatal"), "git's own message: {error}");
    assert!(
        error.contains("Username"),
        "git asked for credentials: {error}"
    );
    assert!(repos.seen().refused > 0, "{:?}", repos.seen());
    assert_eq!(repos.seen().served, 0, "{:?}", repos.seen());

    // With it (set as the settings screen sets it), a retry clones.
    server
        .store
        .set_user_config(alice, kiln::store::user_configs::GIT_TOKEN, &token, true)
        .await
        .unwrap();
    let r = c.exec("retry app", b"").await;
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

    // The token is nowhere it could be read back.
    let seen = repos.seen();
    assert!(seen.served > 0, "{seen:?}");
    assert!(!seen.process_lists.is_empty(), "{seen:?}");
    for ps in &seen.process_lists {
        assert!(
            ps.contains("remote-http"),
            "taken while git's HTTP client ran: {ps}"
        );
        assert!(!ps.contains(&token), "the token in the process list: {ps}");
    }
    let config = std::fs::read_to_string(dir.join(".git/config")).unwrap();
    assert!(!config.contains(&token), "{config}");
    assert!(!config.contains("credential"), "{config}");
    let on_disk = files_containing(server.local_dir.as_ref().unwrap(), token.as_bytes());
    assert!(on_disk.is_empty(), "the token written to {on_disk:?}");
    let environments = environments_containing(token.as_bytes());
    assert!(
        environments.is_empty(),
        "the token in the environment of {environments:?}"
    );
    for command in [
        "projects --json",
        "project app --json",
        "env app",
        "env app --json",
        "events app --json",
        "git app status --json",
    ] {
        let r = c.exec(command, b"").await;
        assert_eq!(r.code, Some(0), "{command}: {r:?}");
        assert!(
            !r.stdout.contains(&token) && !r.stderr.contains(&token),
            "{command} shows the token: {r:?}"
        );
    }
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
