//! Tests of the private PostgreSQL cluster against the real binaries.
//!
//! Data directories live under /tmp with short names because the socket path
//! must fit in 107 bytes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use kiln::embedded_pg::{EmbeddedPgError, EmbeddedPostgres, SOCKET_PORT};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::support::embedded::TempDataDir;

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(url).await
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    nix::unistd::geteuid().is_root()
}

#[test]
fn locates_binaries() {
    let bins = EmbeddedPostgres::locate_binaries().expect("postgres binaries installed");
    assert!(bins.initdb.is_file(), "{bins:?}");
    assert!(bins.pg_ctl.is_file(), "{bins:?}");
    assert!(bins.postgres.is_file(), "{bins:?}");
    assert_eq!(bins.initdb.parent(), Some(bins.bin_dir.as_path()));
}

#[tokio::test]
async fn lifecycle_init_reuse_stop_restart() {
    let dir = TempDataDir::new();

    // Fresh directory: initialises and serves.
    let owner = EmbeddedPostgres::start(&dir.path)
        .await
        .expect("first start");
    assert!(owner.started_here());
    assert!(owner.cluster_dir().join("PG_VERSION").is_file());
    let mut conn = connect(&owner.database_url()).await.expect("connect");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(db, "kiln");
    sqlx::query("CREATE TABLE kept (v text)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES ('survives restart')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    // The admin URL reaches the maintenance database on the same socket.
    let mut admin = connect(&owner.admin_url()).await.expect("admin connect");
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(db, "postgres");
    admin.close().await.unwrap();

    // A second start while it runs reuses the server without owning it...
    let guest = EmbeddedPostgres::start(&dir.path)
        .await
        .expect("second start");
    assert!(!guest.started_here());
    assert_eq!(guest.database_url(), owner.database_url());
    guest.stop().await.expect("guest stop");
    // ...so its stop leaves the server running.
    let conn = connect(&owner.database_url())
        .await
        .expect("server must survive a non-owner stop");
    conn.close().await.unwrap();

    // The owner's stop really stops it.
    let url = owner.database_url();
    owner.stop().await.expect("owner stop");
    assert!(
        connect(&url).await.is_err(),
        "connection must fail after the owner stopped the server"
    );

    // Starting again keeps the data.
    let again = EmbeddedPostgres::start(&dir.path).await.expect("restart");
    assert!(again.started_here());
    let mut conn = connect(&again.database_url()).await.expect("reconnect");
    let v: String = sqlx::query_scalar("SELECT v FROM kept")
        .fetch_one(&mut conn)
        .await
        .expect("table survives restart");
    assert_eq!(v, "survives restart");
    conn.close().await.unwrap();
    again.stop().await.expect("stop after restart");
}

#[tokio::test]
async fn too_long_data_dir_is_rejected_clearly() {
    let long = PathBuf::from(format!("/tmp/kpg-{}", "x".repeat(100)));
    let err = EmbeddedPostgres::start(&long)
        .await
        .expect_err("socket path cannot fit");
    assert!(
        matches!(err, EmbeddedPgError::SocketPathTooLong { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("--data-dir"), "{msg}");
    assert!(msg.contains(&long.display().to_string()), "{msg}");
    assert!(!long.exists(), "nothing may be created for a rejected path");
}

#[tokio::test]
async fn serves_only_on_a_unix_socket() {
    let dir = TempDataDir::new();
    let pg = EmbeddedPostgres::start(&dir.path).await.expect("start");

    let url = pg.database_url();
    let sock = pg.socket_dir().display().to_string();
    assert!(sock.starts_with('/'), "socket dir must be absolute: {sock}");
    assert!(url.contains(&format!("host={sock}")), "{url}");
    assert!(!url.contains(":5432"), "{url}");
    assert!(
        pg.socket_dir()
            .join(format!(".s.PGSQL.{SOCKET_PORT}"))
            .exists()
    );
    let mode = std::fs::metadata(pg.socket_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    let mut conn = connect(&url).await.expect("connect");
    let listen: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "", "no TCP listener expected");
    // NULL server address means this connection came through a unix socket.
    let addr: Option<String> = sqlx::query_scalar("SELECT inet_server_addr()::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(addr, None);
    conn.close().await.unwrap();
    pg.stop().await.expect("stop");
}

#[tokio::test]
async fn concurrent_starts_share_one_server() {
    let dir = TempDataDir::new();
    let (a, b) = tokio::join!(
        EmbeddedPostgres::start(&dir.path),
        EmbeddedPostgres::start(&dir.path)
    );
    let (a, b) = (a.expect("start a"), b.expect("start b"));
    assert_ne!(
        a.started_here(),
        b.started_here(),
        "exactly one of two concurrent starts owns the server"
    );
    for pg in [&a, &b] {
        let conn = connect(&pg.database_url()).await.expect("connect");
        conn.close().await.unwrap();
    }
    // Stop the guest first so the owner's stop is the one that counts.
    let (owner, guest) = if a.started_here() { (a, b) } else { (b, a) };
    guest.stop().await.unwrap();
    owner.stop().await.unwrap();
}

#[tokio::test]
async fn start_failure_quotes_the_server_log() {
    let dir = TempDataDir::new();
    let pg = EmbeddedPostgres::start(&dir.path).await.expect("start");
    let conf = pg.cluster_dir().join("postgresql.conf");
    pg.stop().await.expect("stop");

    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("kiln_test_bogus_setting = 1\n");
    std::fs::write(&conf, text).unwrap();

    let err = EmbeddedPostgres::start(&dir.path)
        .await
        .expect_err("bad config must fail the start");
    let msg = err.to_string();
    assert!(
        matches!(err, EmbeddedPgError::StartFailed { .. }),
        "{err:?}"
    );
    assert!(msg.contains("kiln_test_bogus_setting"), "{msg}");
    assert!(msg.contains("postgres.log"), "{msg}");
}

#[tokio::test]
async fn as_root_runs_server_as_postgres_user() {
    if !is_root() {
        eprintln!("skipped: only meaningful as root");
        return;
    }
    let dir = TempDataDir::new();
    // A private data dir (as tempdir tools create) must still work: start
    // adds search permission for others on the data dir only.
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pg = EmbeddedPostgres::start(&dir.path).await.expect("start");

    let mode = std::fs::metadata(&dir.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o701);
    let owner_uid = std::fs::metadata(pg.cluster_dir()).unwrap().uid();
    assert_ne!(owner_uid, 0, "cluster must not be owned by root");
    let sock_uid = std::fs::metadata(pg.socket_dir()).unwrap().uid();
    assert_eq!(sock_uid, owner_uid);

    // Root reaches the 0700 socket dir anyway (it bypasses file permissions).
    let conn = connect(&pg.database_url()).await.expect("root connects");
    conn.close().await.unwrap();
    pg.stop().await.expect("stop");
}

#[tokio::test]
async fn as_root_names_an_untraversable_parent() {
    if !is_root() {
        eprintln!("skipped: only meaningful as root");
        return;
    }
    let outer = TempDataDir::new();
    std::fs::set_permissions(&outer.path, std::fs::Permissions::from_mode(0o700)).unwrap();
    let data_dir = outer.path.join("d");
    let err = EmbeddedPostgres::start(&data_dir)
        .await
        .expect_err("the postgres user cannot reach the data dir");
    assert!(
        matches!(&err, EmbeddedPgError::NotTraversable { dir, .. } if *dir == outer.path),
        "{err:?}"
    );
    assert!(err.to_string().contains("--data-dir"), "{err}");
    // Directories outside the data dir are never chmod-ed.
    let mode = std::fs::metadata(&outer.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// `kiln migrate` on the embedded cluster of `dir` with `key`; its exit status
/// and stderr.
fn migrate_with_key(dir: &std::path::Path, key: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--data-dir")
        .arg(dir)
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("KILN_SECRET_KEY", key)
        .output()
        .expect("run kiln");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_start_refused_for_a_wrong_key_leaves_no_server_running() {
    let dir = TempDataDir::new();
    let pid_file = EmbeddedPostgres::cluster_dir_for(&dir.path).join("postmaster.pid");
    let (ok, err) = tokio::task::spawn_blocking({
        let d = dir.path.clone();
        move || migrate_with_key(&d, &"ab".repeat(32))
    })
    .await
    .unwrap();
    assert!(ok, "the first run writes the key check: {err}");
    assert!(
        !pid_file.exists(),
        "a clean run stops the cluster it started"
    );

    let (ok, err) = tokio::task::spawn_blocking({
        let d = dir.path.clone();
        move || migrate_with_key(&d, &"cd".repeat(32))
    })
    .await
    .unwrap();
    assert!(!ok, "another key is refused");
    assert!(err.contains("key"), "{err}");
    assert!(
        !pid_file.exists(),
        "the refused start left its cluster running: {}",
        pid_file.display()
    );
}
