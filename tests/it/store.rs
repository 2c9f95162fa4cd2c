//! The store against real Postgres: validation, tenant scoping, secrets,
//! change notifications.

use std::time::Duration;

use kiln::model::ProjectStatus;
use kiln::model::intent::Intent;
use kiln::store::projects::Project;
use kiln::store::users::User;
use kiln::store::{CryptoError, SecretKey, Store, StoreError};

use crate::support::TestDb;

/// Alice, with a password, and her project "app" (a sandbox and a database).
async fn alice_and_her_app(store: &Store) -> (User, Project) {
    let alice = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap();
    let app = store
        .create_project(alice.id, "app", "", "alice")
        .await
        .unwrap();
    (alice, app)
}

async fn counts(store: &Store) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM sandboxes),
                (SELECT count(*) FROM environments), (SELECT count(*) FROM events)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn bad_project_names_are_refused_and_nothing_is_written() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap();
    let before = counts(&store).await;
    let long = "x".repeat(10_000);
    let cases: [(&str, &str); 5] = [
        ("", "empty"),
        ("   ", "empty"),
        (&long, "limit is 100"),
        ("!!!***///", "no letters or digits"),
        ("bad\x1b]0;pwned\x07name", "control characters"),
    ];
    for (name, expect) in cases {
        let err = store
            .create_project(alice.id, name, "", "alice")
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expect), "{name:?}: {err}");
    }
    let err = store
        .create_project(alice.id, "ok", &"d".repeat(5000), "alice")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("description"), "{err}");
    assert_eq!(counts(&store).await, before);

    // A duplicate slug is a clear conflict, and also writes nothing.
    store
        .create_project(alice.id, "My Blog", "", "alice")
        .await
        .unwrap();
    let before = counts(&store).await;
    let err = store
        .create_project(alice.id, "my-blog!", "", "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("myblog"), "{err}");
    assert_eq!(counts(&store).await, before);
}

#[tokio::test]
async fn a_projects_database_is_named_without_its_slug() {
    // A local database and its role are named after the resource, and every
    // role on the server can list pg_database and pg_roles.
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap();
    store
        .create_project(alice.id, "Secret Plans", "", "alice")
        .await
        .unwrap();
    let (sandbox, database): (String, String) = sqlx::query_as(
        "SELECT (SELECT resource_name FROM sandboxes), (SELECT resource_name FROM databases)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(
        sandbox.starts_with("secretplans-agentruntime-"),
        "{sandbox}"
    );
    assert!(!database.contains("secret"), "{database}");
    assert!(!database.contains("alice"), "{database}");
    assert!(
        database.starts_with("db-") && database.len() == 16,
        "{database}"
    );
}

#[tokio::test]
async fn bad_env_keys_and_values_are_refused_and_nothing_is_written() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (alice, _) = alice_and_her_app(&store).await;
    let before = counts(&store).await;
    let version = store
        .find_project(alice.id, "app")
        .await
        .unwrap()
        .project
        .env_version;
    let big = "v".repeat(40_000);
    let cases: [(&str, &str, &str); 7] = [
        ("A=B", "x", "not a valid variable name"),
        ("MY VAR", "x", "not a valid variable name"),
        ("", "x", "empty"),
        ("DATABASE_URL", "x", "set by Kiln"),
        ("KILN_TOKEN", "x", "reserved for Kiln"),
        ("OK", &big, "limit is"),
        ("OK", "nul\0byte", "NUL"),
    ];
    for (key, value, expect) in cases {
        let err = store
            .set_env(alice.id, "app", key, value, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expect), "{key:?}: {err}");
    }
    assert_eq!(counts(&store).await, before);
    assert_eq!(
        store
            .find_project(alice.id, "app")
            .await
            .unwrap()
            .project
            .env_version,
        version
    );
}

