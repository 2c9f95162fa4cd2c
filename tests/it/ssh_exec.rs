//! Exec commands over a real SSH connection: output, exit status, stdin.

use crate::support;
use crate::support::ssh::{Server, connect};

#[tokio::test]
async fn exec_commands_answer_with_output_and_exit_status() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    server
        .store
        .create_project(alice.id, "Over SSH", "", "alice")
        .await
        .unwrap();
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);

    let r = c.exec("projects --json", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert!(r.stdout.contains("Over SSH"), "{v}");

    let r = c.exec("whoami", b"").await;
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("alice"), "{r:?}");

    let r = c.exec("delete overssh", b"").await;
    assert_ne!(r.code, Some(0), "delete without --yes is refused");
    assert!(server.store.find_project(alice.id, "overssh").await.is_ok());

    let r = c.exec("frobnicate", b"").await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr.contains("projects"),
        "the command list is printed: {r:?}"
    );
}

#[tokio::test]
async fn a_key_added_over_ssh_works_for_the_next_login_and_a_bad_key_changes_nothing() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);

    let r = c.exec("keys add", b"this is not a key\n").await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{r:?}");
    assert!(
        server
            .store
            .list_ssh_keys(alice.id)
            .await
            .unwrap()
            .is_empty()
    );

    let key = russh::keys::PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )
    .unwrap();
    let line = format!("{} laptop\n", key.public_key().to_openssh().unwrap());
    let r = c.exec("keys add", line.as_bytes()).await;
    assert_eq!(r.code, Some(0), "{r:?}");

    let mut next = connect(server.addr).await;
    assert!(next.key("alice", &key).await, "the new key logs in");
}

#[tokio::test]
async fn another_tenants_project_answers_like_a_missing_one_over_ssh() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    server.user("bob", "another long password").await;
    server
        .store
        .create_project(alice.id, "private", "", "alice")
        .await
        .unwrap();
    let mut bob = connect(server.addr).await;
    assert!(bob.password("bob", "another long password").await);
    for cmd in [
        "project {}",
        "start {}",
        "stop {}",
        "delete {} --yes",
        "retry {}",
        "env {}",
        "env {} set A=1",
        "events {}",
    ] {
        let theirs = bob.exec(&cmd.replace("{}", "private"), b"").await;
        let missing = bob.exec(&cmd.replace("{}", "nosuchthing"), b"").await;
        assert_eq!(theirs.code, missing.code, "{cmd}");
        assert_eq!(
            theirs.stderr.replace("private", "X"),
            missing.stderr.replace("nosuchthing", "X"),
            "{cmd}"
        );
        assert_ne!(theirs.code, Some(0), "{cmd}");
    }
    let p = server
        .store
        .find_project(alice.id, "private")
        .await
        .unwrap();
    assert!(
        server
            .store
            .list_env(alice.id, "private")
            .await
            .unwrap()
            .is_empty()
    );
    assert_ne!(p.project.status, kiln::model::ProjectStatus::Terminating);
}

/// Waits (bounded) until the project's sandbox is RUNNING on the local driver.
async fn wait_running(server: &Server, user: uuid::Uuid, name: &str) -> String {
    support::eventually(
        "the sandbox running",
        std::time::Duration::from_secs(20),
        || async {
            let p = server.store.find_project(user, name).await.ok()?;
            let sb = p
                .resources
                .iter()
                .find(|r| r.kind == kiln::store::resources::ResourceKind::Sandbox)?;
            (sb.status == kiln::model::ResourceStatus::Running).then(|| sb.resource_name.clone())
        },
    )
    .await
}

