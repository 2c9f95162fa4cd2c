//! The audit trail over real SSH: sign-ins (failed and by key), a create, a
//! secret env set and a read-only attach each leave one record with the
//! actor and the source address; no secret value is ever in it; a user
//! reads only their own records; the operator reads anyone's; the table
//! takes no UPDATE or DELETE but retention's.

use std::time::Duration;

use serde_json::Value;

use crate::console_fronts::cli;
use crate::ssh_auth::{connect_from, random_key};
use crate::support::eventually;
use crate::support::ssh::{Server, connect};

const PASSWORD: &str = "correct horse battery";
const SECRET_VALUE: &str = "sk-very-secret-0c9f1e";

/// `ssh … audit --json` as `user` (password sign-in from 127.0.0.1).
async fn own_records(server: &Server, user: &str) -> Vec<Value> {
    let mut c = connect(server.addr).await;
    assert!(c.password(user, PASSWORD).await);
    let r = c.exec("audit --json", b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stdout.contains(SECRET_VALUE), "{}", r.stdout);
    serde_json::from_str::<Vec<Value>>(&r.stdout).expect("audit --json")
}

fn with<'a>(records: &'a [Value], field: &str, value: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r[field].as_str() == Some(value))
        .collect()
}

fn one<'a>(records: &'a [Value], action: &str, result: &str) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == action && r["result"] == result)
        .collect();
    assert_eq!(found.len(), 1, "{action}/{result} once in {records:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_recorded_once_with_its_actor_and_source_and_no_secret() {
    let server = Server::start_local().await;
    let alice = server.user("alice", PASSWORD).await;
    let key = random_key();
    let fingerprint = key
        .public_key()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string();
    server
        .store
        .add_ssh_key(alice.id, &key.public_key().to_openssh().unwrap())
        .await
        .unwrap();

    // A wrong password from 127.0.0.7, then a key sign-in from 127.0.0.8.
    let mut wrong = connect_from("127.0.0.7", server.addr).await;
    assert!(!wrong.password("alice", "not the password").await);
    let mut c = connect_from("127.0.0.8", server.addr).await;
    assert!(c.key("alice", &key).await);

    let r = c.exec("create blog", b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = c
        .exec(
            &format!("env blog set API_TOKEN={SECRET_VALUE} --secret"),
            b"",
        )
        .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stdout.contains(SECRET_VALUE) && !r.stderr.contains(SECRET_VALUE));

    // A read-only attach to the running sandbox, then detach.
    eventually("blog running", Duration::from_secs(20), || async {
        let p = server.store.find_project(alice.id, "blog").await.ok()?;
        (p.project.status == kiln::model::ProjectStatus::Running).then_some(())
    })
    .await;
    let viewer = c.exec_tty("attach blog --read-only", 100, 30).await;
    viewer.wait_for("$").await;
    viewer.send(&[0x1d]).await;
    viewer.wait_closed().await;
    // The end is written when the stream is dropped, after the channel closed.
    eventually(
        "the attach's end recorded",
        Duration::from_secs(10),
        || async {
            let all = server
                .store
                .list_audit(&kiln::store::audit::AuditFilter {
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .ok()?;
            all.iter()
                .any(|r| r.action == "session.view.end")
                .then_some(())
        },
    )
    .await;

    let records = own_records(&server, "alice").await;
    let failed = one(&records, "sign_in", "refused");
    assert_eq!(failed["source"], "127.0.0.7");
    assert_eq!(failed["method"], "password");
    assert_eq!(failed["username"], "alice");
    let by_key = with(&records, "key_fingerprint", &fingerprint);
    assert_eq!(by_key.len(), 1, "{records:#?}");
    assert_eq!(by_key[0]["action"], "sign_in");
    assert_eq!(by_key[0]["result"], "ok");
    assert_eq!(by_key[0]["source"], "127.0.0.8");
    assert_eq!(by_key[0]["method"], "publickey");

    let created = one(&records, "project.create", "ok");
    assert_eq!(created["project"], "blog");
    assert_eq!(created["source"], "127.0.0.8");
    assert_eq!(created["front"], "exec");
    let set = one(&records, "env.set", "ok");
    assert_eq!(set["detail"], "API_TOKEN");
    assert_eq!(set["project"], "blog");
    let view = one(&records, "session.view", "ok");
    assert_eq!(view["front"], "stream");
    assert_eq!(view["source"], "127.0.0.8");
    one(&records, "session.view.end", "ok");
    assert!(with(&records, "action", "session.attach").is_empty());
    for r in &records {
        assert_eq!(r["username"], "alice", "{r}");
        assert_eq!(r["operator"], false, "{r}");
    }

    // The value is nowhere: not in the table, not in the human output,
    // not in the operator's view.
    let dump: Vec<String> = sqlx::query_scalar("SELECT audit::text FROM audit")
        .fetch_all(server.store.pool())
        .await
        .unwrap();
    assert!(
        dump.iter().all(|row| !row.contains(SECRET_VALUE)),
        "{dump:#?}"
    );
    let r = c.exec("audit", b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("env.set") && r.stdout.contains("API_TOKEN"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(SECRET_VALUE), "{}", r.stdout);
    let (code, out, err) =
        tokio::task::block_in_place(|| cli(&server, &["audit", "--user", "alice", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("API_TOKEN") && !out.contains(SECRET_VALUE),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_only_their_own_records_and_the_operator_reads_anyones() {
    let server = Server::start().await;
    server.user("alice", PASSWORD).await;
    server.user("bob", PASSWORD).await;
    let mut a = connect(server.addr).await;
    assert!(a.password("alice", PASSWORD).await);
    assert_eq!(a.exec("create alices-secret-plan", b"").await.code, Some(0));
    let mut b = connect(server.addr).await;
    assert!(b.password("bob", PASSWORD).await);
    // Bob probes alice's project: refused as missing, recorded as his.
    let r = b.exec("stop alices-secret-plan", b"").await;
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("no such project"), "{}", r.stderr);
    let mut wrong = connect(server.addr).await;
    assert!(!wrong.password("bob", "a wrong one").await);

    let bobs = own_records(&server, "bob").await;
    assert!(bobs.iter().all(|r| r["username"] == "bob"), "{bobs:#?}");
    let probe = one(&bobs, "project.stop", "not_found");
    assert_eq!(probe["project"], "alices-secret-plan");
    one(&bobs, "sign_in", "refused");
    let alices = own_records(&server, "alice").await;
    assert!(
        alices.iter().all(|r| r["username"] == "alice"),
        "{alices:#?}"
    );
    one(&alices, "project.create", "ok");
    assert!(
        alices.iter().all(|r| r["action"] != "project.stop"),
        "bob's probe reached alice: {alices:#?}"
    );

    // `--since` bounds what is read; a bad one is a usage error.
    let r = a
        .exec("audit --since 2099-01-01T00:00:00Z --json", b"")
        .await;
    assert_eq!(r.stdout.trim(), "[]", "{}", r.stderr);
    let r = a.exec("audit --since yesterday", b"").await;
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("--since takes"), "{}", r.stderr);

    // The operator filters by user and by project.
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            &server,
            &["audit", "--project", "alices-secret-plan", "--json"],
        )
    });
    assert_eq!(code, 0, "{err}");
    let v: Vec<Value> = serde_json::from_str(&out).unwrap();
    let who: Vec<&str> = v.iter().map(|r| r["username"].as_str().unwrap()).collect();
    assert!(who.contains(&"alice") && who.contains(&"bob"), "{out}");
    let (code, out, err) =
        tokio::task::block_in_place(|| cli(&server, &["audit", "--user", "bob"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("project.stop") && !out.contains("project.create"),
        "{out}"
    );
}

#[tokio::test]
async fn the_audit_table_takes_no_update_or_delete_but_retentions() {
    let db = crate::support::TestDb::new().await;
    let store = db.store().await;
    let record = kiln::store::audit::NewAuditRecord {
        username: "alice",
        front: "exec",
        action: "project.create",
        result: "ok",
        ..Default::default()
    };
    store.append_audit(&record).await.unwrap();
    for sql in [
        "UPDATE audit SET result = 'refused'",
        "DELETE FROM audit",
        "TRUNCATE audit",
    ] {
        let e = sqlx::query(sql).execute(store.pool()).await.expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    // Retention keeps what is younger than its window and deletes the rest.
    assert_eq!(
        store.prune_audit(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(store.prune_audit(Duration::ZERO).await.unwrap(), 1);
    // The marker was for that transaction only.
    store.append_audit(&record).await.unwrap();
    assert!(
        sqlx::query("DELETE FROM audit")
            .execute(store.pool())
            .await
            .is_err()
    );
}