#[tokio::test]
async fn another_tenants_project_behaves_like_one_that_does_not_exist() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap();
    let bob = store
        .create_user("bob", Some("a long password"), false)
        .await
        .unwrap();
    store
        .create_project(alice.id, "secret-plans", "", "alice")
        .await
        .unwrap();
    store
        .set_env(alice.id, "secret-plans", "K", "v", false)
        .await
        .unwrap();
    let before = counts(&store).await;

    let missing = store
        .find_project(bob.id, "nope")
        .await
        .unwrap_err()
        .to_string();
    let foreign = store
        .find_project(bob.id, "secret-plans")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        missing.replace("nope", "X"),
        foreign.replace("secret-plans", "X")
    );
    for intent in Intent::ALL {
        let err = store
            .record_intent(bob.id, "secret-plans", *intent, "bob")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{intent}: {err}");
    }
    assert!(
        store
            .set_env(bob.id, "secret-plans", "K", "x", false)
            .await
            .is_err()
    );
    assert!(store.unset_env(bob.id, "secret-plans", "K").await.is_err());
    assert!(store.list_env(bob.id, "secret-plans").await.is_err());
    assert!(store.list_projects(bob.id).await.unwrap().is_empty());
    assert_eq!(counts(&store).await, before);
    assert_eq!(
        store
            .find_project(alice.id, "secret-plans")
            .await
            .unwrap()
            .project
            .status,
        ProjectStatus::Creating
    );
}

#[tokio::test]
async fn a_different_secret_key_is_refused_at_start() {
    let db = TestDb::new().await;
    let original = SecretKey::generate();
    let store = db.store_with_key(original.clone()).await;
    let (alice, _) = alice_and_her_app(&store).await;
    store
        .set_env(alice.id, "app", "TOKEN", "t0ps3cret", true)
        .await
        .unwrap();

    let other = Store::connect(&db.url, SecretKey::generate(), 2)
        .await
        .unwrap();
    let err = other.migrate().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Crypto(CryptoError::WrongKey)),
        "{err}"
    );
    assert!(err.to_string().contains("Restore the original key"));
    // Reading a secret with the wrong key is an error, never garbage.
    assert!(other.list_env(alice.id, "app").await.is_err());
    // The right key still reads it.
    let vars = store.list_env(alice.id, "app").await.unwrap();
    assert_eq!(vars[0].value, "t0ps3cret");
}

#[tokio::test]
async fn changes_are_announced_and_lease_churn_is_not() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let changes = store.listen().await.unwrap();
    let mut rx = changes.subscribe();
    let (alice, p) = alice_and_her_app(&store).await;
    let mut seen = Vec::new();
    while let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        seen.push(c);
    }
    let project = seen
        .iter()
        .find(|c| c.table == "projects")
        .expect("project change");
    assert_eq!(project.user_id, Some(alice.id));
    assert_eq!(project.id, Some(p.id));
    assert!(
        seen.iter()
            .any(|c| c.table == "sandboxes" && c.project_id == Some(p.id))
    );

    // Taking a lease changes nothing anyone watches: no notification.
    let leased = store
        .lease_batch(
            kiln::store::resources::ResourceKind::Sandbox,
            "r",
            Duration::from_secs(30),
            10,
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let quiet = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(quiet.is_err(), "unexpected notification: {quiet:?}");
}

/// The columns whose changes are not news (migration 0016; kiln_notify's
/// own list for the other tables).
const QUIET: [&str; 7] = [
    "lease_owner",
    "lease_token",
    "lease_until",
    "next_attempt_at",
    "observed_at",
    "updated_at",
    "last_active_at",
];

