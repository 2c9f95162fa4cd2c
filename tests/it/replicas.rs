//! Two `kiln serve` processes on one database behind "one address": the
//! same host key (read with `ssh-keyscan`), a change made through one seen
//! live on a dashboard connected to the other, and a SIGTERM that tells
//! the dashboard why and gives back every lease.

use std::path::Path;
use std::time::Duration;

use crate::support::serve::Serve;
use crate::support::ssh::{TEST_SECRET_KEY, connect, line_with};
use crate::support::{TestDb, eventually};

fn config(host_key: &Path) -> String {
    format!(
        "shutdown_grace_secs = 10\n\
         [ssh]\nrejection_delay_ms = 0\nhost_key_file = {:?}\n\
         [reconcile]\nresync_ms = 100\npoll_interval_ms = 100\n",
        host_key.display().to_string()
    )
}

/// The ed25519 key `ssh-keyscan` reads from `addr` (base64 of the blob).
/// Its own timeout is 5 s by default, after which it prints nothing: a
/// debug build's key exchange on a loaded machine took longer once, so it
/// gets a minute.
async fn keyscan(addr: std::net::SocketAddr) -> String {
    let port = addr.port().to_string();
    let out = tokio::process::Command::new("ssh-keyscan")
        .args(["-T", "60", "-t", "ed25519", "-p", &port, "127.0.0.1"])
        .output()
        .await
        .expect("ssh-keyscan (OpenSSH) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("ssh-ed25519"))
        .unwrap_or_else(|| {
            panic!(
                "ssh-keyscan found no ed25519 key at {addr}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split_whitespace().nth(2).unwrap().to_string()
}

async fn leases_of(db: &TestDb, replica: &str) -> i64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM sandboxes WHERE lease_owner = $1)
              + (SELECT count(*) FROM databases WHERE lease_owner = $1)",
    )
    .bind(replica)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn two_replicas_share_the_host_key_and_the_change_feed_and_stop_cleanly() {
    let db = TestDb::new().await;
    let store = db
        .store_with_key(kiln::store::SecretKey::from_hex(TEST_SECRET_KEY).unwrap())
        .await;
    store
        .create_user("alice", Some("correct horse battery"), false)
        .await
        .unwrap();
    let keys = std::env::temp_dir().join(format!("ko-hk-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&keys).unwrap();
    let key_file = keys.join("ssh_host_ed25519_key");
    let key = kiln::ssh::hostkey::load_or_create(&key_file).unwrap();
    let public = key.public_key().to_openssh().unwrap();
    let a = Serve::start(&db.url, "replica-a", &config(&key_file), &[]).await;
    let mut b = Serve::start(&db.url, "replica-b", &config(&key_file), &[]).await;

    // One key, whichever replica answers, and it is the configured one:
    // neither replica generated a key of its own.
    let (ka, kb) = (keyscan(a.ssh).await, keyscan(b.ssh).await);
    assert_eq!(ka, kb, "the replicas present different host keys");
    assert!(public.contains(&ka), "{public} vs {ka}");
    for s in [&a, &b] {
        assert!(!s.data_dir().join("ssh_host_ed25519_key").exists());
    }

    // A dashboard on B sees a project created through A, with no key pressed.
    let mut on_b = connect(b.ssh).await;
    assert!(on_b.password("alice", "correct horse battery").await);
    let screen = on_b.shell(100, 30).await;
    // Drawn once: the session is subscribed to the change feed.
    screen
        .wait_until("the dashboard", |t| !t.trim().is_empty())
        .await;
    let mut on_a = connect(a.ssh).await;
    assert!(on_a.password("alice", "correct horse battery").await);
    let r = on_a.exec("create blog", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    screen
        .wait_until("blog RUNNING on B", |t| {
            line_with(t, "blog").is_some_and(|l| l.contains("RUNNING"))
        })
        .await;

    // B holds a lease (as mid-pass), then is told to stop.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE sandboxes SET lease_owner = 'replica-b', lease_token = gen_random_uuid(),
                lease_until = now() + interval '10 minutes'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // At least that one: B's own loop may hold another row's lease at this
    // moment (a database under observation), which it must give back too.
    let held = leases_of(&db, "replica-b").await;
    assert!(held >= 1, "B holds {held} leases");
    b.sigterm();
    let text = screen.wait_for("Kiln is restarting").await;
    assert!(
        text.contains("Reconnect to continue"),
        "the restart line is cut short:\n{text}"
    );
    assert!(
        !screen.alternate_screen(),
        "the line is left on the user's own screen"
    );
    let status = b.exited(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}: {}", b.stderr());
    assert_eq!(leases_of(&db, "replica-b").await, 0, "{}", b.stderr());

    // The row B gave back was due at once, and A worked it.
    eventually(
        "A works the row B gave back",
        Duration::from_secs(30),
        || async {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
                .await
                .unwrap();
            let done: bool = sqlx::query_scalar(
                "SELECT lease_owner IS NULL AND next_attempt_at > now() FROM sandboxes",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            done.then_some(())
        },
    )
    .await;
    drop(a);
    let _ = std::fs::remove_dir_all(&keys);
}
