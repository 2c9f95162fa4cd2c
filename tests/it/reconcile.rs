//! The reconcile loop against real Postgres with the in-memory fake driver.
//!
//! Over 500 lines: independent tests of the loop's guarantees (leases,
//! fencing, backoff, two replicas), each with its own fake-driver set-up.

use std::sync::Arc;
use std::time::Duration;

use kiln::driver::{DriverError, Observed};
use kiln::fake_driver::{FakeDriver, Kind, Op};
use kiln::model::intent::Intent;
use kiln::model::{ProjectStatus, ResourceStatus};
use kiln::reconcile::{CycleStats, ReconcileConfig, Reconciler};
use kiln::store::Store;
use kiln::store::resources::{Outcome, ResourceKind, WriteResult};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{TestDb, eventually};

fn config() -> ReconcileConfig {
    let mut c = ReconcileConfig {
        resync: Duration::from_millis(50),
        ..Default::default()
    };
    c.schedule.backoff_base = Duration::from_millis(20);
    c.schedule.backoff_cap = Duration::from_millis(100);
    c.schedule.poll_interval = Duration::from_millis(20);
    c.shutdown_grace = Duration::from_secs(5);
    c
}

fn reconciler(
    store: &Store,
    fake: &Arc<FakeDriver>,
    replica: &str,
    cfg: ReconcileConfig,
) -> Reconciler {
    Reconciler::new(store.clone(), fake.clone(), fake.clone(), cfg, replica)
}

async fn user(store: &Store, name: &str) -> Uuid {
    store
        .create_user(name, Some("a long password"), false)
        .await
        .unwrap()
        .id
}

async fn status(store: &Store, user: Uuid, project: &str) -> ProjectStatus {
    store
        .find_project(user, project)
        .await
        .unwrap()
        .project
        .status
}

async fn resource_names(store: &Store, user: Uuid, project: &str) -> (String, String) {
    let p = store.find_project(user, project).await.unwrap();
    let name = |k| {
        p.resources
            .iter()
            .find(|r| r.kind == k)
            .unwrap()
            .resource_name
            .clone()
    };
    (name(ResourceKind::Sandbox), name(ResourceKind::Database))
}

/// Runs passes until nothing is due, bounded so a bug cannot hang the suite.
async fn settle(r: &Reconciler) {
    for _ in 0..50 {
        let (stats, _) = r.drain().await.unwrap();
        if stats.leased == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn a_project_is_driven_to_running_then_stopped_started_and_deleted() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let r = reconciler(&store, &fake, "r1", config());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "My Blog!", "", "alice")
        .await
        .unwrap();
    assert_eq!(
        status(&store, alice, "myblog").await,
        ProjectStatus::Creating
    );

    settle(&r).await;
    assert_eq!(
        status(&store, alice, "My Blog!").await,
        ProjectStatus::Running
    );
    let (sandbox, database) = resource_names(&store, alice, "myblog").await;
    assert_eq!(fake.get(Kind::Sandbox, &sandbox), Observed::Running);
    assert_eq!(fake.get(Kind::Database, &database), Observed::Running);
    let env = fake.env_of(&sandbox).unwrap();
    let url = env.iter().find(|(k, _)| k == "DATABASE_URL").unwrap();
    assert!(url.1.contains(&database), "{url:?}");

    assert_eq!(
        store
            .record_intent(alice, "myblog", Intent::Stop, "alice")
            .await
            .unwrap(),
        ProjectStatus::Stopping
    );
    settle(&r).await;
    assert_eq!(
        status(&store, alice, "myblog").await,
        ProjectStatus::Stopped
    );
    assert_eq!(fake.get(Kind::Sandbox, &sandbox), Observed::Stopped);

    store
        .record_intent(alice, "myblog", Intent::Start, "alice")
        .await
        .unwrap();
    settle(&r).await;
    assert_eq!(
        status(&store, alice, "myblog").await,
        ProjectStatus::Running
    );

    store
        .record_intent(alice, "myblog", Intent::Delete, "alice")
        .await
        .unwrap();
    settle(&r).await;
    assert!(store.find_project(alice, "myblog").await.is_err());
    assert_eq!(fake.get(Kind::Sandbox, &sandbox), Observed::Absent);
    assert_eq!(fake.get(Kind::Database, &database), Observed::Absent);
    // The audit trail outlives the project.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE user_id = $1 AND to_status = 'TERMINATED'",
    )
    .bind(alice)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(n >= 1);
}