/// The resource tables and projects name the columns that are news in
/// their update trigger's WHEN (migration 0016): a column added later must
/// be sorted into that list or into the quiet ones, or its changes would go
/// unseen by every dashboard.
#[tokio::test]
async fn every_resource_column_is_quiet_or_announced() {
    let db = TestDb::new().await;
    let store = db.store().await;
    for table in ["sandboxes", "databases", "projects"] {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_schema = 'public' AND table_name = $1",
        )
        .bind(table)
        .fetch_all(store.pool())
        .await
        .unwrap();
        let def: String = sqlx::query_scalar(
            "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
              WHERE t.tgrelid = $1::regclass AND t.tgname = $1 || '_notify_update'",
        )
        .bind(table)
        .fetch_one(store.pool())
        .await
        .unwrap();
        // Postgres prints the row comparison column by column; either way
        // each column appears as old.<name> and new.<name>, whole.
        let def_lower = def.to_lowercase();
        let named = |col: &str| {
            ["old", "new"].iter().all(|side| {
                let needle = format!("{side}.{col}");
                def_lower.match_indices(&needle).any(|(at, _)| {
                    def_lower[at + needle.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| !(c.is_ascii_alphanumeric() || c == '_'))
                })
            })
        };
        let mut unsorted = Vec::new();
        for col in &columns {
            let quiet = QUIET.contains(&col.as_str());
            if quiet == named(col) {
                unsorted.push(col.clone());
            }
        }
        assert!(
            unsorted.is_empty(),
            "{table}: columns neither quiet nor announced (or both): {unsorted:?} in {def}"
        );
        assert!(columns.len() > 15, "{table}: {columns:?}");
    }
}

/// A lease taken and given back, and a schedule moved, announce nothing;
/// a status, an error or connection details do, once, with the payload
/// every listener reads.
#[tokio::test]
async fn resource_updates_announce_what_changed_and_nothing_else() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (alice, p) = alice_and_her_app(&store).await;
    let changes = store.listen().await.unwrap();
    let mut rx = changes.subscribe();
    // The listener is subscribed once a first change reaches it.
    sqlx::query("UPDATE projects SET description = 'x' WHERE id = $1")
        .bind(p.id)
        .execute(store.pool())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the project's change")
        .unwrap();
    assert_eq!(first.table, "projects");
    assert_eq!(first.id, Some(p.id));
    assert_eq!(first.project_id, None);
    assert_eq!(first.user_id, Some(alice.id));

    let quiet_updates = [
        "UPDATE {t} SET lease_owner = 'r', lease_token = gen_random_uuid(),
                       lease_until = now() + interval '30 seconds' WHERE project_id = $1",
        "UPDATE {t} SET lease_owner = NULL, lease_token = NULL, lease_until = NULL,
                       next_attempt_at = now() + interval '1 minute', observed_at = now()
          WHERE project_id = $1",
    ];
    let news = [
        (
            "sandboxes",
            "UPDATE sandboxes SET status = 'RUNNING' WHERE project_id = $1",
        ),
        (
            "sandboxes",
            "UPDATE sandboxes SET last_error = 'boom' WHERE project_id = $1",
        ),
        (
            "databases",
            "UPDATE databases SET db_port = 6543 WHERE project_id = $1",
        ),
        (
            "databases",
            "UPDATE databases SET attempts = 3 WHERE project_id = $1",
        ),
    ];
    for table in ["sandboxes", "databases"] {
        for sql in quiet_updates {
            let n = sqlx::query(sqlx::AssertSqlSafe(sql.replace("{t}", table)))
                .bind(p.id)
                .execute(store.pool())
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(n, 1, "{sql}");
        }
    }
    for (table, sql) in news {
        sqlx::query(sql)
            .bind(p.id)
            .execute(store.pool())
            .await
            .unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no notification for {sql}"))
            .unwrap();
        // Nothing came for the quiet ones before it.
        assert_eq!(c.table, table, "{sql}: {c:?}");
        assert_eq!(c.op, "UPDATE");
        assert_eq!(c.project_id, Some(p.id));
        assert_eq!(c.user_id, Some(alice.id));
        let id: uuid::Uuid = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {table} WHERE project_id = $1"
        )))
        .bind(p.id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(c.id, Some(id));
    }
    let more = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(more.is_err(), "unexpected notification: {more:?}");
}

