//! Who may connect to the embedded cluster: every role with SCRAM, on Kiln's
//! socket and on the tenant socket; tenant databases made by the local
//! driver there; older clusters that trusted everyone converted on start.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use kiln::driver::{DatabaseDriver, DatabaseSpec, ResourceRef};
use kiln::embedded_pg::EmbeddedPostgres;
use kiln::local::LocalDatabases;
use kiln::model::{naming, scram};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::support::embedded::TempDataDir;

/// A URL for `user` on the socket in `dir`, with or without a password.
fn url(dir: &Path, user: &str, password: Option<&str>, db: &str) -> String {
    let auth = match password {
        Some(p) => format!("{user}:{p}"),
        None => user.to_string(),
    };
    format!(
        "postgres://{auth}@localhost/{db}?host={}&sslmode=disable",
        dir.display()
    )
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

fn superuser_password(pg: &EmbeddedPostgres) -> String {
    std::fs::read_to_string(pg.superuser_password_file())
        .expect("read the password file")
        .trim()
        .to_string()
}

/// Asserts that `kiln` is refused on both sockets without its password or
/// with a wrong one, and admitted with the right one. Polls a little: a
/// reload reaches new connections only once the postmaster has re-read
/// pg_hba.conf.
async fn assert_superuser_needs_its_password(pg: &EmbeddedPostgres) {
    let password = superuser_password(pg);
    for sock in [pg.socket_dir(), pg.tenant_socket_dir()] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match PgConnection::connect(&url(sock, "kiln", None, "postgres")).await {
                Err(_) => break,
                Ok(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => panic!("{} let the superuser in without a password", sock.display()),
            }
        }
        let wrong = PgConnection::connect(&url(sock, "kiln", Some("Wrong1234567890x"), "postgres"))
            .await
            .expect_err("a wrong superuser password was accepted");
        assert_eq!(sqlstate(&wrong).as_deref(), Some("28P01"), "{wrong}");
        let conn = PgConnection::connect(&url(sock, "kiln", Some(&password), "postgres"))
            .await
            .unwrap_or_else(|e| panic!("the right password on {}: {e}", sock.display()));
        conn.close().await.unwrap();
    }
}

#[tokio::test]
async fn every_socket_refuses_the_superuser_without_the_password_from_its_private_file() {
    let dir = TempDataDir::new();
    let pg = EmbeddedPostgres::start(&dir.path).await.expect("start");

    let file = pg.superuser_password_file();
    assert!(file.starts_with(&dir.path), "{}", file.display());
    let meta = std::fs::metadata(file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        meta.uid(),
        nix::unistd::geteuid().as_raw(),
        "owned by Kiln's user"
    );
    let password = superuser_password(&pg);
    assert!(password.len() >= 32, "a long random password");
    assert!(pg.database_url().contains(&format!("kiln:{password}@")));

    assert_superuser_needs_its_password(&pg).await;
    let conn = PgConnection::connect(&pg.database_url())
        .await
        .expect("Kiln's own URL");
    conn.close().await.unwrap();

    // A restart reuses the same password.
    let url = pg.database_url();
    pg.stop().await.unwrap();
    let again = EmbeddedPostgres::start(&dir.path).await.expect("restart");
    assert_eq!(again.database_url(), url);
    assert_superuser_needs_its_password(&again).await;
    again.stop().await.unwrap();
}

#[tokio::test]
async fn the_server_also_listens_in_the_tenant_socket_directory() {
    let dir = TempDataDir::new();
    let pg = EmbeddedPostgres::start(&dir.path).await.expect("start");

    let tenant = pg.tenant_socket_dir();
    assert_eq!(tenant, EmbeddedPostgres::tenant_socket_dir_for(&dir.path));
    assert_eq!(tenant, dir.path.join("pg").join("tenant"));
    assert_ne!(tenant, pg.socket_dir());
    assert!(tenant.join(".s.PGSQL.5432").exists());
    let mode = std::fs::metadata(tenant).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o711, "enterable, not listable");

    let mut conn = PgConnection::connect(&pg.database_url()).await.unwrap();
    let dirs: String = sqlx::query_scalar("SHOW unix_socket_directories")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(dirs.contains(&*tenant.to_string_lossy()), "{dirs}");
    assert!(dirs.contains(&*pg.socket_dir().to_string_lossy()), "{dirs}");
    conn.close().await.unwrap();
    pg.stop().await.unwrap();
}