#[tokio::test]
async fn two_loops_perform_every_transition_exactly_once() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    fake.set_latency(Duration::from_millis(2));
    let alice = user(&store, "alice").await;
    for i in 0..200 {
        store
            .create_project(alice, &format!("p{i}"), "", "alice")
            .await
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let mut loops = Vec::new();
    for name in ["a", "b"] {
        let r = reconciler(&store, &fake, name, config());
        let changes = Some(store.listen().await.unwrap().subscribe());
        let stop = shutdown.clone();
        loops.push(tokio::spawn(
            async move { r.run(changes, stop).await.unwrap() },
        ));
    }
    eventually("200 projects RUNNING", Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE status = 'RUNNING'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        (n == 200).then_some(())
    })
    .await;
    // Stop them all and wait again.
    for i in 0..200 {
        store
            .record_intent(alice, &format!("p{i}"), Intent::Stop, "alice")
            .await
            .unwrap();
    }
    eventually("200 projects STOPPED", Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE status = 'STOPPED'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        (n == 200).then_some(())
    })
    .await;
    shutdown.cancel();
    let mut worked = Vec::new();
    for l in loops {
        worked.push(l.await.unwrap().transitions);
    }
    for kind in [Kind::Sandbox, Kind::Database] {
        for op in [Op::Ensure, Op::Stop] {
            let counts = fake.call_counts(kind, op);
            assert_eq!(counts.len(), 200, "{kind:?} {op:?} reached every resource");
            assert!(
                counts.values().all(|&c| c == 1),
                "{kind:?} {op:?} exactly once: {counts:?}"
            );
        }
    }
    // Both loops took part (the lease split the work), and together they
    // made exactly the 800 resource transitions the test asked for.
    assert_eq!(worked.iter().sum::<usize>(), 800, "{worked:?}");
    assert!(
        worked.iter().all(|&w| w > 0),
        "both replicas worked: {worked:?}"
    );
}

/// Outcomes are written a batch per transaction (issue 23). Two replicas
/// lease small batches of 2,000 projects' sandboxes and databases, so one
/// project's two resources are often in two replicas' batches at once and
/// their writes lock the same projects: no pass may fail (a deadlock would
/// fail it), every transition is made once, and both replicas write in
/// batches of more than one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_of_two_replicas_on_overlapping_projects_never_deadlock() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    create_projects(&store, alice, 2000).await;
    two_replicas_bring_up(&store, 2000).await;
}

/// The same with every project's two resources due at opposite ends of
/// the queue (sandboxes in creation order, databases in reverse): each
/// batch of sandboxes shares its projects with batches of databases leased
/// at other times, mostly by the other replica, and the outcome writes of
/// both replicas lock those projects while the other writes them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_projects_whose_resources_alternate_between_batches_never_deadlock() {
    const N: usize = 2000;
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    create_projects(&store, alice, N).await;
    sqlx::query(
        "WITH n AS (SELECT id, substr(name, 2)::int AS i FROM projects WHERE user_id = $1),
              s AS (UPDATE sandboxes t SET next_attempt_at = now() - make_interval(secs => $2 - n.i)
                      FROM n WHERE t.project_id = n.id)
         UPDATE databases t SET next_attempt_at = now() - make_interval(secs => n.i + 1)
           FROM n WHERE t.project_id = n.id",
    )
    .bind(alice)
    .bind(N as i32)
    .execute(store.pool())
    .await
    .unwrap();
    two_replicas_bring_up(&store, N).await;
    // The two resources of most projects were written by different replicas.
    let split: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
            SELECT project_id FROM events
             WHERE kind IN ('sandbox', 'database') AND to_status = 'RUNNING'
             GROUP BY project_id HAVING count(DISTINCT actor) = 2) x",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(
        split > 0,
        "some projects had their sandbox and their database in two replicas' batches"
    );
}

async fn create_projects(store: &Store, owner: Uuid, n: usize) {
    for i in 0..n {
        store
            .create_project(owner, &format!("p{i}"), "", "alice")
            .await
            .unwrap();
    }
}