#[tokio::test]
async fn users_are_unique_case_insensitively_and_can_be_disabled() {
    let db = TestDb::new().await;
    let store = db.store().await;
    store
        .create_user("Alice", Some("a long password"), false)
        .await
        .unwrap();
    let err = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(
        store
            .create_user("bob", Some("short"), false)
            .await
            .is_err()
    );
    assert!(store.create_user("bad name", None, false).await.is_err());
    let (user, hash) = store.password_hash("ALICE").await.unwrap().unwrap();
    assert_eq!(user.username, "alice");
    assert!(kiln::store::users::verify_password("a long password", &hash).await);
    store.disable_user("alice").await.unwrap();
    assert!(store.password_hash("alice").await.unwrap().is_none());
    assert!(store.require_user("alice").await.is_err());
    assert!(store.disable_user("nobody").await.is_err());
}

#[tokio::test]
async fn terminal_activity_is_written_for_all_sandboxes_at_once_and_never_moves_back() {
    use kiln::store::activity::ActivityRecorder;
    type At = Option<chrono::DateTime<chrono::Utc>>;
    let db = TestDb::new().await;
    let key = SecretKey::generate();
    let store = db.store_with_key(key.clone()).await;
    let alice = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap();
    for name in ["one", "two", "idle"] {
        store
            .create_project(alice.id, name, "", "alice")
            .await
            .unwrap();
    }
    let sandbox = |slug: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT s.resource_name FROM sandboxes s JOIN projects p ON p.id = s.project_id
                 WHERE p.slug = $1",
            )
            .bind(slug)
            .fetch_one(store.pool())
            .await
            .unwrap()
        }
    };
    let (one, two, idle) = (
        sandbox("one").await,
        sandbox("two").await,
        sandbox("idle").await,
    );
    let active_at = |name: String| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, At>(
                "SELECT last_active_at FROM sandboxes WHERE resource_name = $1",
            )
            .bind(name)
            .fetch_one(store.pool())
            .await
            .unwrap()
        }
    };

    let recorder = ActivityRecorder::new();
    // Two viewers of one sandbox and one of another: one write names two.
    recorder.tracker(one.clone()).touch();
    recorder.tracker(one.clone()).touch();
    recorder.tracker(two.clone()).touch();
    // Noting is not writing.
    assert_eq!(active_at(one.clone()).await, None);
    assert_eq!(recorder.flush(&store).await.unwrap(), 2);
    assert!(active_at(one.clone()).await.is_some());
    assert!(active_at(two.clone()).await.is_some());
    assert_eq!(active_at(idle.clone()).await, None);
    assert_eq!(recorder.flush(&store).await.unwrap(), 0, "nothing new");

    // A later time already stored stays.
    sqlx::query(
        "UPDATE sandboxes SET last_active_at = now() + interval '1 hour' WHERE resource_name = $1",
    )
    .bind(&one)
    .execute(store.pool())
    .await
    .unwrap();
    let later = active_at(one.clone()).await;
    recorder.tracker(one.clone()).touch();
    assert_eq!(recorder.flush(&store).await.unwrap(), 1);
    assert_eq!(active_at(one.clone()).await, later);

    // A failed write loses nothing: the next one writes it.
    let broken = db.store_with_key(key).await;
    broken.pool().close().await;
    recorder.tracker(idle.clone()).touch();
    assert!(recorder.flush(&broken).await.is_err());
    assert_eq!(active_at(idle.clone()).await, None);
    assert_eq!(recorder.flush(&store).await.unwrap(), 1);
    assert!(active_at(idle).await.is_some());
}

