//! Quotas over real SSH: parallel creates and starts from separate SSH
//! clients against a quota leave exactly the quota's worth, and every
//! refusal names the limit and the usage; the settings screen shows usage
//! against the quota.

use crate::console_fronts::cli;
use crate::ssh_auth::random_key;
use crate::support::ssh::{Client, Server, connect};

const PASSWORD: &str = "correct horse battery";

/// `n` SSH clients signed in as alice with her key (no argon2 per client).
async fn clients(server: &Server, alice: uuid::Uuid, n: usize) -> Vec<Client> {
    let key = random_key();
    server
        .store
        .add_ssh_key(alice, &key.public_key().to_openssh().unwrap())
        .await
        .unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = connect(server.addr).await;
        assert!(c.key("alice", &key).await);
        out.push(c);
    }
    out
}

fn quota_set(server: &Server, args: &[&str]) -> String {
    let mut all = vec!["quota", "set"];
    all.extend_from_slice(args);
    let (code, out, err) = tokio::task::block_in_place(|| cli(server, &all));
    assert_eq!(code, 0, "{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_creates_against_a_quota_of_three_leave_three_projects() {
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    let out = quota_set(&server, &["--user", "alice", "--projects", "3"]);
    assert!(out.contains("0 of 3 projects"), "{out}");
    let clients = clients(&server, alice.id, 50).await;
    let results = futures::future::join_all(
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| async move { c.exec(&format!("create p{i}"), b"").await }),
    )
    .await;
    let ok = results.iter().filter(|r| r.code == Some(0)).count();
    assert_eq!(ok, 3, "{results:#?}");
    for r in results.iter().filter(|r| r.code != Some(0)) {
        assert_eq!(r.code, Some(1), "{r:?}");
        assert_eq!(
            r.stderr.trim(),
            "error: you have 3 of 3 projects: delete one or ask an admin"
        );
    }
    assert_eq!(server.store.list_projects(alice.id).await.unwrap().len(), 3);
    // The refusals are in the audit trail, as refusals.
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'project.create' AND result = 'refused'",
    )
    .fetch_one(server.store.pool())
    .await
    .unwrap();
    assert_eq!(refused, 47);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_starts_against_a_running_quota_of_two_start_two() {
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    for i in 0..20 {
        let name = format!("p{i}");
        server
            .store
            .create_project(alice.id, &name, "", "test")
            .await
            .unwrap();
        server
            .store
            .record_intent(alice.id, &name, kiln::model::Intent::Stop, "test")
            .await
            .unwrap();
    }
    let out = quota_set(&server, &["--user", "alice", "--running", "2"]);
    assert!(
        out.contains("20 projects (no limit) · 0 of 2 running"),
        "{out}"
    );
    let clients = clients(&server, alice.id, 20).await;
    let results = futures::future::join_all(
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| async move { c.exec(&format!("start p{i}"), b"").await }),
    )
    .await;
    let ok = results.iter().filter(|r| r.code == Some(0)).count();
    assert_eq!(ok, 2, "{results:#?}");
    for r in results.iter().filter(|r| r.code != Some(0)) {
        assert_eq!(
            r.stderr.trim(),
            "error: you run 2 of 2 sandboxes: stop one or ask an admin",
            "{r:?}"
        );
    }
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sandboxes WHERE user_id = $1 AND desired = 'RUNNING'",
    )
    .bind(alice.id)
    .fetch_one(server.store.pool())
    .await
    .unwrap();
    assert_eq!(running, 2);
    // A create also starts a sandbox, so the running quota refuses it too.
    let r = clients[0].exec("create one-more", b"").await;
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("you run 2 of 2 sandboxes"),
        "{}",
        r.stderr
    );
    // Stopping one makes room for another.
    let started: Vec<usize> = (0..20).filter(|&i| results[i].code == Some(0)).collect();
    let r = clients[0].exec(&format!("stop p{}", started[0]), b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let waiting = (0..20).find(|i| !started.contains(i)).unwrap();
    let r = clients[0].exec(&format!("start p{waiting}"), b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_screen_shows_usage_against_the_quota() {
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    server
        .store
        .create_project(alice.id, "blog", "", "test")
        .await
        .unwrap();
    quota_set(
        &server,
        &["--user", "alice", "--projects", "5", "--running", "2"],
    );
    // A team of hers, with a quota and a project of its own; bob is not
    // in it and learns nothing of it.
    server.user("bob", PASSWORD).await;
    for args in [
        &["team", "create", "acme"][..],
        &["team", "add", "acme", "alice", "--role", "viewer"],
    ] {
        let (code, _, err) = tokio::task::block_in_place(|| cli(&server, args));
        assert_eq!(code, 0, "{err}");
    }
    let acme = server.store.require_team("acme").await.unwrap();
    server
        .store
        .create_project(acme, "site", "", "test")
        .await
        .unwrap();
    quota_set(&server, &["--team", "acme", "--projects", "3"]);
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", PASSWORD).await);
    let screen = c.shell(120, 40).await;
    screen.wait_for("Projects (").await;
    screen.send(b"S").await;
    screen
        .wait_for("Quota      you: 1 of 5 projects · 1 of 2 running")
        .await;
    screen
        .wait_for("team acme: 1 of 3 projects · 1 running (no limit)")
        .await;
    // The same over exec, in words and as JSON.
    let r = c.exec("quota", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        "you                   1 of 5 projects · 1 of 2 running\n\
         team acme             1 of 3 projects · 1 running (no limit)\n"
    );
    let r = c.exec("quota --json", b"").await;
    let all: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(all[0]["owner"], "user");
    assert_eq!(all[0]["limits"]["running"], 2);
    assert_eq!(all[1]["name"], "acme");
    assert_eq!(all[1]["role"], "viewer");
    assert_eq!(all[1]["limits"]["projects"], 3);
    assert_eq!(all[1]["limits"]["running"], serde_json::Value::Null);
    assert_eq!(all[1]["usage"]["projects"], 1);
    let mut bob = connect(server.addr).await;
    assert!(bob.password("bob", PASSWORD).await);
    let r = bob.exec("quota --json", b"").await;
    let all: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert!(!r.stdout.contains("acme"), "{}", r.stdout);
    // A bad quota changes nothing and says why; an unknown user is named.
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli(
            &server,
            &["quota", "set", "--user", "alice", "--projects", "2000000"],
        )
    });
    assert_ne!(code, 0);
    assert!(err.contains("--projects takes 0 to 1000000"), "{err}");
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli(
            &server,
            &["quota", "set", "--user", "nobody", "--projects", "1"],
        )
    });
    assert_ne!(code, 0);
    assert!(err.contains("no such user: nobody"), "{err}");
    let (limits, _) = server.store.quota_usage(alice.id).await.unwrap();
    assert_eq!(limits.projects, Some(5));
}