/// Two replicas with batches of 50 bring `n` new projects to RUNNING; no
/// pass fails, each resource is ensured once, both replicas work and write
/// several outcomes per transaction.
async fn two_replicas_bring_up(store: &Store, n: usize) {
    let fake = Arc::new(FakeDriver::new());
    fake.set_latency(Duration::from_millis(1));
    let shutdown = CancellationToken::new();
    let mut loops = Vec::new();
    for name in ["a", "b"] {
        let mut cfg = config();
        cfg.batch_size = 50;
        let r = reconciler(store, &fake, name, cfg);
        let changes = Some(store.listen().await.unwrap().subscribe());
        let stop = shutdown.clone();
        loops.push(tokio::spawn(
            async move { r.run(changes, stop).await.unwrap() },
        ));
    }
    let count = |status: &'static str| {
        let store = store.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE status = $1")
                .bind(status)
                .fetch_one(store.pool())
                .await
                .unwrap();
            n as usize
        }
    };
    eventually(
        "every project RUNNING",
        Duration::from_secs(240),
        || async { (count("RUNNING").await == n).then_some(()) },
    )
    .await;
    shutdown.cancel();
    let mut stats = Vec::new();
    for l in loops {
        stats.push(l.await.unwrap());
    }
    for kind in [Kind::Sandbox, Kind::Database] {
        let counts = fake.call_counts(kind, Op::Ensure);
        assert_eq!(counts.len(), n, "{kind:?} ensure reached every resource");
        assert!(counts.values().all(|&c| c == 1), "{kind:?} ensured once");
    }
    let failed: usize = stats.iter().map(|s| s.failed_passes).sum();
    assert_eq!(failed, 0, "no pass failed (deadlocked): {stats:?}");
    // Both resources of each project to RUNNING, each written once by one
    // of the replicas.
    let transitions: usize = stats.iter().map(|s| s.transitions).sum();
    assert_eq!(transitions, 2 * n, "{stats:?}");
    assert!(
        stats.iter().all(|s| s.transitions > 0),
        "both replicas worked: {stats:?}"
    );
    let writes: usize = stats.iter().map(|s| s.write_batches).sum();
    assert!(
        writes < transitions,
        "outcomes were written several per transaction: {writes} transactions for {transitions} transitions"
    );
}

#[tokio::test]
async fn a_dead_loops_rows_are_finished_by_another_and_its_late_write_is_fenced() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "stuck", "", "alice")
        .await
        .unwrap();
    let (sandbox, _) = resource_names(&store, alice, "stuck").await;
    fake.hang(&sandbox);

    let mut cfg = config();
    cfg.lease = Duration::from_millis(500);
    let dying = reconciler(&store, &fake, "dying", cfg.clone());
    let task = tokio::spawn(async move { dying.drain().await });
    eventually(
        "the dying loop to call ensure",
        Duration::from_secs(10),
        || async { (fake.calls(Kind::Sandbox, Op::Ensure, &sandbox) == 1).then_some(()) },
    )
    .await;
    // Capture the dead loop's lease the way its late write would present it.
    let mut leased = store
        .lease_batch(ResourceKind::Sandbox, "probe", Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert!(
        leased.is_empty(),
        "the row is still leased by the dying loop"
    );
    let row = sqlx::query(
        "SELECT lease_owner, lease_token, intent_seq FROM sandboxes WHERE resource_name = $1",
    )
    .bind(&sandbox)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("lease_owner"), "dying");
    let dead_token: Uuid = row.get("lease_token");
    task.abort();
    let _ = task.await;
    fake.release(&sandbox);

    // The survivor cannot take the row before the lease expires, then does.
    let survivor = reconciler(&store, &fake, "survivor", cfg);
    eventually(
        "the survivor to finish the project",
        Duration::from_secs(10),
        || async {
            survivor.drain().await.unwrap();
            (status(&store, alice, "stuck").await == ProjectStatus::Running).then_some(())
        },
    )
    .await;

    // The dead loop's write arrives late: rejected, nothing changes.
    leased = Vec::new();
    let _ = leased;
    let before: String =
        sqlx::query_scalar("SELECT status FROM sandboxes WHERE resource_name = $1")
            .bind(&sandbox)
            .fetch_one(store.pool())
            .await
            .unwrap();
    let p = store.find_project(alice, "stuck").await.unwrap();
    let s = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    let late = kiln::store::resources::Leased {
        kind: ResourceKind::Sandbox,
        id: s.id,
        project_id: p.project.id,
        user_id: alice,
        resource_name: sandbox.clone(),
        namespace: String::new(),
        project_slug: "stuck".into(),
        project_name: "stuck".into(),
        desired: kiln::model::Desired::Running,
        status: ResourceStatus::Creating,
        intent_seq: row.get("intent_seq"),
        attempts: 0,
        last_error: None,
        env_version: 1,
        applied_env_version: 0,
        password_enc: None,
        pooled_from: None,
        lease_token: dead_token,
        never_worked: false,
        created_at: chrono::Utc::now(),
    };
    let result = store
        .record_outcome(
            &late,
            &Outcome {
                status: ResourceStatus::Error,
                attempts: 1,
                last_error: Some("late write".into()),
                failure_kind: None,
                next_attempt_in: None,
                applied_env_version: None,
                connection: None,
                applied_database: None,
                message: "late".into(),
            },
            "dying",
        )
        .await
        .unwrap();
    assert_eq!(result, WriteResult::LeaseLost);
    let after: String = sqlx::query_scalar("SELECT status FROM sandboxes WHERE resource_name = $1")
        .bind(&sandbox)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(after, "RUNNING");
}

