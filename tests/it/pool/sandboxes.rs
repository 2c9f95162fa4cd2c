//! The warm pool of local sandboxes (issue 23) over real SSH clients, real
//! confined sandboxes and real databases on the test server: concurrent
//! creates claim each pooled sandbox once and adopt it under its own name,
//! a claimed sandbox holds only what its project put there (and a clone of
//! its repository), and a pooled sandbox broken by hand is replaced and
//! never handed to a tenant.

use std::collections::HashSet;
use std::time::Duration;

use kiln::driver::ResourceRef;
use kiln::model::ProjectStatus;
use kiln::model::pool::PoolKind;

use super::{all_running, create_all_at_once};
use crate::console_fronts::cli;
use crate::support::eventually;
use crate::support::git::GitServer;
use crate::support::sandboxes::{signed_in, status_becomes, working_dir};
use crate::support::ssh::Server;

async fn ready_sandboxes(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server
        .store
        .ready_pooled(PoolKind::Sandbox)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    names.sort();
    names
}

/// A server whose sandbox pool holds one ready sandbox, and its name.
async fn one_pooled_sandbox() -> (Server, String) {
    let server = Server::start_sandbox_pooled(1).await;
    server.fill_pool().await;
    let [pooled] = <[String; 1]>::try_from(ready_sandboxes(&server).await).unwrap();
    (server, pooled)
}