fn json(r: &support::ssh::ExecResult) -> serde_json::Value {
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

/// The `sessions --json` entry of `session` (null = the default one).
fn entry(list: &serde_json::Value, session: Option<&str>) -> serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"].as_str() == session)
        .cloned()
        .unwrap_or_else(|| panic!("no session {session:?} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_lists_exited_sessions_and_restart_brings_them_back() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    server.user("bob", "another long password").await;
    server
        .store
        .create_project(alice.id, "Shells", "", "alice")
        .await
        .unwrap();
    wait_running(&server, alice.id, "shells").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);

    let list = json(&c.exec("sessions shells --json", b"").await);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let main = entry(&list, None);
    assert_eq!(main["default"], true);
    assert_eq!(main["state"], "running");
    assert!(main["exit_status"].is_null());
    assert!(main["last_activity"].is_string(), "{main}");

    // A named session whose shell exits with 7 (the attach stays on the
    // dead pane until Ctrl-] detaches).
    let work = c.exec_tty("attach shells --session work", 80, 24).await;
    work.send(b"echo ready-$((1+1))\r").await;
    work.wait_for("ready-2").await;
    work.send(b"exit 7\r").await;

    // Listed as exited, with its status, while the viewer is still there.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let list = loop {
        let list = json(&c.exec("sessions shells --json", b"").await);
        if entry(&list, Some("work"))["exit_status"] == 7 {
            break list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let w = entry(&list, Some("work"));
    assert_eq!(w["default"], false);
    assert_eq!(w["state"], "exited");
    assert_eq!(w["exit_status"], 7);
    assert_eq!(w["viewers"], 1);
    // The viewer sees tmux's dead-pane line; Ctrl-] detaches as usual.
    work.wait_for("Pane is dead").await;
    work.send(&[0x1d]).await;
    assert_eq!(work.wait_closed().await, Some(0));
    assert_eq!(list[0]["session"], serde_json::Value::Null, "default first");
    let text = c.exec("sessions shells", b"").await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(
        support::ssh::line_with(&text.stdout, "work")
            .is_some_and(|l| l.contains("exited (status 7)")),
        "{text:?}"
    );
    assert!(text.stdout.contains("(default)"), "{text:?}");

    // Restart it: running again, and a shell that answers.
    let r = c.exec("restart shells --session work --json", b"").await;
    let v = json(&r);
    assert_eq!(v["session"], "work");
    assert_eq!(v["restarted"], true);
    let list = json(&c.exec("sessions shells --json", b"").await);
    assert_eq!(entry(&list, Some("work"))["state"], "running");
    let again = c.exec_tty("attach shells --session work", 80, 24).await;
    again.send(b"echo alive-$((2+2))\r").await;
    again.wait_for("alive-4").await;
    again.send(&[0x1d]).await;
    again.wait_closed().await;

    // A running session is left alone; a missing or invalid one says so.
    let r = c.exec("restart shells --session work", b"").await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("still running"), "{r:?}");
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{r:?}");
    let r = c.exec("restart shells", b"").await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("session default is still running"),
        "{r:?}"
    );
    let r = c.exec("restart shells --session nosuch", b"").await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("no session nosuch"), "{r:?}");
    let r = c.exec("restart shells --session ../x", b"").await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("invalid session name"), "{r:?}");
    for help in ["sessions --help", "restart --help"] {
        let r = c.exec(help, b"").await;
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(r.stdout.contains("Usage: "), "{r:?}");
    }

    // Another tenant's project answers exactly like a missing one.
    let mut bob = connect(server.addr).await;
    assert!(bob.password("bob", "another long password").await);
    for cmd in [
        "sessions {}",
        "sessions {} --json",
        "restart {} --session work",
    ] {
        let theirs = bob.exec(&cmd.replace("{}", "shells"), b"").await;
        let missing = bob.exec(&cmd.replace("{}", "nosuchthing"), b"").await;
        assert_eq!(theirs.code, Some(1), "{cmd}: {theirs:?}");
        assert_eq!(theirs.code, missing.code, "{cmd}");
        assert_eq!(
            theirs.stderr.replace("shells", "X"),
            missing.stderr.replace("nosuchthing", "X"),
            "{cmd}"
        );
        assert!(theirs.stdout.is_empty(), "{cmd}: {theirs:?}");
    }

    // A stopped project has no sessions to list or restart.
    c.exec("stop shells", b"").await;
    support::eventually(
        "the project stopped",
        std::time::Duration::from_secs(20),
        || async {
            let p = server.store.find_project(alice.id, "shells").await.ok()?;
            (p.project.status == kiln::model::ProjectStatus::Stopped).then_some(())
        },
    )
    .await;
    let r = c.exec("sessions shells", b"").await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("start shells"), "{r:?}");
}

