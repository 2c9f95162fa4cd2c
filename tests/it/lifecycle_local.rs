//! The whole lifecycle through the real reconcile loop and the local driver:
//! real tmux sessions, real databases and roles on the real Postgres server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kiln::driver::{DatabaseDriver, DatabaseSpec, ResourceRef};
use kiln::local::{LocalDatabases, LocalSandboxes};
use kiln::model::ProjectStatus;
use kiln::model::intent::Intent;
use kiln::reconcile::{ReconcileConfig, Reconciler};
use kiln::store::Store;
use kiln::store::resources::ResourceKind;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::support::{TestDb, eventually};

/// A short scratch data dir (tmux socket paths are limited) whose
/// sandboxes' tmux servers go away with it.
struct Scratch(PathBuf, LocalSandboxes);

impl Scratch {
    fn new() -> Self {
        let dir = PathBuf::from(format!(
            "/tmp/kl-{}",
            &Uuid::new_v4().simple().to_string()[..8]
        ));
        let driver = LocalSandboxes::new(&dir, None).expect("local sandboxes");
        Self(dir, driver)
    }
    /// tmux on the server of sandbox `resource`.
    fn tmux(&self, resource: &str, args: &[&str]) -> std::process::Output {
        self.1
            .tmux_command(resource)
            .args(args)
            .output()
            .expect("run tmux")
    }
    fn has_session(&self, name: &str) -> bool {
        self.tmux(name, &["has-session", "-t", &format!("={name}")])
            .status
            .success()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.1.kill_all_servers();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config() -> ReconcileConfig {
    let mut c = ReconcileConfig {
        resync: Duration::from_millis(50),
        ..Default::default()
    };
    c.schedule.poll_interval = Duration::from_millis(50);
    c
}

async fn settle_to(store: &Store, r: &Reconciler, user: Uuid, project: &str, want: ProjectStatus) {
    eventually(
        &format!("{project} to be {want}"),
        Duration::from_secs(30),
        || async {
            r.drain().await.unwrap();
            match store.find_project(user, project).await {
                Ok(p) if p.project.status == want => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

async fn names(store: &Store, user: Uuid, project: &str) -> (String, String) {
    let p = store.find_project(user, project).await.unwrap();
    let of = |k| {
        p.resources
            .iter()
            .find(|r| r.kind == k)
            .unwrap()
            .resource_name
            .clone()
    };
    (of(ResourceKind::Sandbox), of(ResourceKind::Database))
}

/// The project database's credentials exactly as Kiln stored them.
async fn stored_url(store: &Store, databases: &LocalDatabases, db_name: &str) -> String {
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT password_enc FROM databases WHERE resource_name = $1")
            .bind(db_name)
            .fetch_one(store.pool())
            .await
            .unwrap();
    let password = store
        .key()
        .decrypt_string(&sealed, &ResourceKind::Database.password_context(db_name))
        .unwrap();
    let spec = DatabaseSpec {
        resource: ResourceRef {
            resource_name: db_name.into(),
            namespace: String::new(),
            project_slug: String::new(),
            owner: uuid::Uuid::nil(),
        },
        password: password.into(),
        sandbox: None,
    };
    databases.credentials(&spec).await.unwrap().unwrap().url()
}

async fn exists(admin: &mut PgConnection, sql: &str, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(format!("SELECT EXISTS ({sql})")))
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_stop_start_delete_on_the_local_driver() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let scratch = Scratch::new();
    let sandboxes = LocalSandboxes::new(&scratch.0, Some("sleep 3600".into())).unwrap();
    let databases = LocalDatabases::connect(&db.admin_url).await.unwrap();
    let r = Reconciler::new(
        store.clone(),
        Arc::new(sandboxes.clone()),
        Arc::new(LocalDatabases::connect(&db.admin_url).await.unwrap()),
        config(),
        "test",
    );
    let alice = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap()
        .id;
    store
        .create_project(alice, "Life Cycle", "", "alice")
        .await
        .unwrap();
    let (sandbox, database) = names(&store, alice, "lifecycle").await;

    // create → RUNNING
    settle_to(&store, &r, alice, "lifecycle", ProjectStatus::Running).await;
    assert!(scratch.has_session(&sandbox), "the tmux session exists");
    let url = stored_url(&store, &databases, &database).await;
    let mut conn = PgConnection::connect(&url)
        .await
        .expect("the stored credentials connect");
    sqlx::raw_sql("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let shown = scratch.tmux(
        &sandbox,
        &[
            "show-environment",
            "-t",
            &format!("={sandbox}"),
            "DATABASE_URL",
        ],
    );
    let shown = String::from_utf8_lossy(&shown.stdout).trim().to_string();
    assert_eq!(
        shown,
        format!("DATABASE_URL={url}"),
        "DATABASE_URL is in the session's environment"
    );
    let dir = sandboxes.sandbox_dir(&ResourceRef {
        resource_name: sandbox.clone(),
        namespace: String::new(),
        project_slug: String::new(),
        owner: uuid::Uuid::nil(),
    });
    assert!(dir.is_dir());

    // stop → STOPPED: session gone, data kept
    store
        .record_intent(alice, "lifecycle", Intent::Stop, "alice")
        .await
        .unwrap();
    settle_to(&store, &r, alice, "lifecycle", ProjectStatus::Stopped).await;
    assert!(!scratch.has_session(&sandbox), "the session is gone");
    assert!(dir.is_dir(), "the sandbox directory is kept");
    assert!(
        PgConnection::connect(&url).await.is_err(),
        "a stopped database refuses connections"
    );

    // start → RUNNING, with the data still there
    store
        .record_intent(alice, "lifecycle", Intent::Start, "alice")
        .await
        .unwrap();
    settle_to(&store, &r, alice, "lifecycle", ProjectStatus::Running).await;
    assert!(scratch.has_session(&sandbox));
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let body: String = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(body, "kept");
    conn.close().await.unwrap();

    // delete → rows, session, directory, database and role gone
    store
        .record_intent(alice, "lifecycle", Intent::Delete, "alice")
        .await
        .unwrap();
    eventually(
        "the project to be gone",
        Duration::from_secs(30),
        || async {
            r.drain().await.unwrap();
            store
                .find_project(alice, "lifecycle")
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let rows: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM sandboxes), (SELECT count(*) FROM databases)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(rows, (0, 0, 0));
    assert!(!scratch.has_session(&sandbox));
    assert!(!dir.exists(), "the sandbox directory is removed");
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    assert!(
        !exists(
            &mut admin,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &database
        )
        .await
    );
    assert!(
        !exists(
            &mut admin,
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            &database
        )
        .await
    );
}

#[tokio::test]
async fn without_tmux_the_project_shows_a_clear_error_instead_of_panicking() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let scratch = Scratch::new();
    let sandboxes = LocalSandboxes::new(&scratch.0, Some("sleep 3600".into()))
        .unwrap()
        .with_tmux_binary(Path::new("/nonexistent/tmux"));
    let r = Reconciler::new(
        store.clone(),
        Arc::new(sandboxes),
        Arc::new(LocalDatabases::connect(&db.admin_url).await.unwrap()),
        config(),
        "test",
    );
    let alice = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap()
        .id;
    store
        .create_project(alice, "notmux", "", "alice")
        .await
        .unwrap();
    settle_to(&store, &r, alice, "notmux", ProjectStatus::Error).await;
    let p = store.find_project(alice, "notmux").await.unwrap();
    let s = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    let err = s.last_error.as_deref().unwrap();
    assert!(err.contains("tmux"), "{err}");
    // Clean up the database the loop created.
    store
        .record_intent(alice, "notmux", Intent::Delete, "alice")
        .await
        .unwrap();
    eventually("cleanup", Duration::from_secs(30), || async {
        r.drain().await.unwrap();
        store
            .find_project(alice, "notmux")
            .await
            .is_err()
            .then_some(())
    })
    .await;
}
