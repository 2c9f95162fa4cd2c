//! Kiln's database goes away and comes back while dashboards are open
//! (issue 18 §5): the screens say the database is unavailable (not an
//! internal error), keep what they showed, and catch up by themselves once
//! it returns; exec commands say the same and exit non-zero.

use std::time::Duration;

use crate::support::ssh::{Server, TEST_SECRET_KEY, connect};

#[tokio::test]
async fn open_dashboards_say_the_database_is_away_and_catch_up_when_it_returns() {
    let server = Server::start_behind_proxy().await;
    let proxy = server.proxy.as_ref().expect("a proxy");
    // The test's own way in, past the proxy.
    let direct = server
        .db
        .store_with_key(kiln::store::SecretKey::from_hex(TEST_SECRET_KEY).unwrap())
        .await;
    let alice = server.user("alice", "correct horse battery").await;
    direct
        .create_project(alice.id, "before", "", "alice")
        .await
        .unwrap();
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.shell(100, 30).await;
    screen.wait_for("before").await;

    proxy.cut();
    // Within the pool's acquire timeout and a retry.
    let down = screen
        .wait_until_within("the outage on screen", Duration::from_secs(40), |t| {
            t.contains("database is unavailable")
        })
        .await;
    assert!(!down.contains("internal error"), "{down}");
    assert!(down.contains("before"), "the list stays on screen:\n{down}");
    // An exec command on the connection already open says the same.
    let out = c.exec("projects", b"").await;
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stderr.contains("database is unavailable"),
        "{}",
        out.stderr
    );

    // Kiln waits between attempts to reconnect: the database (and the
    // server's own thread) is not hammered while it is away. The proxy
    // resets connections rather than refusing them, which sqlx's own
    // reconnect loop retried at once and without end (thousands a second
    // on loopback). What remains is mostly the test server's reconcile
    // loop, which retries at its resync interval (100 ms here, 3 s by
    // default).
    let before = proxy.turned_away();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = proxy.turned_away() - before;
    assert!(
        attempts < 300,
        "{attempts} connection attempts in 3 s of outage"
    );

    // Made meanwhile, its notification lost with the listener's connection.
    direct
        .create_project(alice.id, "during", "", "alice")
        .await
        .unwrap();
    proxy.restore();
    let up = screen
        .wait_until_within(
            "the list back without a key press",
            Duration::from_secs(40),
            |t| t.contains("during") && !t.contains("unavailable"),
        )
        .await;
    assert!(up.contains("before"), "{up}");
    let out = c.exec("projects", b"").await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("during"), "{}", out.stdout);
}
