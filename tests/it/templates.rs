//! Templates (issue 19, part 1): the built-in ones, a broken file refused
//! at start, a user's own invisible to others, and a project created from a
//! template running its command with its variables, its repository cloned
//! and its setup script run once; a failing setup script is an ERROR with
//! its last lines. Through exec over SSH, the real reconcile loop and the
//! local driver.

use std::time::Duration;

use kiln::model::ProjectStatus;

use crate::support::eventually;
use crate::support::git::GitServer;
use crate::support::ssh::Server;

use crate::support::sandboxes::{signed_in, status_becomes, working_dir};

async fn add_global(server: &Server, text: &str) {
    kiln::console::Console::new(server.store.clone(), None, None)
        .operator()
        .add_template(text)
        .await
        .expect("a valid template");
}

#[tokio::test]
async fn the_builtin_templates_are_offered_to_everyone() {
    let server = Server::start().await;
    let (_, c) = signed_in(&server, "alice").await;
    let r = c.exec("templates --json", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["scope"] == "builtin")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for want in ["shell", "claude", "python", "node"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let r = c.exec("templates show python", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("PYTHONUNBUFFERED"), "{r:?}");
}

#[tokio::test]
async fn a_broken_template_file_stops_kiln_at_start_naming_file_and_field() {
    let dir = std::path::PathBuf::from(format!(
        "/tmp/kt-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("good.toml"),
        "name = \"good\"\ndescription = \"fine\"\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("broken.toml"),
        "name = \"broken\"\n[kubernetes]\nmemory = \"lots\"\n",
    )
    .unwrap();
    let config = dir.join("kiln.toml");
    std::fs::write(
        &config,
        format!("[templates]\ndir = \"{}\"\n", templates.display()),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--data-dir")
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("KILN_CONFIG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("kiln stops at once")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("broken.toml"), "the file: {stderr}");
    assert!(stderr.contains("kubernetes.memory"), "the field: {stderr}");
}

#[tokio::test]
async fn a_users_template_is_invisible_to_another_user() {
    let server = Server::start().await;
    let (alice, a) = signed_in(&server, "alice").await;
    let (_, b) = signed_in(&server, "bob").await;
    server
        .store
        .create_project(alice, "app", "alice's app", "alice")
        .await
        .unwrap();
    server
        .store
        .set_env(alice, "app", "MODE", "fast", false)
        .await
        .unwrap();
    server
        .store
        .set_env(alice, "app", "TOKEN", "s3cret-value", true)
        .await
        .unwrap();

    let r = a.exec("templates save mine --from app", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = a.exec("templates show mine", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("MODE = \"fast\""), "{r:?}");
    assert!(r.stdout.contains("TOKEN = { secret = true }"), "{r:?}");
    assert!(!r.stdout.contains("s3cret-value"), "no secret value: {r:?}");
    let r = a.exec("templates --json", b"").await;
    assert!(r.stdout.contains("\"mine\""), "{r:?}");

    let r = b.exec("templates --json", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!r.stdout.contains("mine"), "{r:?}");
    let theirs = b.exec("templates show mine", b"").await;
    let missing = b.exec("templates show nothing", b"").await;
    assert_eq!(theirs.code, Some(1), "{theirs:?}");
    assert_eq!(
        theirs.stderr.replace("mine", "X"),
        missing.stderr.replace("nothing", "X"),
        "another user's template reads like a missing one"
    );
    let r = b.exec("create x --template mine", b"").await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("no such template"), "{r:?}");
    let r = b.exec("templates delete mine", b"").await;
    assert_eq!(r.code, Some(1), "{r:?}");
    let r = a.exec("templates show mine", b"").await;
    assert_eq!(r.code, Some(0), "bob could not delete it: {r:?}");
}

#[tokio::test]
async fn create_with_a_template_applies_its_command_env_repository_and_setup() {
    let repos = GitServer::start().await;
    let url = repos.repository("app");
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;
    add_global(
        &server,
        &format!(
            r#"
name = "team-app"
description = "The team's app"
command = "sh -c 'echo $GREETING > command-ran; exec sh'"
setup = "echo setting up; echo done > setup-ran; echo \"$GREETING\" > setup-env; test -n \"$DATABASE_URL\" && echo has-db >> setup-env"
[repo]
url = "{url}"
branch = "feature"
[env]
GREETING = "hello from the template"
"#
        ),
    )
    .await;

    let r = c.exec("create app --template team-app", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "app", ProjectStatus::Running).await;
    let dir = working_dir(&server, alice, "app").await;

    assert!(
        dir.join("feature.txt").exists(),
        "the template's repository and branch"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("setup-ran")).unwrap(),
        "done\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("setup-env")).unwrap(),
        "hello from the template\nhas-db\n",
        "the script runs with the project's environment"
    );
    let log = std::fs::read_to_string(dir.join(".kiln-setup.log")).unwrap();
    assert!(log.contains("setting up"), "{log}");
    let ran = eventually("the session's command", Duration::from_secs(30), || {
        let path = dir.join("command-ran");
        async move { std::fs::read_to_string(path).ok() }
    })
    .await;
    assert_eq!(ran, "hello from the template\n");

    let r = c.exec("env app --json", b"").await;
    assert!(r.stdout.contains("GREETING"), "{r:?}");
    let r = c.exec("project app --json", b"").await;
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["description"], "The team's app", "{v}");
    assert_eq!(v["git_branch"], "feature", "{v}");
    // The working tree holds nothing of Kiln's as a change.
    let r = c.exec("git app status --json", b"").await;
    let state: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        state["changed"], 3,
        "setup-ran, setup-env and command-ran only: {state}"
    );
}

#[tokio::test]
async fn a_failing_setup_script_is_an_error_with_its_last_lines() {
    let server = Server::start_local_git().await;
    let (alice, c) = signed_in(&server, "alice").await;
    add_global(
        &server,
        "name = \"fails\"\nsetup = \"echo about to fail; echo for a reason >&2; exit 3\"\n",
    )
    .await;
    let r = c.exec("create app --template fails", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let error = status_becomes(&server, alice, "app", ProjectStatus::Error)
        .await
        .expect("a reason");
    assert!(error.contains("setup script failed"), "{error}");
    assert!(
        error.contains("about to fail") && error.contains("for a reason"),
        "{error}"
    ); // Its owner is told by name, with the same lines.
    let r = c.exec("notifications --json", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let list: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["kind"], "setup_failed", "{list}");
    assert_eq!(list[0]["message"], error.as_str(), "{list}");
}