/// Alice creates `shop` over SSH; it runs, on the pooled sandbox `pooled`.
async fn shop_from_the_pool(
    server: &Server,
    pooled: &str,
) -> (uuid::Uuid, crate::support::ssh::Client) {
    let (alice, c) = signed_in(server, "alice").await;
    let r = c.exec("create shop", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(server, alice, "shop", ProjectStatus::Running).await;
    assert_eq!(
        project_sandboxes(server).await,
        vec![(pooled.to_string(), true)]
    );
    (alice, c)
}

/// Every project sandbox: its name and whether it was claimed from the pool.
async fn project_sandboxes(server: &Server) -> Vec<(String, bool)> {
    sqlx::query_as("SELECT resource_name, pooled FROM sandboxes ORDER BY resource_name")
        .fetch_all(server.store.pool())
        .await
        .unwrap()
}

fn resource(name: &str) -> ResourceRef {
    ResourceRef {
        resource_name: name.into(),
        namespace: String::new(),
        project_slug: String::new(),
        owner: uuid::Uuid::nil(),
    }
}

/// The sessions on sandbox `name`'s tmux server (none: no server).
fn sessions(server: &Server, name: &str) -> Vec<String> {
    let out = server
        .local
        .as_ref()
        .unwrap()
        .tmux_command(name)
        .args(["list-sessions", "-F", "#{session_name}"])
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// The names in sandbox `name`'s working directory.
fn entries(server: &Server, name: &str) -> Vec<String> {
    let dir = server.local.as_ref().unwrap().sandbox_dir(&resource(name));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_against_a_sandbox_pool_claim_each_pooled_sandbox_once() {
    // Three tenants with three SSH clients each: a create locks its owner,
    // so creates of different owners race for the pool.
    const TENANTS: usize = 3;
    const PER_TENANT: usize = 3;
    const CREATES: usize = TENANTS * PER_TENANT;
    const POOL: usize = 3;
    let server = Server::start_sandbox_pooled(POOL as u32).await;
    server.fill_pool().await;
    let pooled = ready_sandboxes(&server).await;
    assert_eq!(pooled.len(), POOL, "{pooled:?}");
    for name in &pooled {
        // Made as promised: a server with no session, an empty directory.
        assert!(sessions(&server, name).is_empty(), "{name}");
        assert!(entries(&server, name).is_empty(), "{name}");
    }
    create_all_at_once(&server, TENANTS, PER_TENANT).await;

    let sandboxes = project_sandboxes(&server).await;
    assert_eq!(sandboxes.len(), CREATES);
    let names: HashSet<&String> = sandboxes.iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), CREATES, "every project has its own sandbox");
    let claimed: HashSet<&String> = sandboxes
        .iter()
        .filter(|(_, pooled)| *pooled)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        claimed,
        pooled.iter().collect::<HashSet<_>>(),
        "exactly the pool's sandboxes are claimed, each once"
    );
    for (name, was_pooled) in &sandboxes {
        // Only the project's own session, and in its working directory
        // only what Kiln put there for the project: its environment file
        // (and, for a moment, the file of tmux commands an environment
        // update in flight reads, as its DATABASE_URL arrives).
        assert_eq!(sessions(&server, name), vec![name.clone()], "{name}");
        eventually(
            &format!("{name} (pooled: {was_pooled}) holding only .kiln-env"),
            Duration::from_secs(30),
            || async {
                let left = entries(&server, name);
                let kilns = left
                    .iter()
                    .all(|e| e == ".kiln-env" || e.starts_with(".kiln-tmux-env-"));
                assert!(kilns, "{name}: {left:?}");
                (left == [".kiln-env"]).then_some(())
            },
        )
        .await;
    }
    // A claimed sandbox's session runs the project's command with its
    // environment: the shell answers with the project's name.
    let (project, name): (String, String) = sqlx::query_as(
        "SELECT p.name, s.resource_name FROM sandboxes s JOIN projects p ON p.id = s.project_id
          WHERE s.pooled ORDER BY s.resource_name LIMIT 1",
    )
    .fetch_one(server.store.pool())
    .await
    .unwrap();
    let local = server.local.as_ref().unwrap();
    let pane = format!("={name}:");
    let typed = local
        .tmux_command(&name)
        .args([
            "send-keys",
            "-t",
            &pane,
            "echo \"[$PROJECT_NAME]\"",
            "Enter",
        ])
        .output()
        .unwrap();
    assert!(typed.status.success(), "{typed:?}");
    let want = format!("[{project}]");
    eventually(
        "the project's name on screen",
        Duration::from_secs(20),
        || async {
            let out = local
                .tmux_command(&name)
                .args(["capture-pane", "-p", "-t", &pane])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == want)
                .then_some(())
        },
    )
    .await;

    // The keeper, running as `kiln serve` runs it, refills the pool with
    // new sandboxes.
    server.keep_pool();
    let refilled = eventually(
        "the sandbox pool refilled",
        Duration::from_secs(120),
        || async {
            let ready = ready_sandboxes(&server).await;
            (ready.len() == POOL).then_some(ready)
        },
    )
    .await;
    for name in &refilled {
        assert!(!names.contains(name), "{name} is a project's");
        assert!(sessions(&server, name).is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_sandbox_whose_tmux_server_is_killed_is_replaced_and_never_claimed() {
    let server = Server::start_sandbox_pooled(2).await;
    server.fill_pool().await;
    let first = ready_sandboxes(&server).await;
    assert_eq!(first.len(), 2);
    let killed = first[0].clone();
    let local = server.local.as_ref().unwrap();
    let out = local
        .tmux_command(&killed)
        .arg("kill-server")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The keeper's next passes set it aside, remove it and make another.
    server.fill_pool().await;
    let replaced = ready_sandboxes(&server).await;
    assert_eq!(replaced.len(), 2, "{replaced:?}");
    assert!(!replaced.contains(&killed), "{replaced:?}");
    assert!(replaced.contains(&first[1]), "the whole one stays");
    assert!(!local.sandbox_dir(&resource(&killed)).exists());
    assert!(!local.socket_path(&killed).exists());
    // `kiln status` shows the pool.
    let (code, out, err) = tokio::task::block_in_place(|| cli(&server, &["status"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sandbox pool: 2 ready, 0 being made, 0 to drop"),
        "{out}"
    );

    let (alice, c) = signed_in(&server, "alice").await;
    for name in ["one", "two", "three"] {
        let r = c.exec(&format!("create {name}"), b"").await;
        assert_eq!(r.code, Some(0), "{r:?}");
    }
    all_running(&server, alice, 3).await;
    let sandboxes = project_sandboxes(&server).await;
    let claimed: Vec<String> = sandboxes
        .iter()
        .filter(|(_, pooled)| *pooled)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(claimed, replaced, "the two whole ones, and only those");
    // The third found the pool empty and was made the ordinary way.
    assert!(
        sandboxes
            .iter()
            .any(|(n, pooled)| !pooled && n.starts_with("three-agentruntime-")),
        "{sandboxes:?}"
    );
    assert!(sandboxes.iter().all(|(n, _)| *n != killed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_sandbox_gets_its_projects_repository_cloned_into_its_working_directory() {
    let repos = GitServer::start().await;
    let url = repos.repository("app");
    let (server, pooled) = one_pooled_sandbox().await;
    let (alice, c) = signed_in(&server, "alice").await;
    let r = c
        .exec(&format!("create app --repo {url} --branch feature"), b"")
        .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "app", ProjectStatus::Running).await;
    assert_eq!(
        project_sandboxes(&server).await,
        vec![(pooled.clone(), true)]
    );
    let dir = working_dir(&server, alice, "app").await;
    assert_eq!(
        std::fs::read_to_string(dir.join("feature.txt")).unwrap(),
        "on feature\n"
    );
    assert_eq!(sessions(&server, &pooled), vec![pooled.clone()]);
    // The session works in the clone, as the sandbox sees it.
    let out = server
        .local
        .as_ref()
        .unwrap()
        .tmux_command(&pooled)
        .args([
            "display-message",
            "-p",
            "-t",
            &format!("={pooled}:"),
            "#{pane_current_path}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dir.to_string_lossy()
    );
}

/// The processes whose argv (what `ps` shows every user) holds a needle.
fn argv_mentioning(needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        // Processes come and go while we look: a vanished one names nothing.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        if needles.iter().any(|n| text.contains(n)) {
            found.push(format!(
                "{}: {}",
                entry.path().display(),
                text.replace('\0', " ")
            ));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_sandbox_gets_its_projects_secrets_and_database_url_never_through_argv() {
    let (server, pooled) = one_pooled_sandbox().await;
    let (alice, _c) = shop_from_the_pool(&server, &pooled).await;
    let token = format!("tok{}", uuid::Uuid::new_v4().simple());
    server
        .store
        .set_env(alice, "shop", "API_SECRET", &token, true)
        .await
        .unwrap();
    let (db_name, sealed): (String, Vec<u8>) =
        sqlx::query_as("SELECT resource_name, password_enc FROM databases")
            .fetch_one(server.store.pool())
            .await
            .unwrap();
    let password = server
        .store
        .key()
        .decrypt_string(
            &sealed,
            &kiln::store::resources::ResourceKind::Database.password_context(&db_name),
        )
        .unwrap();
    let local = server.local.as_ref().unwrap();
    eventually(
        "the secret and DATABASE_URL in the session's environment",
        Duration::from_secs(30),
        || async {
            let out = local
                .tmux_command(&pooled)
                .args(["show-environment", "-t", &format!("={pooled}")])
                .output()
                .ok()?;
            let env = String::from_utf8_lossy(&out.stdout);
            (env.contains(&format!("API_SECRET={token}\n"))
                && env
                    .lines()
                    .any(|l| l.starts_with("DATABASE_URL=") && l.contains(&password)))
            .then_some(())
        },
    )
    .await;
    let leaks = argv_mentioning(&[&token, &password]);
    assert!(leaks.is_empty(), "secrets in argv: {leaks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_resources_live_on_their_own_cluster_claims_no_pooled_sandbox() {
    let server = Server::start_sandbox_pooled(1).await;
    server.fill_pool().await;
    let pooled = ready_sandboxes(&server).await;
    let bob = server.user("bob", "correct horse battery").await;
    server
        .store
        .set_user_config(bob.id, "KUBECONFIG", "apiVersion: v1\nkind: Config\n", true)
        .await
        .unwrap();
    server
        .store
        .create_project(bob.id, "remote", "", "test")
        .await
        .unwrap();
    assert_eq!(ready_sandboxes(&server).await, pooled, "bob took none");
    let alice = server.user("alice", "correct horse battery").await;
    server
        .store
        .create_project(alice.id, "local", "", "test")
        .await
        .unwrap();
    let by_owner: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT u.username::text, s.resource_name, s.pooled
           FROM sandboxes s JOIN users u ON u.id = s.user_id ORDER BY u.username",
    )
    .fetch_all(server.store.pool())
    .await
    .unwrap();
    assert_eq!(by_owner[0], ("alice".into(), pooled[0].clone(), true));
    assert_eq!(by_owner[1].0, "bob");
    assert!(!by_owner[1].2, "{by_owner:?}");
    assert!(
        by_owner[1].1.starts_with("remote-agentruntime-"),
        "{by_owner:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_sandbox_touched_after_its_health_check_is_adopted_with_nothing_from_before() {
    let (server, pooled) = one_pooled_sandbox().await;
    // Someone on the host opens a session in it and leaves a file, after
    // the keeper's last check: the claim cannot know.
    let local = server.local.as_ref().unwrap();
    let out = local
        .tmux_command(&pooled)
        .args(["new-session", "-d", "-s", "intruder", "sleep 3600"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let dir = local.sandbox_dir(&resource(&pooled));
    std::fs::write(dir.join("left-behind"), "from before").unwrap();

    let (_alice, _c) = shop_from_the_pool(&server, &pooled).await;
    assert_eq!(sessions(&server, &pooled), vec![pooled.clone()]);
    eventually(
        "only .kiln-env in the working directory",
        Duration::from_secs(30),
        || async { (entries(&server, &pooled) == [".kiln-env"]).then_some(()) },
    )
    .await;
}

/// Only a session, opened after the keeper's last check and no file: the
/// claim's one `tmux` run (which lists the sessions before it opens the
/// project's) finds it, and the sandbox is started afresh before it is
/// reported RUNNING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_in_a_pooled_sandbox_after_its_check_is_found_by_the_claims_own_run() {
    let (server, pooled) = one_pooled_sandbox().await;
    let local = server.local.as_ref().unwrap();
    let out = local
        .tmux_command(&pooled)
        .args(["new-session", "-d", "-s", "intruder", "sleep 3600"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sessions(&server, &pooled), vec!["intruder".to_string()]);

    let (_alice, _c) = shop_from_the_pool(&server, &pooled).await;
    assert_eq!(sessions(&server, &pooled), vec![pooled.clone()]);
}

/// A pooled sandbox whose working directory was removed by hand after its
/// health check: the claim starts it afresh (directories made, a new
/// server) instead of failing to write the session's files for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_sandbox_whose_directory_was_removed_after_its_check_is_started_afresh() {
    let (server, pooled) = one_pooled_sandbox().await;
    let local = server.local.as_ref().unwrap();
    let dir = local.sandbox_dir(&resource(&pooled));
    std::fs::remove_dir_all(&dir).unwrap();

    let (_alice, _c) = shop_from_the_pool(&server, &pooled).await;
    assert!(dir.is_dir(), "the working directory is made again");
    assert!(
        dir.join(".kiln-env").is_file(),
        "the session's environment file is in it"
    );
    assert_eq!(sessions(&server, &pooled), vec![pooled.clone()]);
}

/// An adoption tried again (its outcome was never written) once the
/// project's program has written files: the files are the project's, and
/// neither they nor its session are touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adoption_tried_again_keeps_the_projects_session_and_files() {
    use kiln::driver::{Observed, SandboxDriver, SandboxSpec};
    let (server, pooled) = one_pooled_sandbox().await;
    let local = server.local.as_ref().unwrap();
    let spec = SandboxSpec {
        resource: resource(&pooled),
        env: Default::default(),
        secret_keys: Default::default(),
        repo: None,
        command: Some("sleep 3600".into()),
        setup: None,
        sizing: Default::default(),
    };
    assert_eq!(local.adopt(&spec).await.unwrap(), Observed::Running);
    let pane_pid = || {
        let out = local
            .tmux_command(&pooled)
            .args(["display-message", "-p", "-t", &pooled, "#{pane_pid}"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let first = pane_pid();
    let dir = local.sandbox_dir(&resource(&pooled));
    std::fs::write(dir.join("work.txt"), "the project's").unwrap();

    assert_eq!(local.adopt(&spec).await.unwrap(), Observed::Running);
    assert_eq!(pane_pid(), first, "the session was not started again");
    assert_eq!(
        std::fs::read_to_string(dir.join("work.txt")).unwrap(),
        "the project's"
    );
    assert_eq!(sessions(&server, &pooled), vec![pooled.clone()]);
}