#[tokio::test]
async fn stop_pressed_while_a_start_is_in_flight_ends_stopped() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "race", "", "alice")
        .await
        .unwrap();
    let (sandbox, database) = resource_names(&store, alice, "race").await;
    // Both resources' starts hang, so the stop lands while both are in flight.
    fake.hang(&sandbox);
    fake.hang(&database);
    let r = Arc::new(reconciler(&store, &fake, "r1", config()));
    let r2 = r.clone();
    let pass = tokio::spawn(async move { r2.drain().await.unwrap() });
    eventually(
        "both ensures in flight",
        Duration::from_secs(10),
        || async {
            (fake.calls(Kind::Sandbox, Op::Ensure, &sandbox) == 1
                && fake.calls(Kind::Database, Op::Ensure, &database) == 1)
                .then_some(())
        },
    )
    .await;
    store
        .record_intent(alice, "race", Intent::Stop, "alice")
        .await
        .unwrap();
    fake.release(&sandbox);
    fake.release(&database);
    let (stats, _) = pass.await.unwrap();
    assert_eq!(
        stats.superseded, 2,
        "both starts' writes gave way to the stop"
    );
    settle(&r).await;
    assert_eq!(status(&store, alice, "race").await, ProjectStatus::Stopped);
    assert_eq!(fake.get(Kind::Sandbox, &sandbox), Observed::Stopped);
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_shown_meanwhile() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "flaky", "", "alice")
        .await
        .unwrap();
    let (sandbox, _) = resource_names(&store, alice, "flaky").await;
    fake.fail_next(
        Kind::Sandbox,
        Op::Ensure,
        Some(&sandbox),
        DriverError::transient("connection reset"),
    );
    let r = reconciler(&store, &fake, "r1", config());
    r.drain().await.unwrap();
    let p = store.find_project(alice, "flaky").await.unwrap();
    let s = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    assert_eq!(s.status, ResourceStatus::Creating);
    assert_eq!(s.attempts, 1);
    assert_eq!(s.last_error.as_deref(), Some("connection reset"));
    assert!(s.next_attempt_at.is_some());
    settle(&r).await;
    let p = store.find_project(alice, "flaky").await.unwrap();
    assert_eq!(p.project.status, ProjectStatus::Running);
    let s = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    assert_eq!((s.attempts, s.last_error.as_deref()), (0, None));
    assert_eq!(fake.calls(Kind::Sandbox, Op::Ensure, &sandbox), 2);
}

