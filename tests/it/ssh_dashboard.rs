//! The dashboard end to end: a real SSH client over TCP, keys typed, the
//! screen read back through a vt100 parser.

use std::time::Duration;

use kiln::model::intent::Intent;

use crate::support;
use crate::support::ssh::{Server, connect, line_with};

async fn logged_in(server: &Server, user: &str, pw: &str) -> support::ssh::Client {
    let mut c = connect(server.addr).await;
    assert!(c.password(user, pw).await, "{user} logs in");
    c
}

#[tokio::test]
async fn the_project_appears_and_x_stops_it_live() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    server
        .store
        .create_project(alice.id, "My Blog", "", "alice")
        .await
        .unwrap();
    let c = logged_in(&server, "alice", "correct horse battery").await;
    let screen = c.shell(100, 30).await;
    screen
        .wait_until("My Blog RUNNING", |t| {
            line_with(t, "My Blog").is_some_and(|l| l.contains("RUNNING"))
        })
        .await;
    assert!(
        screen.alternate_screen(),
        "the dashboard uses the alternate screen"
    );

    // Hold the stop in flight so STOPPING is observable, then let it finish.
    let p = server.store.find_project(alice.id, "myblog").await.unwrap();
    for r in &p.resources {
        server.fake.hang(&r.resource_name);
    }
    screen.send(b"x").await;
    screen
        .wait_until("STOPPING", |t| {
            line_with(t, "My Blog").is_some_and(|l| l.contains("STOPPING"))
        })
        .await;
    for r in &p.resources {
        server.fake.release(&r.resource_name);
    }
    screen
        .wait_until("STOPPED", |t| {
            line_with(t, "My Blog").is_some_and(|l| l.contains("STOPPED"))
        })
        .await;

    // q leaves cleanly: main screen back, exit status 0.
    screen.send(b"q").await;
    assert_eq!(screen.wait_closed().await, Some(0));
    assert!(!screen.alternate_screen(), "the alternate screen was left");
}

#[tokio::test]
async fn a_key_logs_in_to_the_dashboard() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    let key = russh::keys::PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )
    .unwrap();
    let line = key.public_key().to_openssh().unwrap();
    server.store.add_ssh_key(alice.id, &line).await.unwrap();
    server
        .store
        .create_project(alice.id, "keyed", "", "alice")
        .await
        .unwrap();

    let mut c = connect(server.addr).await;
    let other = russh::keys::PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )
    .unwrap();
    assert!(
        !c.key("alice", &other).await,
        "an unregistered key is refused"
    );
    assert!(
        !c.key("bob", &key).await,
        "alice's key does not log in as bob"
    );
    assert!(c.key("alice", &key).await);
    let screen = c.shell(80, 24).await;
    screen.wait_for("keyed").await;
}

#[tokio::test]
async fn changes_show_on_every_session_of_the_user_and_on_no_one_elses() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    server.user("bob", "another long password").await;
    let a1 = logged_in(&server, "alice", "correct horse battery")
        .await
        .shell(100, 30)
        .await;
    let a2 = logged_in(&server, "alice", "correct horse battery")
        .await
        .shell(120, 40)
        .await;
    let b = logged_in(&server, "bob", "another long password")
        .await
        .shell(100, 30)
        .await;
    for s in [&a1, &a2] {
        s.wait_for("alice").await;
    }
    b.wait_for("bob").await;
    // A change from outside any session (the operator CLI's path).
    server
        .store
        .create_project(alice.id, "shared-view", "", "operator")
        .await
        .unwrap();
    a1.wait_for("shared-view").await;
    a2.wait_for("shared-view").await;
    // An action in one session shows in the other without a key press.
    a1.send(b"x").await;
    a2.wait_until("STOPPED in the second session", |t| {
        line_with(t, "shared-view").is_some_and(|l| l.contains("STOPP"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !b.text().contains("shared-view"),
        "bob never sees alice's project:\n{}",
        b.text()
    );
}

#[tokio::test]
async fn another_tenants_project_cannot_be_touched_from_the_dashboard() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    server.user("bob", "another long password").await;
    server
        .store
        .create_project(alice.id, "private", "", "alice")
        .await
        .unwrap();
    let before = dump(&server).await;
    let b = logged_in(&server, "bob", "another long password")
        .await
        .shell(100, 30)
        .await;
    b.wait_for("bob").await;
    for keys in [&b"s"[..], b"x", b"d", b"y", b"r", b"\r", b"e"] {
        b.send(keys).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.send(b"\x1b").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.text().contains("private"));
    // Nothing about alice's project changed (the loop may only have settled it).
    server
        .store
        .record_intent(alice.id, "private", Intent::Stop, "alice")
        .await
        .ok();
    let after = dump(&server).await;
    assert_eq!(before.0, after.0, "no project was created or removed");
}

async fn dump(server: &Server) -> (Vec<String>, i64) {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM projects ORDER BY name")
        .fetch_all(server.store.pool())
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE actor = 'bob'")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(events, 0, "bob caused no event");
    (names, events)
}

#[tokio::test]
async fn resizing_the_window_relays_out_the_dashboard() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    server
        .store
        .create_project(alice.id, "resizable", "", "alice")
        .await
        .unwrap();
    let screen = logged_in(&server, "alice", "correct horse battery")
        .await
        .shell(80, 24)
        .await;
    screen.wait_for("resizable").await;
    screen.resize(60, 20).await;
    screen.wait_for("too small").await;
    screen.resize(160, 40).await;
    screen.wait_for("resizable").await;
}

