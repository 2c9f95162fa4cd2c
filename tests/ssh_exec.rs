//! Exec commands over a real SSH connection: output, exit status, stdin.

mod support;

use support::ssh::{Server, connect};

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
