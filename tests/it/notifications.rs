//! The notifications list end to end (issue 19, part 5): a project that
//! fails notifies its owner; the count reaches an open dashboard without a
//! key press; N opens the list, Enter the project; reading marks them read;
//! retention prunes them; another tenant never sees or infers them.

use std::time::Duration;

use kiln::driver::DriverError;
use kiln::fake_driver::{Kind, Op};
use serde_json::Value;

use crate::support::eventually;
use crate::support::ssh::{Client, Server, connect, line_with};

const PW: &str = "pw-12345678";

async fn signed_in(server: &Server, user: &str) -> Client {
    let mut c = connect(server.addr).await;
    assert!(c.password(user, PW).await, "{user} signs in");
    c
}

async fn exec_json(c: &Client, command: &str) -> Value {
    let out = c.exec(command, b"").await;
    assert_eq!(out.code, Some(0), "{command}: {out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{command}: {e}: {out:?}"))
}

/// Creates `owner`'s project `name` whose sandbox fails for good with `why`.
async fn failing_project(server: &Server, owner: uuid::Uuid, name: &str, why: &str) {
    server
        .fake
        .fail_next(Kind::Sandbox, Op::Ensure, None, DriverError::permanent(why));
    server
        .store
        .create_project(owner, name, "", "test")
        .await
        .unwrap();
    eventually(
        &format!("{name} in ERROR"),
        Duration::from_secs(20),
        || async {
            let p = server.store.find_project(owner, name).await.unwrap();
            (p.project.status == kiln::model::ProjectStatus::Error).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn notifications_reach_an_open_dashboard_without_a_key_press() {
    let server = Server::start().await;
    let alice = server.user("alice", PW).await;
    server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    let screen = c.shell(100, 30).await;
    screen
        .wait_until("the list", |t| {
            line_with(t, "blog").is_some_and(|l| l.contains("RUNNING"))
        })
        .await;
    assert!(!screen.text().contains("unread"), "{}", screen.text());

    // A project fails elsewhere: the header counts it, no key pressed.
    failing_project(
        &server,
        alice.id,
        "broken",
        "image pull failed: no such image",
    )
    .await;
    screen
        .wait_until("the unread count", |t| t.contains("✉ 1 unread (N)"))
        .await;

    // N opens the list: kind, project, text; opening reads them.
    screen.send(b"N").await;
    let text = screen
        .wait_until("the notification", |t| {
            line_with(t, "broken")
                .is_some_and(|l| l.contains("failed") && l.contains("image pull failed"))
        })
        .await;
    assert!(text.contains("Notifications"), "{text}");
    screen
        .wait_until("the count gone once read", |t| !t.contains("unread"))
        .await;

    // Enter opens the project's detail screen.
    screen.send(b"\r").await;
    screen
        .wait_until("broken's detail screen", |t| {
            t.contains(" Events") && t.contains("broken") && t.contains("ERROR")
        })
        .await;

    // Another failure while the screen is open elsewhere: counted again.
    failing_project(&server, alice.id, "worse", "quota of the cluster exceeded").await;
    screen
        .wait_until("the new unread count", |t| t.contains("✉ 1 unread (N)"))
        .await;
}

#[tokio::test]
async fn reading_marks_them_read_and_all_lists_them_again() {
    let server = Server::start().await;
    let alice = server.user("alice", PW).await;
    failing_project(&server, alice.id, "broken", "no such image").await;
    let c = signed_in(&server, "alice").await;
    let first = exec_json(&c, "notifications --json").await;
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["kind"], "project_failed");
    assert_eq!(first[0]["project"], "broken");
    assert_eq!(first[0]["message"], "no such image");
    assert_eq!(first[0]["unread"], true);
    let again = exec_json(&c, "notifications --json").await;
    assert_eq!(again, serde_json::json!([]), "read now");
    let text = c.exec("notifications", b"").await.stdout;
    assert!(text.contains("no unread notifications"), "{text}");
    let all = exec_json(&c, "notifications --all --json").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["unread"], false);
}

#[tokio::test]
async fn another_tenant_never_sees_them() {
    let server = Server::start().await;
    let alice = server.user("alice", PW).await;
    server.user("bob", PW).await;
    let bob = signed_in(&server, "bob").await;
    let screen = bob.shell(100, 30).await;
    screen
        .wait_until("bob's empty list", |t| t.contains("Kiln · bob"))
        .await;

    failing_project(&server, alice.id, "secret-plan", "no such image").await;
    let ac = signed_in(&server, "alice").await;
    // Alice's arrived (her count says so) ...
    eventually("alice's notification", Duration::from_secs(10), || async {
        let n = exec_json(&ac, "notifications --all --json").await;
        (n.as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    // ... and bob's dashboard, open all along, never counted it.
    assert!(!screen.text().contains("unread"), "{}", screen.text());
    assert_eq!(
        exec_json(&bob, "notifications --all --json").await,
        serde_json::json!([])
    );
    // Her project is, to bob, exactly a missing one.
    for (theirs, missing) in [
        ("idle secret-plan", "idle no-such-plan"),
        ("extend secret-plan", "extend no-such-plan"),
        (
            "idle secret-plan --after off",
            "idle no-such-plan --after off",
        ),
    ] {
        let a = bob.exec(theirs, b"").await;
        let b = bob.exec(missing, b"").await;
        assert_eq!(a.code, b.code, "{theirs}");
        assert_eq!(
            a.stderr.replace("secret-plan", "X"),
            b.stderr.replace("no-such-plan", "X"),
            "{theirs}"
        );
        assert!(a.stderr.contains("no such project"), "{a:?}");
    }
}

#[tokio::test]
async fn old_notifications_are_pruned() {
    let server = Server::start().await;
    let alice = server.user("alice", PW).await;
    for age in ["3 days", "1 minute"] {
        sqlx::query(
            "INSERT INTO notifications (user_id, kind, message, created_at)
             VALUES ($1, 'project_failed', $2, now() - $2::interval)",
        )
        .bind(alice.id)
        .bind(age)
        .execute(server.store.pool())
        .await
        .unwrap();
    }
    let gone = server
        .store
        .prune_notifications(Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(gone, 1);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT message FROM notifications WHERE user_id = $1")
            .bind(alice.id)
            .fetch_all(server.store.pool())
            .await
            .unwrap();
    assert_eq!(left, ["1 minute"]);
}