#[tokio::test]
async fn creating_a_project_from_the_dashboard() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    let screen = logged_in(&server, "alice", "correct horse battery")
        .await
        .shell(100, 30)
        .await;
    screen.wait_for("alice").await;
    screen.send(b"n").await;
    screen.send(b"Hello World!").await;
    screen.wait_for("helloworld").await; // the live slug preview
    screen.send(b"\r").await;
    screen
        .wait_until("the new project RUNNING", |t| {
            line_with(t, "Hello World!").is_some_and(|l| l.contains("RUNNING"))
        })
        .await;
    let p = server
        .store
        .find_project(alice.id, "helloworld")
        .await
        .unwrap();
    assert_eq!(p.project.name, "Hello World!");
}

#[tokio::test]
async fn the_settings_screen_changes_the_password_and_stores_an_api_key() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    let screen = logged_in(&server, "alice", "correct horse battery")
        .await
        .shell(100, 30)
        .await;
    screen.wait_for("alice").await;
    screen.send(b"S").await;
    screen.wait_for("SSH keys").await;
    screen.send(b"p").await;
    screen.send(b"a brand new password").await;
    screen.send(b"\t").await;
    screen.send(b"a brand new password").await;
    assert!(
        !screen.text().contains("a brand new password"),
        "the password is never echoed"
    );
    screen.send(b"\r").await;
    screen.wait_for("password changed").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "a brand new password").await);
    assert!(
        !connect(server.addr)
            .await
            .password("alice", "correct horse battery")
            .await
    );

    // Tab to the settings list, add ANTHROPIC_API_KEY (secret by default).
    screen.send(b"\t").await;
    screen.send(b"a").await;
    screen.send(b"ANTHROPIC_API_KEY\tsk-test-123\r").await;
    screen.wait_for("set ANTHROPIC_API_KEY").await;
    assert!(!screen.text().contains("sk-test-123"), "{}", screen.text());
    let configs = server.store.list_user_configs(alice.id).await.unwrap();
    let k = configs
        .iter()
        .find(|c| c.key == "ANTHROPIC_API_KEY")
        .unwrap();
    assert!(k.is_secret);
    assert_eq!(k.value, "sk-test-123");
}

/// A session driver whose every call hangs, as a cluster that accepts the
/// connection and never answers would.
struct Hanging;

#[async_trait::async_trait]
impl kiln::driver::SessionAttach for Hanging {
    async fn sessions(
        &self,
        _: &kiln::driver::ResourceRef,
    ) -> kiln::driver::DriverResult<Vec<kiln::driver::SessionInfo>> {
        std::future::pending().await
    }

    async fn attach(
        &self,
        _: &kiln::driver::ResourceRef,
        _: Option<&str>,
        _: &kiln::driver::Viewer,
    ) -> kiln::driver::DriverResult<kiln::driver::Attachment> {
        std::future::pending().await
    }

    async fn restart(
        &self,
        _: &kiln::driver::ResourceRef,
        _: Option<&str>,
    ) -> kiln::driver::DriverResult<()> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_hanging_attach_never_freezes_the_screen_or_the_keys() {
    let server = Server::start_with_sessions(std::sync::Arc::new(Hanging)).await;
    let alice = server.user("alice", "correct horse battery").await;
    server.running_project(alice.id, "alpha").await;
    server.running_project(alice.id, "beta").await;
    let c = logged_in(&server, "alice", "correct horse battery").await;
    let screen = c.shell(100, 30).await;
    let list = screen
        .wait_until("both running", |t| {
            ["alpha", "beta"]
                .iter()
                .all(|n| line_with(t, n).is_some_and(|l| l.contains("RUNNING")))
        })
        .await;
    // The cursor starts on the first row; the other project is below it.
    let alpha_first = list.find("alpha") < list.find("beta");
    let (first, second) = if alpha_first {
        ("alpha", "beta")
    } else {
        ("beta", "alpha")
    };

    // The attach never answers; everything else still does.
    screen.send(b"a").await;
    screen.send(b"?").await;
    screen.wait_for("Keys").await;
    screen.send(b"?").await;
    screen
        .wait_until("help closed", |t| !t.contains("Keys"))
        .await;
    // The cursor moves: Enter opens the second project's detail.
    screen.send(b"j").await;
    screen.send(b"\r").await;
    screen
        .wait_until("the second project's detail", |t| {
            t.lines().take(3).any(|l| l.contains(second)) && !t.contains(first)
        })
        .await;
    screen.send(b"\x1b").await;
    screen.wait_for(first).await;
    screen.send(b"q").await;
    assert_eq!(screen.wait_closed().await, Some(0));
}