/// A sandbox whose `DATABASE_URL` was built from the connection its
/// database's outcome records (in the same batch or a later one) is not
/// synced again for it; one made without it (the database's credentials
/// came later) is, once.
#[tokio::test]
async fn a_sandbox_is_synced_for_its_database_url_only_when_it_was_made_without_it() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    let r = reconciler(&store, &fake, "r1", config());
    let sandbox_of = |p: &kiln::store::projects::ProjectView| {
        p.resources
            .iter()
            .find(|r| r.kind == ResourceKind::Sandbox)
            .unwrap()
            .clone()
    };
    let database_url = |sandbox: &str| {
        fake.env_of(sandbox)
            .unwrap()
            .into_iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v)
    };

    store
        .create_project(alice, "together", "", "alice")
        .await
        .unwrap();
    let (together, together_db) = resource_names(&store, alice, "together").await;
    settle(&r).await;
    let p = store.find_project(alice, "together").await.unwrap();
    assert_eq!(p.project.status, ProjectStatus::Running);
    let url = database_url(&together).expect("DATABASE_URL at creation");
    assert!(url.contains(&together_db), "{url}");
    assert_eq!(fake.calls(Kind::Sandbox, Op::SyncEnv, &together), 0);
    assert_eq!(
        sandbox_of(&p).applied_env_version,
        Some(p.project.env_version),
        "the sandbox is up to date"
    );

    // The database comes up a batch later than its sandbox, with the
    // connection the sandbox already has: no sync.
    store
        .create_project(alice, "apart", "", "alice")
        .await
        .unwrap();
    let (apart, apart_db) = resource_names(&store, alice, "apart").await;
    fake.fail_next(
        Kind::Database,
        Op::Ensure,
        Some(&apart_db),
        DriverError::transient("not yet"),
    );
    let version_before = store
        .find_project(alice, "apart")
        .await
        .unwrap()
        .project
        .env_version;
    settle(&r).await;
    let p = store.find_project(alice, "apart").await.unwrap();
    assert_eq!(p.project.status, ProjectStatus::Running);
    assert_eq!(fake.calls(Kind::Database, Op::Ensure, &apart_db), 2);
    assert_eq!(fake.calls(Kind::Sandbox, Op::SyncEnv, &apart), 0);
    assert_eq!(p.project.env_version, version_before);
    let url = database_url(&apart).expect("DATABASE_URL at creation");
    assert!(url.contains(&apart_db), "{url}");

    // The database's credentials exist only once it runs, after its
    // sandbox was made without them: the sandbox is synced once, for the
    // connection recorded then.
    fake.credentials_once_running();
    store
        .create_project(alice, "late", "", "alice")
        .await
        .unwrap();
    let (late, late_db) = resource_names(&store, alice, "late").await;
    fake.fail_next(
        Kind::Database,
        Op::Ensure,
        Some(&late_db),
        DriverError::transient("not yet"),
    );
    let version_before = store
        .find_project(alice, "late")
        .await
        .unwrap()
        .project
        .env_version;
    settle(&r).await;
    let p = store.find_project(alice, "late").await.unwrap();
    assert_eq!(p.project.status, ProjectStatus::Running);
    assert_eq!(fake.calls(Kind::Sandbox, Op::SyncEnv, &late), 1);
    assert_eq!(p.project.env_version, version_before + 1);
    assert_eq!(
        sandbox_of(&p).applied_env_version,
        Some(p.project.env_version)
    );
    let url = database_url(&late).expect("DATABASE_URL after the sync");
    assert!(url.contains(&late_db), "{url}");
}

#[tokio::test]
async fn a_permanent_failure_ends_in_error_and_a_retry_recovers() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "broken", "", "alice")
        .await
        .unwrap();
    let (_, database) = resource_names(&store, alice, "broken").await;
    fake.fail_next(
        Kind::Database,
        Op::Ensure,
        Some(&database),
        DriverError::permanent("forbidden: quota exceeded"),
    );
    let r = reconciler(&store, &fake, "r1", config());
    settle(&r).await;
    let p = store.find_project(alice, "broken").await.unwrap();
    assert_eq!(p.project.status, ProjectStatus::Error);
    let d = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Database)
        .unwrap();
    assert_eq!(d.last_error.as_deref(), Some("forbidden: quota exceeded"));
    // ERROR stays put: no retries behind the user's back.
    settle(&r).await;
    assert_eq!(fake.calls(Kind::Database, Op::Ensure, &database), 1);
    // Start is refused? No: Retry is the documented way; Start from ERROR is allowed too.
    let err = store
        .record_intent(alice, "broken", Intent::Retry, "alice")
        .await;
    assert_eq!(err.unwrap(), ProjectStatus::Starting);
    settle(&r).await;
    assert_eq!(
        status(&store, alice, "broken").await,
        ProjectStatus::Running
    );
    assert_eq!(fake.calls(Kind::Database, Op::Ensure, &database), 2);
}