/// Exec output follows the dashboard's display rules: bidi overrides and
/// other invisible format characters in a stored value are shown as `?`,
/// so `inv\u{202e}exe.txt` cannot pose as `invtxt.exe`.
#[tokio::test]
async fn exec_output_shows_bidi_controls_as_question_marks() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    server
        .store
        .create_project(
            alice.id,
            "Bidi",
            "inv\u{202e}exe.txt and\u{200b}zero\u{2066}width",
            "alice",
        )
        .await
        .unwrap();
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let r = c.exec("project bidi", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    for bad in ['\u{202e}', '\u{200b}', '\u{2066}'] {
        assert!(!r.stdout.contains(bad), "{bad:?} reached the client: {r:?}");
    }
    assert!(
        r.stdout.contains("inv?exe.txt and?zero?width"),
        "{}",
        r.stdout
    );
}

fn ed25519() -> russh::keys::PrivateKey {
    russh::keys::PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )
    .unwrap()
}

fn key_line(key: &russh::keys::PrivateKey) -> String {
    format!("{} laptop\n", key.public_key().to_openssh().unwrap())
}

/// `keys add` of someone else's public key binds nothing: the answer is the
/// same as for any new key (pending), and the key never lets the squatter
/// in nor shuts its holder out. A key pending for one user does not stop
/// its real holder from adding it and binding it by signing in with it.
#[tokio::test]
async fn a_key_is_bound_only_by_signing_in_with_it_so_nobody_can_squat_one() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    let bob = server.user("bob", "another long password").await;
    // Alice's key, registered by the operator (trusted at once).
    let alices = ed25519();
    server
        .store
        .add_ssh_key(alice.id, &key_line(&alices))
        .await
        .unwrap();

    let mut b = connect(server.addr).await;
    assert!(b.password("bob", "another long password").await);
    let fp = |k: &russh::keys::PrivateKey| {
        k.public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string()
    };
    let squat = b.exec("keys add", key_line(&alices).as_bytes()).await;
    let fresh_key = ed25519();
    let fresh = b.exec("keys add", key_line(&fresh_key).as_bytes()).await;
    assert_eq!(squat.code, fresh.code, "{squat:?} {fresh:?}");
    assert_eq!(
        squat.stdout.replace(&fp(&alices), "FP"),
        fresh.stdout.replace(&fp(&fresh_key), "FP"),
        "a key someone else holds reads like any pending key"
    );
    assert_eq!(squat.stderr, fresh.stderr);
    // Bob cannot use it, and it is still alice's.
    let mut as_bob = connect(server.addr).await;
    assert!(
        !as_bob.key("bob", &alices).await,
        "the squatted key lets bob in"
    );
    let mut as_alice = connect(server.addr).await;
    assert!(as_alice.key("alice", &alices).await, "alice still signs in");
    let owner = server.store.user_by_key(alices.public_key()).await.unwrap();
    assert_eq!(owner.map(|u| u.id), Some(alice.id));

    // Alice marks bob's (not yet registered) key as hers; bob adds it too,
    // signs in with it, and it is his.
    let bobs = ed25519();
    let mut a = connect(server.addr).await;
    assert!(a.password("alice", "correct horse battery").await);
    let r = a.exec("keys add", key_line(&bobs).as_bytes()).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = b.exec("keys add", key_line(&bobs).as_bytes()).await;
    assert_eq!(
        r.code,
        Some(0),
        "alice's pending key does not block bob: {r:?}"
    );
    assert!(
        server
            .store
            .user_by_key(bobs.public_key())
            .await
            .unwrap()
            .is_none(),
        "nothing is bound before a signature proves possession"
    );
    let mut next = connect(server.addr).await;
    assert!(next.key("bob", &bobs).await, "bob's first sign-in binds it");
    let owner = server.store.user_by_key(bobs.public_key()).await.unwrap();
    assert_eq!(owner.map(|u| u.id), Some(bob.id));
    let keys = server.store.list_ssh_keys(alice.id).await.unwrap();
    assert!(
        keys.iter().all(|k| k.fingerprint != fp(&bobs)),
        "alice's pending copy is gone: {keys:?}"
    );
}