/// Two stores on one database stand for two replicas: however the
/// concurrent reservations interleave, only the budget's worth succeed.
#[tokio::test]
async fn concurrent_sign_in_reservations_from_two_replicas_never_overrun_the_budget() {
    use kiln::ssh::ratelimit::Bucket;
    let db = TestDb::new().await;
    let key = || SecretKey::from_hex(crate::support::ssh::TEST_SECRET_KEY).unwrap();
    let (a, b) = (
        db.store_with_key(key()).await,
        db.store_with_key(key()).await,
    );
    let bucket = vec![Bucket {
        key: "user:alice".into(),
        max: 3,
    }];
    let window = Duration::from_secs(3600);
    let tries: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let bucket = bucket.clone();
            tokio::spawn(async move { store.reserve_signin_attempt(&bucket, window).await })
        })
        .collect();
    let mut granted = Vec::new();
    for t in tries {
        if let Ok(r) = t.await.unwrap().unwrap() {
            granted.push(r);
        }
    }
    assert_eq!(granted.len(), 3);
    // A success gives its slot back, and only its own.
    a.release_signin_attempt(granted.pop().unwrap())
        .await
        .unwrap();
    assert!(
        b.reserve_signin_attempt(&bucket, window)
            .await
            .unwrap()
            .is_ok()
    );
    let wait = a.reserve_signin_attempt(&bucket, window).await.unwrap();
    assert!(wait.is_err(), "{wait:?}");
}

/// Migration 0017 rewrote the name checks of the rows the reconcile loop and
/// the hooks write (a bounded repetition was most of the regex cost). Each
/// check, as Postgres now enforces it on a real row, accepts exactly the
/// names the old expression accepted.
#[tokio::test]
async fn rewritten_name_checks_accept_what_the_old_ones_did() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (alice, p) = alice_and_her_app(&store).await;
    let sandbox: uuid::Uuid = sqlx::query_scalar("SELECT id FROM sandboxes WHERE project_id = $1")
        .bind(p.id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO agent_states (sandbox_id, project_id, user_id, state)
         VALUES ($1, $2, $3, 'idle')",
    )
    .bind(sandbox)
    .bind(p.id)
    .bind(alice.id)
    .execute(store.pool())
    .await
    .unwrap();
    let candidates: Vec<String> = [
        "", "a", "-", "abc-123", "0", "Abc", "a_b", "a.b", "a b", "é", "aé", "a\n", "\na", "a$",
        "^a", "[a]", "a-", "z9",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([19, 20, 21, 62, 63, 64, 200].map(|n| "a".repeat(n)))
    .chain([20, 21, 63, 64].map(|n| "é".repeat(n)))
    .collect();
    // (table, column, the expression migrations 0001/0006/0012 had)
    let checks = [
        ("sandboxes", "resource_name", "^[a-z0-9-]{1,63}$"),
        ("databases", "resource_name", "^[a-z0-9-]{1,63}$"),
        ("databases", "pooled_from", "^[a-z0-9-]{1,63}$"),
        ("projects", "slug", "^[a-z0-9]{1,20}$"),
        ("agent_states", "session", "^[a-z0-9-]{0,20}$"),
    ];
    let key = |table: &str| {
        if table == "projects" {
            "id"
        } else {
            "project_id"
        }
    };
    let mut compared = 0;
    for (table, column, old) in checks {
        for name in &candidates {
            let expected: bool = sqlx::query_scalar("SELECT $1 ~ $2")
                .bind(name)
                .bind(old)
                .fetch_one(store.pool())
                .await
                .unwrap();
            let mut tx = store.pool().begin().await.unwrap();
            let sql = format!(
                "UPDATE {table} SET {column} = $1 WHERE {key} = $2",
                key = key(table)
            );
            let result = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .bind(p.id)
                .execute(&mut *tx)
                .await;
            let accepted = match result {
                Ok(done) => {
                    assert_eq!(done.rows_affected(), 1, "{table}.{column}");
                    true
                }
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => false,
                Err(e) => panic!("{table}.{column} = {name:?}: {e}"),
            };
            tx.rollback().await.unwrap();
            assert_eq!(
                accepted, expected,
                "{table}.{column} = {name:?}: accepted {accepted}, the old check {expected}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, checks.len() * candidates.len());
    // None of them is left to the regex engine's bounded repetition.
    let unrolled: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint
          WHERE contype = 'c'
            AND conrelid IN ('sandboxes'::regclass, 'databases'::regclass,
                             'projects'::regclass, 'agent_states'::regclass)
            AND pg_get_constraintdef(oid) ~ '~ ''[^'']*\\{'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(unrolled.is_empty(), "{unrolled:?}");
}