/// CPU and memory quotas, as on the Kubernetes back end: the store of a
/// server whose sandboxes run on a cluster counts each one's requests, and
/// parallel creates stop exactly where the sum would pass the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_and_memory_quotas_hold_under_concurrency() {
    use kiln::model::quota::SandboxSize;
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    let bob = server.user("bob", PASSWORD).await;
    let out = quota_set(&server, &["--user", "alice", "--cpu", "1.5"]);
    assert!(out.contains("0 of 1500m CPU"), "{out}");
    let out = quota_set(&server, &["--user", "bob", "--memory", "4Gi"]);
    assert!(out.contains("0 of 4Gi memory"), "{out}");
    // Bad amounts are refused before anything is stored.
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli(&server, &["quota", "set", "--user", "bob", "--cpu", "lots"])
    });
    assert_ne!(code, 0);
    assert!(err.contains("is not a CPU amount"), "{err}");

    let store = server.store.clone().with_sandbox_size(SandboxSize {
        cpu_millis: 500,
        memory_bytes: 2 << 30,
    });
    for (owner, fits, refusal) in [
        (
            alice.id,
            3,
            "your sandboxes request 1500m of 1500m CPU and one more needs 500m: stop one or ask an admin",
        ),
        (
            bob.id,
            2,
            "your sandboxes request 4Gi of 4Gi memory and one more needs 2Gi: stop one or ask an admin",
        ),
    ] {
        let creates = (0..20).map(|i| {
            let store = store.clone();
            async move {
                store
                    .create_project(owner, &format!("p{i}"), "", "test")
                    .await
            }
        });
        let results = futures::future::join_all(creates).await;
        let made = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(made, fits, "{results:?}");
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(e.to_string(), refusal);
        }
        assert_eq!(store.list_projects(owner).await.unwrap().len(), fits);
    }
    // The store of a server without a cluster does not count them.
    server
        .store
        .create_project(alice.id, "local", "", "test")
        .await
        .unwrap();
}