#[tokio::test]
async fn env_changes_reach_the_running_sandbox() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "envy", "", "alice")
        .await
        .unwrap();
    let r = reconciler(&store, &fake, "r1", config());
    settle(&r).await;
    let (sandbox, _) = resource_names(&store, alice, "envy").await;
    // The database's connection details arriving may already have caused one.
    let syncs_before = fake.calls(Kind::Sandbox, Op::SyncEnv, &sandbox);
    store
        .set_env(alice, "envy", "GREETING", "hello", false)
        .await
        .unwrap();
    store
        .set_env(alice, "envy", "API_TOKEN", "s3cret", true)
        .await
        .unwrap();
    settle(&r).await;
    let env = fake.env_of(&sandbox).unwrap();
    assert!(
        env.contains(&("GREETING".into(), "hello".into())),
        "{env:?}"
    );
    assert!(
        env.contains(&("API_TOKEN".into(), "s3cret".into())),
        "{env:?}"
    );
    // The secret is not in the table in clear.
    let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM environments WHERE value = 's3cret' OR position('s3cret' in encode(value_enc, 'escape')) > 0")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(raw, 0);
    store.unset_env(alice, "envy", "GREETING").await.unwrap();
    settle(&r).await;
    let env = fake.env_of(&sandbox).unwrap();
    assert!(!env.iter().any(|(k, _)| k == "GREETING"), "{env:?}");
    assert_eq!(
        fake.calls(Kind::Sandbox, Op::SyncEnv, &sandbox),
        syncs_before + 2
    );
    // The console can tell the sandbox has caught up.
    let p = store.find_project(alice, "envy").await.unwrap();
    let sb = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    assert_eq!(sb.applied_env_version, Some(p.project.env_version));
}

/// Creates project `name`, starts a loop whose ensure of its sandbox hangs,
/// and tells the loop to stop once that call is in flight. Returns the
/// sandbox and the loop's task.
async fn stopped_while_ensure_hangs(
    store: &Store,
    fake: &Arc<FakeDriver>,
    user: Uuid,
    name: &str,
    cfg: ReconcileConfig,
) -> (
    String,
    tokio::task::JoinHandle<kiln::store::StoreResult<CycleStats>>,
) {
    store.create_project(user, name, "", "alice").await.unwrap();
    let (sandbox, _) = resource_names(store, user, name).await;
    fake.hang(&sandbox);
    let r = reconciler(store, fake, "leaving", cfg);
    let stop = CancellationToken::new();
    let stop2 = stop.clone();
    let task = tokio::spawn(async move { r.run(None, stop2).await });
    eventually("ensure in flight", Duration::from_secs(10), || async {
        (fake.calls(Kind::Sandbox, Op::Ensure, &sandbox) == 1).then_some(())
    })
    .await;
    stop.cancel();
    (sandbox, task)
}

#[tokio::test]
async fn graceful_shutdown_gives_leases_back() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    let mut cfg = config();
    cfg.shutdown_grace = Duration::from_millis(200);
    let (_, task) = stopped_while_ensure_hangs(&store, &fake, alice, "slow", cfg).await;
    task.await.unwrap().unwrap();
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sandboxes WHERE lease_owner IS NOT NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(held, 0);
}

#[tokio::test]
async fn shutdown_lets_the_pass_in_flight_finish_and_write() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    let (sandbox, task) = stopped_while_ensure_hangs(&store, &fake, alice, "busy", config()).await;
    // The call returns after shutdown began: its result is still written
    // and counted, and no new pass starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.release(&sandbox);
    let stats = task.await.unwrap().unwrap();
    assert!(stats.transitions >= 1, "{stats:?}");
    let (status, owner): (String, Option<String>) =
        sqlx::query_as("SELECT status, lease_owner FROM sandboxes WHERE resource_name = $1")
            .bind(&sandbox)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(status, "RUNNING");
    assert_eq!(owner, None);
    assert_eq!(fake.calls(Kind::Sandbox, Op::Ensure, &sandbox), 1);
}