/// What an older Kiln left behind: pg_hba `trust` and no superuser password.
async fn make_it_trust_everyone(pg: &EmbeddedPostgres) {
    let mut conn = PgConnection::connect(&pg.admin_url()).await.unwrap();
    sqlx::query("ALTER ROLE kiln PASSWORD NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    std::fs::write(
        pg.cluster_dir().join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_stopped_cluster_that_trusted_everyone_requires_passwords_after_start() {
    let dir = TempDataDir::new();
    let pg = EmbeddedPostgres::start(&dir.path).await.expect("start");
    make_it_trust_everyone(&pg).await;
    pg.stop().await.unwrap();
    // An older Kiln had no password file either.
    std::fs::remove_file(dir.path.join("pg").join("superuser.password")).unwrap();

    let pg = EmbeddedPostgres::start(&dir.path)
        .await
        .expect("start converts");
    assert!(pg.started_here());
    assert_superuser_needs_its_password(&pg).await;
    let hba = std::fs::read_to_string(pg.cluster_dir().join("pg_hba.conf")).unwrap();
    assert!(!hba.contains("trust"), "{hba}");
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn a_running_cluster_that_trusted_everyone_requires_passwords_after_the_next_start() {
    let dir = TempDataDir::new();
    let owner = EmbeddedPostgres::start(&dir.path).await.expect("start");
    make_it_trust_everyone(&owner).await;
    // Trust is in force now: no password needed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while PgConnection::connect(&url(owner.socket_dir(), "kiln", None, "postgres"))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "trust never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let guest = EmbeddedPostgres::start(&dir.path)
        .await
        .expect("reuse converts");
    assert!(!guest.started_here());
    assert_superuser_needs_its_password(&guest).await;
    guest.stop().await.unwrap();
    owner.stop().await.unwrap();
}

fn db_spec(name: &str) -> DatabaseSpec {
    DatabaseSpec {
        resource: ResourceRef {
            resource_name: name.to_owned(),
            namespace: String::new(),
            project_slug: "t".into(),
            owner: uuid::Uuid::nil(),
        },
        password: naming::random_password().into(),
        sandbox: None,
    }
}

async fn stored_verifier(dbs: &LocalDatabases, role: &str) -> String {
    sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_one(dbs.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn tenant_roles_log_in_with_scram_on_the_tenant_socket_and_only_to_their_own_database() {
    let dir = TempDataDir::new();
    let pg = EmbeddedPostgres::start(&dir.path).await.expect("start");
    // Log every statement, to show that none carries a role's password.
    let mut admin = PgConnection::connect(&pg.admin_url()).await.unwrap();
    sqlx::raw_sql("ALTER SYSTEM SET log_statement = 'all'")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = PgConnection::connect(&pg.admin_url()).await.unwrap();
        let v: String = sqlx::query_scalar("SHOW log_statement")
            .fetch_one(&mut c)
            .await
            .unwrap();
        if v == "all" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "log_statement never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dbs = LocalDatabases::connect(&pg.admin_url())
        .await
        .expect("admin connection")
        .with_sandbox_socket_dir(pg.tenant_socket_dir());
    let (a, b) = (
        db_spec(&naming::database_resource_name()),
        db_spec(&naming::database_resource_name()),
    );
    dbs.ensure(&a).await.unwrap();
    dbs.ensure(&b).await.unwrap();
    let (name_a, name_b) = (&a.resource.resource_name, &b.resource.resource_name);

    // The URL sandboxes get: the tenant socket, the role's password.
    let creds = dbs.credentials(&a).await.unwrap().expect("credentials");
    assert_eq!(Path::new(&creds.host), pg.tenant_socket_dir());
    assert!(creds.url().contains(a.password.expose_str()));
    let mut conn = PgConnection::connect(&creds.url())
        .await
        .expect("the role logs in with its password");
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(&who, name_a);
    conn.close().await.unwrap();

    // The verifier Kiln computed is the one PostgreSQL checks against.
    assert!(scram::verifies(
        &stored_verifier(&dbs, name_a).await,
        a.password.expose_str()
    ));
    let wrong = PgConnection::connect(&url(
        pg.tenant_socket_dir(),
        name_a,
        Some("Wrong1234567890x"),
        name_a,
    ))
    .await
    .expect_err("a wrong password was accepted");
    assert_eq!(sqlstate(&wrong).as_deref(), Some("28P01"), "{wrong}");
    let none = PgConnection::connect(&url(pg.tenant_socket_dir(), name_a, None, name_a)).await;
    assert!(none.is_err(), "no password was accepted");

    // Not into another tenant's database, nor Kiln's, nor the maintenance one.
    for other in [name_b.as_str(), "kiln", "postgres", "template1"] {
        let mut c = creds.clone();
        c.database = other.to_string();
        let err = PgConnection::connect(&c.url())
            .await
            .expect_err("a tenant role reached another database");
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{other}: {err}");
    }

    // An unchanged database: no ALTER ROLE, the stored verifier stays.
    let before = stored_verifier(&dbs, name_a).await;
    let log_before = std::fs::read_to_string(pg.log_file()).unwrap();
    dbs.ensure(&a).await.unwrap();
    assert_eq!(stored_verifier(&dbs, name_a).await, before);
    let log = std::fs::read_to_string(pg.log_file()).unwrap();
    let alters = |text: &str| text.matches(&format!("ALTER ROLE \"{name_a}\"")).count();
    assert_eq!(
        alters(&log),
        alters(&log_before),
        "a second ensure altered the role"
    );

    // The server logged the DDL, with verifiers and never a password.
    assert!(
        log.contains(&format!("CREATE ROLE \"{name_a}\"")),
        "statements are logged"
    );
    assert!(log.contains("PASSWORD 'SCRAM-SHA-256$4096:"));
    for secret in [a.password.expose_str(), b.password.expose_str()] {
        assert!(
            !log.contains(secret),
            "a role password is in the server log"
        );
    }
    assert!(!log.contains(&superuser_password(&pg)));
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn kiln_on_its_embedded_cluster_points_sandboxes_at_the_tenant_socket() {
    let dir = TempDataDir::new();
    let config = kiln::config::Config::load(&dir.path, None, Default::default()).unwrap();
    let db = kiln::runtime::Database::open(&config, 2)
        .await
        .expect("open the embedded cluster");
    assert_eq!(
        db.tenant_socket_dir.as_deref(),
        Some(EmbeddedPostgres::tenant_socket_dir_for(&dir.path).as_path())
    );
    // The admin URL is Kiln's own socket, with the superuser password.
    assert!(
        db.admin_url.contains("/pg/sock"),
        "{}",
        kiln::runtime::redact_url(&db.admin_url)
    );
    let no_password = url(&dir.path.join("pg").join("sock"), "kiln", None, "postgres");
    assert!(PgConnection::connect(&no_password).await.is_err());
    db.close().await.unwrap();
}