/// On Kubernetes a sandbox made from a template that names its CPU and
/// memory counts those against the owner's quota, not the server's size:
/// at create (through the console's exec front, `create --template`) and
/// at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_templates_own_size_counts_against_cpu_and_memory_quotas() {
    use kiln::console::{Console, Front};
    use kiln::model::quota::SandboxSize;
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    let out = quota_set(&server, &["--user", "alice", "--cpu", "2"]);
    assert!(out.contains("0 of 2 CPU"), "{out}");
    let store = server.store.clone().with_sandbox_size(SandboxSize {
        cpu_millis: 500,
        memory_bytes: 1 << 30,
    });
    let console = Console::new(store.clone(), None, None);
    console
        .operator()
        .add_template(
            "name = \"big\"\ndescription = \"a big one\"\n\
             [kubernetes]\ncpu = \"1500m\"\nmemory = \"3Gi\"\n",
        )
        .await
        .expect("a valid template");
    let exec = |line: &'static str| {
        let c = console.as_user(alice.clone(), Front::Exec);
        async move {
            let o = kiln::ssh::exec::run(&c, line, b"").await;
            (
                o.code,
                String::from_utf8(o.stdout).unwrap(),
                String::from_utf8(o.stderr).unwrap(),
            )
        }
    };
    // 1500m, then 500m: 2 of 2 CPU.
    let (code, _, err) = exec("create large --template big").await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = exec("create small").await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = exec("create third").await;
    assert_ne!(code, 0);
    assert!(
        err.contains("your sandboxes request 2 of 2 CPU and one more needs 500m"),
        "{err}"
    );
    let (_, usage) = store.quota_usage(alice.id).await.unwrap();
    assert_eq!((usage.running, usage.cpu_millis), (2, 2000));
    assert_eq!(usage.memory_bytes, 4 << 30);
    // With the big one stopped, a small one fits; starting the big one
    // again would ask 1500m more of the 1000m left.
    use crate::support::sandboxes::status_becomes;
    use kiln::model::ProjectStatus;
    status_becomes(&server, alice.id, "large", ProjectStatus::Running).await;
    let (code, _, err) = exec("stop large").await;
    assert_eq!(code, 0, "{err}");
    status_becomes(&server, alice.id, "large", ProjectStatus::Stopped).await;
    let (code, _, err) = exec("create third").await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = exec("start large").await;
    assert_ne!(code, 0);
    assert!(
        err.contains("your sandboxes request 1 of 2 CPU and one more needs 1500m"),
        "{err}"
    );
    // A refusal changed nothing.
    let (_, usage) = store.quota_usage(alice.id).await.unwrap();
    assert_eq!((usage.running, usage.cpu_millis), (2, 1000));
    assert_eq!(store.list_projects(alice.id).await.unwrap().len(), 3);
}