#[tokio::test]
async fn drift_is_noticed_on_observation() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "drifty", "", "alice")
        .await
        .unwrap();
    let mut cfg = config();
    cfg.schedule.observe_interval = Duration::from_millis(100);
    let r = reconciler(&store, &fake, "r1", cfg);
    settle(&r).await;
    let (sandbox, _) = resource_names(&store, alice, "drifty").await;
    // Someone kills the session behind Kiln's back; the next observation heals it.
    fake.set(Kind::Sandbox, &sandbox, Observed::Absent);
    eventually(
        "the sandbox to be recreated",
        Duration::from_secs(10),
        || async {
            r.drain().await.unwrap();
            (fake.calls(Kind::Sandbox, Op::Ensure, &sandbox) == 2).then_some(())
        },
    )
    .await;
    assert_eq!(fake.get(Kind::Sandbox, &sandbox), Observed::Running);
    assert_eq!(
        status(&store, alice, "drifty").await,
        ProjectStatus::Running
    );
}

/// A create's first pass knows what it would observe (nothing there yet),
/// so it goes straight to `ensure` (issue 23's latency): no observation
/// before, the project still ends RUNNING, and from its next pass on the
/// row is observed like any other (drift included).
#[tokio::test]
async fn a_create_skips_its_first_observation_and_is_observed_afterwards() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "quick", "", "alice")
        .await
        .unwrap();
    let r = reconciler(&store, &fake, "r1", config());
    let (stats, _, _) = r.pass().await.unwrap();
    assert_eq!(stats.leased, 2);
    assert_eq!(status(&store, alice, "quick").await, ProjectStatus::Running);
    let (sandbox, database) = resource_names(&store, alice, "quick").await;
    for (kind, name) in [(Kind::Sandbox, &sandbox), (Kind::Database, &database)] {
        assert_eq!(fake.total_calls(kind, Op::Observe), 0, "{kind:?}");
        assert_eq!(fake.calls(kind, Op::Ensure, name), 1, "{kind:?}");
    }
    let observed_at = |table: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(sqlx::AssertSqlSafe(
                format!("SELECT observed_at FROM {table}"),
            ))
            .fetch_one(store.pool())
            .await
            .unwrap()
        }
    };
    let written = observed_at("sandboxes").await;
    assert!(written.is_some(), "the outcome counts as an observation");

    // Due again (its next observation), after the sandbox vanished behind
    // Kiln's back: observed this time, and brought back.
    fake.set(Kind::Sandbox, &sandbox, Observed::Absent);
    for table in ["sandboxes", "databases"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET next_attempt_at = now()"
        )))
        .execute(store.pool())
        .await
        .unwrap();
    }
    let (stats, _, _) = r.pass().await.unwrap();
    assert_eq!(stats.leased, 2);
    for kind in [Kind::Sandbox, Kind::Database] {
        assert_eq!(fake.total_calls(kind, Op::Observe), 1, "{kind:?}");
    }
    assert_eq!(fake.calls(Kind::Sandbox, Op::Ensure, &sandbox), 2);
    assert_eq!(fake.calls(Kind::Database, Op::Ensure, &database), 1);
    assert!(observed_at("sandboxes").await > written);
    assert_eq!(status(&store, alice, "quick").await, ProjectStatus::Running);
}

/// A create whose lease a replica left to expire (it died mid-work, its
/// `ensure` perhaps done) is observed before anything is done again: the
/// survivor finds the resources there and only records them.
#[tokio::test]
async fn a_create_left_by_a_dead_replica_is_observed_not_ensured_again() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = Arc::new(FakeDriver::new());
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "orphan", "", "alice")
        .await
        .unwrap();
    let (sandbox, database) = resource_names(&store, alice, "orphan").await;
    // The dead replica's lease, and what its ensure made before it died.
    for kind in [ResourceKind::Sandbox, ResourceKind::Database] {
        let leased = store
            .lease_batch(kind, "dead", Duration::from_millis(1), 10)
            .await
            .unwrap();
        assert_eq!(leased.len(), 1);
        assert!(leased[0].never_worked, "the first lease of a new row");
    }
    fake.set(Kind::Sandbox, &sandbox, Observed::Running);
    fake.set(Kind::Database, &database, Observed::Running);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let r = reconciler(&store, &fake, "survivor", config());
    settle(&r).await;
    assert_eq!(
        status(&store, alice, "orphan").await,
        ProjectStatus::Running
    );
    for (kind, name) in [(Kind::Sandbox, &sandbox), (Kind::Database, &database)] {
        assert!(fake.total_calls(kind, Op::Observe) >= 1, "{kind:?}");
        assert_eq!(fake.calls(kind, Op::Ensure, name), 0, "{kind:?}");
    }
}
