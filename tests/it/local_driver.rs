//! The local driver against a real tmux and a real Postgres: no mocks.
//! Postgres: `KILN_TEST_ADMIN_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`.
//!
//! Over 500 lines: one test per behaviour of the local driver (sessions,
//! databases, env sync, attach), independent of each other; split by
//! sandbox/database when either grows fixtures of its own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln::driver::{
    DatabaseDriver, DatabaseSpec, DriverError, Observed, ResourceRef, SandboxDriver, SandboxSpec,
    SessionAttach, SessionState, Viewer,
};
use kiln::local::{LocalDatabases, LocalSandboxes};
use sqlx::{Connection, PgConnection, Row};

use crate::support;

// ---------------------------------------------------------------- harness

fn random(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

/// `t{6}-agentruntime-{6}`, like the names Kiln generates.
fn unique_name() -> String {
    format!("t{}-agentruntime-{}", random(6), random(6))
}

fn rref(name: &str) -> ResourceRef {
    ResourceRef {
        resource_name: name.to_owned(),
        namespace: String::new(),
        project_slug: "t".into(),
        owner: uuid::Uuid::nil(),
    }
}

fn sandbox_spec(name: &str, env: &[(&str, &str)]) -> SandboxSpec {
    SandboxSpec {
        resource: rref(name),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        secret_keys: Default::default(),
        repo: None,
        command: None,
        setup: None,
        sizing: Default::default(),
    }
}

/// A short data dir under /tmp (the tmux socket path must stay short) whose
/// tmux server and files go away with it, even when the test panics.
struct Scratch {
    dir: PathBuf,
    driver: LocalSandboxes,
}

impl Scratch {
    fn new() -> Self {
        Self::with_command("sleep 3600")
    }

    /// Sessions run `command` instead of sleeping.
    fn with_command(command: &str) -> Self {
        let dir = PathBuf::from(format!("/tmp/kt-{}", random(8)));
        let driver = LocalSandboxes::new(&dir, Some(command.into())).expect("driver");
        Self { dir, driver }
    }

    /// Runs tmux on the server of the sandbox that `session` belongs to
    /// (`{resource}` or `{resource}--{name}`).
    fn tmux_on(&self, session: &str, args: &[&str]) -> std::process::Output {
        let resource = session.split("--").next().unwrap_or(session);
        self.driver
            .tmux_command(resource)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn has_session(&self, name: &str) -> bool {
        self.tmux_on(name, &["has-session", "-t", &format!("={name}")])
            .status
            .success()
    }

    /// Sessions on every sandbox's server.
    fn session_count(&self) -> usize {
        self.driver
            .server_names()
            .iter()
            .map(|server| {
                let out = self.tmux_on(server, &["list-sessions", "-F", "#{session_name}"]);
                String::from_utf8_lossy(&out.stdout).lines().count()
            })
            .sum()
    }

    /// The session environment, as `tmux show-environment` prints it.
    fn environment(&self, name: &str) -> Vec<String> {
        let out = self.tmux_on(name, &["show-environment", "-t", &format!("={name}")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.driver.kill_all_servers();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn admin_url() -> String {
    std::env::var("KILN_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Drops a test's database and role even when the test panics.
struct DbCleanup(Vec<String>);

impl Drop for DbCleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("psql")
                .arg(admin_url())
                .args(["-q", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .args(["-c"])
                .arg(format!("DROP ROLE IF EXISTS \"{name}\""))
                .output();
        }
    }
}

fn db_spec(name: &str) -> DatabaseSpec {
    DatabaseSpec {
        resource: rref(name),
        password: format!("Pw{}", random(16)).into(),
        sandbox: None,
    }
}

async fn databases() -> LocalDatabases {
    LocalDatabases::connect(&admin_url())
        .await
        .expect("admin connection")
}

async fn role_and_db_exist(dbs: &LocalDatabases, name: &str) -> (bool, bool) {
    let row = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), \
                EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
    )
    .bind(name)
    .fetch_one(dbs.pool())
    .await
    .unwrap();
    (row.get(0), row.get(1))
}

fn assert_permanent(r: Result<impl std::fmt::Debug, DriverError>, contains: &str) {
    match r {
        Err(DriverError::Permanent(msg)) => {
            assert!(
                msg.contains(contains),
                "{msg:?} should mention {contains:?}"
            )
        }
        other => panic!("expected a permanent error mentioning {contains:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- sandboxes

#[tokio::test]
async fn ensure_starts_one_session_with_the_spec_environment() {
    let s = Scratch::new();
    let name = unique_name();
    let spec = sandbox_spec(&name, &[("GREETING", "it's a $HOME `x`;"), ("EMPTY", "")]);

    assert_eq!(s.driver.ensure(&spec).await.unwrap(), Observed::Running);
    assert!(s.has_session(&name));
    let env = s.environment(&name);
    assert!(
        env.contains(&"GREETING=it's a $HOME `x`;".to_owned()),
        "{env:?}"
    );
    assert!(env.contains(&"EMPTY=".to_owned()), "{env:?}");
    assert!(env.contains(&format!("KILN_SANDBOX={name}")), "{env:?}");

    // Idempotent: a second ensure is one session, not two, and no error.
    assert_eq!(s.driver.ensure(&spec).await.unwrap(), Observed::Running);
    assert_eq!(s.session_count(), 1);

    // The working directory exists and holds a private, sourceable env file.
    let dir = s.driver.sandbox_dir(&spec.resource);
    let env_file = dir.join(".kiln-env");
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = Command::new("sh")
        .arg("-c")
        .arg(". \"$1\" && printf '%s' \"$GREETING\"")
        .arg("sh")
        .arg(&env_file)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "it's a $HOME `x`;");
}

/// The command lines of every process on the host that names any of
/// `needles`, for the failure message.
fn argv_mentioning(needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        // Processes come and go while we look: a vanished one names nothing.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        if needles.iter().any(|n| text.contains(n)) {
            found.push(format!(
                "{}: {}",
                entry.path().display(),
                text.replace('\0', " ")
            ));
        }
    }
    found
}

/// Waits (up to 15 s) for the session's program to have written `path`.
async fn wait_for_file(path: &Path) -> String {
    for _ in 0..150 {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with("\n--end--\n")
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} was not written within 15 s", path.display());
}

#[tokio::test]
async fn secrets_reach_the_session_but_no_process_argv() {
    // Unique markers, so another test's processes cannot match them.
    let token = format!("tok{}", random(12));
    let password = format!("pw{}", random(12));
    let secret = format!("{token} it's \"$HOME\" `x` \\n\\ ;\nline two\t#{{y}} ~;");
    let db_url = format!("postgres://t_user:{password}@127.0.0.1:5432/t_db?sslmode=disable");
    let s = Scratch::with_command(
        "printenv API_SECRET > seen; printenv DATABASE_URL >> seen; echo --end-- >> seen; \
         exec sleep 3600",
    );
    let name = unique_name();
    let spec = sandbox_spec(&name, &[("API_SECRET", &secret), ("DATABASE_URL", &db_url)]);
    assert_eq!(s.driver.ensure(&spec).await.unwrap(), Observed::Running);

    // The program sees the exact values.
    let dir = s.driver.sandbox_dir(&spec.resource);
    let seen = wait_for_file(&dir.join("seen")).await;
    assert_eq!(seen, format!("{secret}\n{db_url}\n--end--\n"));
    // So do new panes: the session environment holds them byte for byte.
    let env = s.tmux_on(&name, &["show-environment", "-t", &format!("={name}")]);
    let env = String::from_utf8_lossy(&env.stdout);
    assert!(env.contains(&format!("API_SECRET={secret}\n")), "{env}");
    assert!(env.contains(&format!("DATABASE_URL={db_url}\n")), "{env}");
    // And no process (the tmux server, its clients, the session's shell)
    // carries either in its argv, where `ps` shows it to every user.
    let leaks = argv_mentioning(&[&token, &password]);
    assert!(leaks.is_empty(), "secrets in argv: {leaks:#?}");

    // An update of the running sandbox travels the same way.
    let new_token = format!("tok{}", random(12));
    let spec = sandbox_spec(&name, &[("API_SECRET", &new_token)]);
    s.driver.sync_env(&spec).await.unwrap();
    let env = s.environment(&name);
    assert!(env.contains(&format!("API_SECRET={new_token}")), "{env:?}");
    assert!(
        !env.iter().any(|l| l.starts_with("DATABASE_URL")),
        "a removed variable is gone: {env:?}"
    );
    let leaks = argv_mentioning(&[&token, &password, &new_token]);
    assert!(leaks.is_empty(), "secrets in argv: {leaks:#?}");
    // The command file tmux read is gone; only the env file stays.
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kiln"))
        .collect();
    assert_eq!(left, vec![".kiln-env".to_owned()]);
}

#[tokio::test]
async fn observe_reports_running_stopped_and_absent_in_one_batch() {
    let s = Scratch::new();
    let (running, stopped, absent) = (unique_name(), unique_name(), unique_name());
    let refs = [rref(&running), rref(&stopped), rref(&absent)];

    // No tmux server yet: everything is absent, not an error.
    let before = s.driver.observe(&refs).await.unwrap();
    assert!(
        before.values().all(|o| *o == Observed::Absent),
        "{before:?}"
    );

    s.driver.ensure(&sandbox_spec(&running, &[])).await.unwrap();
    s.driver.ensure(&sandbox_spec(&stopped, &[])).await.unwrap();
    assert_eq!(
        s.driver.stop(&rref(&stopped)).await.unwrap(),
        Observed::Stopped
    );

    let seen = s.driver.observe(&refs).await.unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[&running], Observed::Running);
    assert_eq!(seen[&stopped], Observed::Stopped);
    assert_eq!(seen[&absent], Observed::Absent);
}

#[tokio::test]
async fn stop_kills_the_session_and_keeps_the_directory() {
    let s = Scratch::new();
    let name = unique_name();
    let spec = sandbox_spec(&name, &[]);
    s.driver.ensure(&spec).await.unwrap();
    let dir = s.driver.sandbox_dir(&spec.resource);
    std::fs::write(dir.join("work.txt"), "keep me").unwrap();

    assert_eq!(
        s.driver.stop(&spec.resource).await.unwrap(),
        Observed::Stopped
    );
    assert!(!s.has_session(&name));
    assert_eq!(
        std::fs::read_to_string(dir.join("work.txt")).unwrap(),
        "keep me"
    );
    // Stopping what is already stopped is fine.
    assert_eq!(
        s.driver.stop(&spec.resource).await.unwrap(),
        Observed::Stopped
    );

    // Starting again reuses the directory.
    s.driver.ensure(&spec).await.unwrap();
    assert!(s.has_session(&name));
    assert!(dir.join("work.txt").exists());
}

#[tokio::test]
async fn delete_removes_session_and_directory_and_is_idempotent() {
    let s = Scratch::new();
    let name = unique_name();
    let spec = sandbox_spec(&name, &[]);
    s.driver.ensure(&spec).await.unwrap();
    let dir = s.driver.sandbox_dir(&spec.resource);

    s.driver.delete(&spec.resource).await.unwrap();
    assert!(!s.has_session(&name));
    assert!(!dir.exists());
    s.driver.delete(&spec.resource).await.unwrap();
    let seen = s
        .driver
        .observe(std::slice::from_ref(&spec.resource))
        .await
        .unwrap();
    assert_eq!(seen[&name], Observed::Absent);
}

#[tokio::test]
async fn sync_env_adds_changes_and_removes_only_kiln_variables() {
    let s = Scratch::new();
    let name = unique_name();
    s.driver
        .ensure(&sandbox_spec(
            &name,
            &[("KEEP", "1"), ("CHANGE", "old"), ("DROP_ME", "x")],
        ))
        .await
        .unwrap();
    // Set by someone else: Kiln must leave it alone.
    let out = s.tmux_on(
        &name,
        &[
            "set-environment",
            "-t",
            &format!("={name}"),
            "USER_VAR",
            "mine",
        ],
    );
    assert!(out.status.success());

    let next = sandbox_spec(
        &name,
        &[("ADDED", "new;"), ("CHANGE", "new 'value'"), ("KEEP", "1")],
    );
    s.driver.sync_env(&next).await.unwrap();

    let env = s.environment(&name);
    for want in [
        "KEEP=1",
        "CHANGE=new 'value'",
        "ADDED=new;",
        "USER_VAR=mine",
    ] {
        assert!(
            env.contains(&want.to_owned()),
            "{want} missing from {env:?}"
        );
    }
    assert!(!env.iter().any(|l| l.contains("DROP_ME")), "{env:?}");
    assert!(env.contains(&format!("KILN_SANDBOX={name}")), "{env:?}");

    // A new window gets the new environment; the running program was kept.
    assert_eq!(s.session_count(), 1);
    let dir = s.driver.sandbox_dir(&next.resource);
    let out = s.tmux_on(
        &name,
        &[
            "new-window",
            "-d",
            "-t",
            &format!("={name}:"),
            "-c",
            &dir.to_string_lossy(),
            "printf '%s' \"$CHANGE\" > seen.txt; sleep 60",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = dir.join("seen.txt");
    for _ in 0..100 {
        if std::fs::metadata(&seen)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "new 'value'");

    let file = std::fs::read_to_string(dir.join(".kiln-env")).unwrap();
    assert!(
        file.contains("export CHANGE='new '\\''value'\\'''\n"),
        "{file}"
    );
    assert!(!file.contains("DROP_ME"), "{file}");

    // Removing everything works too, and again leaves USER_VAR alone.
    s.driver.sync_env(&sandbox_spec(&name, &[])).await.unwrap();
    let env = s.environment(&name);
    assert!(!env.iter().any(|l| l.starts_with("KEEP=")), "{env:?}");
    assert!(env.contains(&"USER_VAR=mine".to_owned()), "{env:?}");
}

#[tokio::test]
async fn concurrent_ensures_make_one_session() {
    let s = Scratch::new();
    let name = unique_name();
    let spec = sandbox_spec(&name, &[("A", "1")]);
    let (a, b, c) = tokio::join!(
        s.driver.ensure(&spec),
        s.driver.ensure(&spec),
        s.driver.ensure(&spec)
    );
    for r in [a, b, c] {
        assert_eq!(r.unwrap(), Observed::Running);
    }
    assert_eq!(s.session_count(), 1);
}

#[tokio::test]
async fn a_large_environment_reaches_the_session_whole() {
    // Values travel through a file, not tmux's 16 KiB command message, so a
    // large one is no longer refused (it was before values left argv).
    let s = Scratch::new();
    let name = unique_name();
    let big = "x".repeat(20_000);
    assert_eq!(
        s.driver
            .ensure(&sandbox_spec(&name, &[("BIG", &big)]))
            .await
            .unwrap(),
        Observed::Running
    );
    let env = s.environment(&name);
    assert!(env.contains(&format!("BIG={big}")), "BIG missing or cut");
}

#[tokio::test]
async fn sync_env_on_a_stopped_sandbox_is_transient() {
    let s = Scratch::new();
    let name = unique_name();
    let err = s
        .driver
        .sync_env(&sandbox_spec(&name, &[("A", "1")]))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
}

#[tokio::test]
async fn a_missing_tmux_binary_is_a_permanent_error() {
    let s = Scratch::new();
    let driver = s.driver.clone().with_tmux_binary("/nonexistent/tmux");
    let name = unique_name();
    assert_permanent(
        driver.ensure(&sandbox_spec(&name, &[])).await,
        "tmux is not installed",
    );
    // Without tmux no session can exist: observing (and so stop and delete)
    // still works and reports nothing running.
    let seen = driver.observe(&[rref(&name)]).await.unwrap();
    assert_ne!(seen[&name], Observed::Running);
    driver.delete(&rref(&name)).await.unwrap();
}

#[tokio::test]
async fn invalid_names_and_variables_are_refused_and_nothing_is_created() {
    let s = Scratch::new();
    for bad in ["Upper-agentruntime-abcdef", "a'b", "../escape", "a.b"] {
        assert_permanent(
            s.driver.ensure(&sandbox_spec(bad, &[])).await,
            "invalid resource name",
        );
    }
    let name = unique_name();
    assert_permanent(
        s.driver
            .ensure(&sandbox_spec(&name, &[("BAD-KEY", "x")]))
            .await,
        "invalid environment variable name",
    );
    assert!(
        !s.dir.join("sandboxes").exists()
            || std::fs::read_dir(s.dir.join("sandboxes"))
                .unwrap()
                .next()
                .is_none()
    );
    assert_eq!(s.session_count(), 0);
}

#[tokio::test]
async fn a_socket_path_too_long_is_a_permanent_error_naming_it() {
    let dir = PathBuf::from(format!("/tmp/kt-{}/{}", random(8), "d".repeat(100)));
    let err = LocalSandboxes::new(&dir, None).unwrap_err();
    assert_permanent(Err::<(), _>(err), "tmux.sock");
    assert!(!Path::new(&dir).exists());
}

// ---------------------------------------------------------------- databases

#[tokio::test]
async fn database_lifecycle_keeps_data_across_stop_and_start() {
    let dbs = databases().await;
    let name = unique_name();
    let _cleanup = DbCleanup(vec![name.clone()]);
    let spec = db_spec(&name);

    assert_eq!(dbs.ensure(&spec).await.unwrap(), Observed::Running);
    let creds = dbs.credentials(&spec).await.unwrap().expect("credentials");
    assert_eq!(
        (creds.user.as_str(), creds.database.as_str()),
        (name.as_str(), name.as_str())
    );

    let mut conn = PgConnection::connect(&creds.url())
        .await
        .expect("connect as the role");
    sqlx::raw_sql("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
        .execute(&mut conn)
        .await
        .unwrap();

    // Stop: the open connection is ended and new ones are refused.
    assert_eq!(dbs.stop(&spec).await.unwrap(), Observed::Stopped);
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err());
    let refused = PgConnection::connect(&creds.url()).await;
    assert!(refused.is_err(), "a stopped database accepted a connection");
    let seen = dbs
        .observe(std::slice::from_ref(&spec.resource))
        .await
        .unwrap();
    assert_eq!(seen[&name], Observed::Stopped);

    // Start again: the data is still there.
    assert_eq!(dbs.ensure(&spec).await.unwrap(), Observed::Running);
    let mut conn = PgConnection::connect(&creds.url()).await.unwrap();
    let body: String = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(body, "kept");
    conn.close().await.unwrap();

    // Delete: database and role are gone, even with a connection open.
    let _open = PgConnection::connect(&creds.url()).await.unwrap();
    dbs.delete(&spec.resource).await.unwrap();
    assert_eq!(role_and_db_exist(&dbs, &name).await, (false, false));
    dbs.delete(&spec.resource).await.unwrap();
    assert_eq!(dbs.stop(&spec).await.unwrap(), Observed::Absent);
}

#[tokio::test]
async fn ensure_twice_with_a_new_password_converges() {
    let dbs = databases().await;
    let name = unique_name();
    let _cleanup = DbCleanup(vec![name.clone()]);
    let spec = db_spec(&name);
    dbs.ensure(&spec).await.unwrap();
    let again = DatabaseSpec {
        password: "Changed123".into(),
        ..spec.clone()
    };
    assert_eq!(dbs.ensure(&again).await.unwrap(), Observed::Running);
    // Trust auth in the test server ignores passwords; check the stored hash changed.
    let has_password: bool =
        sqlx::query_scalar("SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1")
            .bind(&name)
            .fetch_one(dbs.pool())
            .await
            .unwrap();
    assert!(has_password);
    assert_eq!(role_and_db_exist(&dbs, &name).await, (true, true));
}

async fn stored_verifier(dbs: &LocalDatabases, name: &str) -> String {
    sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(name)
        .fetch_one(dbs.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_ensure_of_an_unchanged_database_leaves_the_role_password_alone() {
    let dbs = databases().await;
    let name = unique_name();
    let _cleanup = DbCleanup(vec![name.clone()]);
    let spec = db_spec(&name);
    dbs.ensure(&spec).await.unwrap();
    let first = stored_verifier(&dbs, &name).await;
    assert!(kiln::model::scram::verifies(
        &first,
        spec.password.expose_str()
    ));

    // Unchanged: no ALTER ROLE, so the salted verifier is the same one.
    assert_eq!(dbs.ensure(&spec).await.unwrap(), Observed::Running);
    assert_eq!(stored_verifier(&dbs, &name).await, first);

    // Changed: a new verifier, for the new password only.
    let changed = DatabaseSpec {
        password: "Changed1234567890".into(),
        ..spec.clone()
    };
    dbs.ensure(&changed).await.unwrap();
    let second = stored_verifier(&dbs, &name).await;
    assert!(kiln::model::scram::verifies(&second, "Changed1234567890"));
    assert!(!kiln::model::scram::verifies(
        &second,
        spec.password.expose_str()
    ));

    // A role someone made NOLOGIN is converged too.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{name}\" NOLOGIN"
    )))
    .execute(dbs.pool())
    .await
    .unwrap();
    dbs.ensure(&changed).await.unwrap();
    let can_login: bool = sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
        .bind(&name)
        .fetch_one(dbs.pool())
        .await
        .unwrap();
    assert!(can_login);
}

#[tokio::test]
async fn concurrent_database_ensures_all_succeed() {
    let dbs = databases().await;
    let name = unique_name();
    let _cleanup = DbCleanup(vec![name.clone()]);
    let spec = db_spec(&name);
    let (a, b) = tokio::join!(dbs.ensure(&spec), dbs.ensure(&spec));
    assert_eq!(a.unwrap(), Observed::Running);
    assert_eq!(b.unwrap(), Observed::Running);
    assert_eq!(role_and_db_exist(&dbs, &name).await, (true, true));
}

#[tokio::test]
async fn observe_databases_in_one_batch() {
    let dbs = databases().await;
    let (running, stopped, absent, no_role) =
        (unique_name(), unique_name(), unique_name(), unique_name());
    let _cleanup = DbCleanup(vec![running.clone(), stopped.clone(), no_role.clone()]);
    dbs.ensure(&db_spec(&running)).await.unwrap();
    dbs.ensure(&db_spec(&stopped)).await.unwrap();
    dbs.stop(&db_spec(&stopped)).await.unwrap();
    dbs.ensure(&db_spec(&no_role)).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{no_role}\" OWNER TO CURRENT_USER; DROP ROLE \"{no_role}\""
    )))
    .execute(dbs.pool())
    .await
    .unwrap();

    let refs: Vec<_> = [&running, &stopped, &absent, &no_role]
        .map(|n| rref(n))
        .into();
    let seen = dbs.observe(&refs).await.unwrap();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[&running], Observed::Running);
    assert_eq!(seen[&stopped], Observed::Stopped);
    assert_eq!(seen[&absent], Observed::Absent);
    assert!(matches!(&seen[&no_role], Observed::Failed(why) if why.contains("role")));
}

#[tokio::test]
async fn one_tenant_role_cannot_connect_to_another_tenants_database() {
    let dbs = databases().await;
    let (a, b) = (unique_name(), unique_name());
    let _cleanup = DbCleanup(vec![a.clone(), b.clone()]);
    let (spec_a, spec_b) = (db_spec(&a), db_spec(&b));
    dbs.ensure(&spec_a).await.unwrap();
    dbs.ensure(&spec_b).await.unwrap();

    let mut creds = dbs.credentials(&spec_a).await.unwrap().unwrap();
    creds.database = b.clone();
    let err = PgConnection::connect(&creds.url()).await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[tokio::test]
async fn invalid_database_names_and_passwords_are_refused_and_nothing_is_created() {
    let dbs = databases().await;
    for bad in ["Upper-agentruntime-abcdef", "a\"b", "a'b"] {
        assert_permanent(dbs.ensure(&db_spec(bad)).await, "invalid resource name");
        assert_eq!(role_and_db_exist(&dbs, bad).await, (false, false));
    }
    let name = unique_name();
    let _cleanup = DbCleanup(vec![name.clone()]);
    let spec = DatabaseSpec {
        resource: rref(&name),
        password: "it's".into(),
        sandbox: None,
    };
    assert_permanent(dbs.ensure(&spec).await, "password");
    assert_eq!(role_and_db_exist(&dbs, &name).await, (false, false));
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    let err = LocalDatabases::connect("postgres://postgres@127.0.0.1:1/postgres")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn a_socket_url_reports_the_socket_directory_as_host() {
    // Where the server has a socket there, the host reported is its directory.
    let Ok(dbs) =
        LocalDatabases::connect("postgres://postgres@localhost/postgres?host=/var/run/postgresql")
            .await
    else {
        return; // no socket on this host; the parsing is covered when it exists
    };
    let creds = dbs
        .credentials(&db_spec(&unique_name()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.host, "/var/run/postgresql");
}

// ---------------------------------------------------------------- sessions

/// Everything an attachment printed so far, as text (waits up to 15 s for
/// `needle`); panics with what it saw.
async fn read_until(a: &mut kiln::driver::Attachment, seen: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, a.output.recv()).await {
            Ok(Some(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => panic!("the attachment closed before {needle:?}; it showed:\n{seen}"),
            Err(_) => panic!("no {needle:?} within 15 s; the attachment showed:\n{seen}"),
        }
    }
}

async fn session_state(
    driver: &LocalSandboxes,
    r: &ResourceRef,
    session: Option<&str>,
) -> Option<SessionState> {
    driver
        .sessions(r)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name.as_deref() == session)
        .map(|s| s.state)
}

#[tokio::test]
async fn an_exited_named_session_is_listed_as_exited_and_restarts_in_place() {
    let s = Scratch::new();
    let name = unique_name();
    let spec = sandbox_spec(&name, &[("PROJECT_NAME", "t")]);
    s.driver.ensure(&spec).await.unwrap();
    let r = &spec.resource;

    // A named session is created on first attach; its shell exits with 3.
    let mut a = s
        .driver
        .attach(r, Some("work"), &Viewer::pane(80, 24, false))
        .await
        .unwrap();
    let mut seen = String::new();
    assert!(a.input.try_send(b"echo first-$((40+2))\r".to_vec()));
    read_until(&mut a, &mut seen, "first-42").await;
    assert!(a.input.try_send(b"exit 3\r".to_vec()));
    // tmux marks the pane dead when its terminal closes and learns the
    // status when it reaps the process: wait for both.
    let want = SessionState::Exited { status: Some(3) };
    support::eventually(
        "work exited with status 3",
        Duration::from_secs(15),
        || async { (session_state(&s.driver, r, Some("work")).await == Some(want)).then_some(()) },
    )
    .await;
    assert!(
        s.has_session(&format!("{name}--work")),
        "the session stays, dead"
    );
    // The sandbox itself is still up: its default session runs.
    assert_eq!(
        s.driver.observe(std::slice::from_ref(r)).await.unwrap()[&name],
        Observed::Running
    );
    assert_eq!(
        session_state(&s.driver, r, None).await,
        Some(SessionState::Running)
    );
    drop(a);

    // Restart: the same session, running again, and usable.
    s.driver.restart(r, Some("work")).await.unwrap();
    assert_eq!(
        session_state(&s.driver, r, Some("work")).await,
        Some(SessionState::Running)
    );
    let mut a = s
        .driver
        .attach(r, Some("work"), &Viewer::pane(80, 24, false))
        .await
        .unwrap();
    let mut seen = String::new();
    // Same directory and environment file as before: `.kiln-env` is sourced.
    assert!(
        a.input
            .try_send(b"echo again-$((1+2))-$PROJECT_NAME\r".to_vec())
    );
    read_until(&mut a, &mut seen, "again-3-t").await;
    drop(a);

    // A running session is never restarted (nor killed); a missing one is an error.
    let running = s.driver.restart(r, Some("work")).await.unwrap_err();
    assert!(
        matches!(&running, DriverError::Permanent(m) if m.contains("still running")),
        "{running:?}"
    );
    assert_eq!(
        session_state(&s.driver, r, Some("work")).await,
        Some(SessionState::Running)
    );
    let default = s.driver.restart(r, None).await.unwrap_err();
    assert!(default.to_string().contains("still running"), "{default}");
    let missing = s.driver.restart(r, Some("nosuch")).await.unwrap_err();
    assert!(
        matches!(&missing, DriverError::Permanent(m) if m.contains("no session nosuch")),
        "{missing:?}"
    );
    assert_permanent(
        s.driver.restart(r, Some("../x")).await,
        "invalid session name",
    );
    // Another sandbox's session is out of reach: its name is just a session
    // name inside this sandbox, which does not exist.
    let other = unique_name();
    s.driver.ensure(&sandbox_spec(&other, &[])).await.unwrap();
    let err = s.driver.restart(r, Some(&other)).await.unwrap_err();
    assert!(matches!(err, DriverError::Permanent(_)), "{err:?}");
    assert_eq!(
        session_state(&s.driver, &rref(&other), None).await,
        Some(SessionState::Running)
    );
}

#[tokio::test]
async fn a_dead_default_session_keeps_the_sandbox_running_and_ensure_respawns_it() {
    let dir = PathBuf::from(format!("/tmp/kt-{}", random(8)));
    // Exits with 4 until the file `go` exists in the sandbox's directory.
    let driver = LocalSandboxes::new(&dir, Some("test -e go && exec sleep 3600; exit 4".into()))
        .expect("driver");
    let s = Scratch { dir, driver };
    let name = unique_name();
    let spec = sandbox_spec(&name, &[]);
    assert_eq!(s.driver.ensure(&spec).await.unwrap(), Observed::Running);
    let r = &spec.resource;
    let want = SessionState::Exited { status: Some(4) };
    support::eventually(
        "the default session exited with status 4",
        Duration::from_secs(15),
        || async { (session_state(&s.driver, r, None).await == Some(want)).then_some(()) },
    )
    .await;
    // Reported as a running sandbox (not restarted behind the user's back).
    assert_eq!(
        s.driver.observe(std::slice::from_ref(r)).await.unwrap()[&name],
        Observed::Running
    );
    std::fs::write(s.driver.sandbox_dir(r).join("go"), "").unwrap();
    // ensure (start, retry) brings the program back.
    assert_eq!(s.driver.ensure(&spec).await.unwrap(), Observed::Running);
    assert_eq!(
        session_state(&s.driver, r, None).await,
        Some(SessionState::Running)
    );
    assert_eq!(s.session_count(), 1);
}

/// A fresh sandbox's named `session`, attached at 80x24 once its shell answers.
async fn answering_session(s: &Scratch, session: &str) -> kiln::driver::Attachment {
    let spec = sandbox_spec(&unique_name(), &[]);
    s.driver.ensure(&spec).await.unwrap();
    let mut a = s
        .driver
        .attach(&spec.resource, Some(session), &Viewer::pane(80, 24, false))
        .await
        .unwrap();
    let mut seen = String::new();
    assert!(a.input.try_send(b"echo ready-$((1+1))\r".to_vec()));
    read_until(&mut a, &mut seen, "ready-2").await;
    a
}

#[tokio::test]
async fn a_flood_reaches_the_viewer_as_screens_not_every_line() {
    let s = Scratch::new();
    let mut a = answering_session(&s, "flood").await;

    // 32 MiB of lines, then a marker only the command's output contains.
    const FLOOD: usize = 32 << 20;
    let command = format!(
        "yes the-quick-brown-fox-jumps-over-the-lazy-dog-0123456789 | head -c {FLOOD}; \
         echo flood-$((6*7))-done\r"
    );
    assert!(a.input.try_send(command.into_bytes()));
    let mut seen = String::new();
    read_until(&mut a, &mut seen, "flood-42-done").await;
    let received = seen.len();
    // Read as fast as it comes, a viewer gets a good part of every line
    // (tmux only skips what piles up). The reader pauses during a flood, so
    // tmux sends the current screen now and then instead.
    assert!(
        received < FLOOD / 16,
        "the viewer received {received} of the flood's {FLOOD} bytes"
    );
    // The session is fine afterwards: a command still answers.
    let mut seen = String::new();
    assert!(a.input.try_send(b"echo after-$((2+3))\r".to_vec()));
    read_until(&mut a, &mut seen, "after-5").await;
}

#[tokio::test]
async fn many_small_writes_reach_the_viewer_in_few_messages() {
    let s = Scratch::new();
    let mut a = answering_session(&s, "chatty").await;

    // A program writing a byte at a time, as fast as it can: tmux passes
    // each of its reads on at once, so the viewer's terminal sees a stream
    // of tiny writes, a few thousand a second.
    const WRITES: usize = 40_000;
    let command = format!(
        "i=0; while [ $i -lt {WRITES} ]; do printf .; i=$((i+1)); done; \
         echo; echo chatty-$((6*7))-done\r"
    );
    let started = std::time::Instant::now();
    assert!(a.input.try_send(command.into_bytes()));
    let mut seen = String::new();
    let mut messages = 0usize;
    while !seen.contains("chatty-42-done") {
        let bytes = tokio::time::timeout(Duration::from_secs(30), a.output.recv())
            .await
            .expect("the marker within 30 s")
            .expect("the attachment open");
        messages += 1;
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    // Read one by one, they came as 700 to 1,600 messages in 0.6 to 1 s
    // (measured with the pause taken out, load average 4): a message every
    // 0.6 to 0.9 ms.
    // The reader pauses 2 ms (`pty_io::pacing`'s stream pause) after each
    // read of a stream, so at most one message per 2 ms gets through,
    // however fast or slow the machine runs the writer; counted against
    // the time the whole stream took, so a loaded machine, which writes
    // slower and for longer, is held to the same rule.
    const STREAM_PAUSE: Duration = Duration::from_millis(2);
    let elapsed = started.elapsed();
    let most = (elapsed.as_micros() / STREAM_PAUSE.as_micros()) as usize + 16;
    assert!(
        messages <= most,
        "{messages} messages for {WRITES} one-byte writes in {elapsed:?}: \
         more than one per {STREAM_PAUSE:?} pause ({most})"
    );
    // Nothing was lost on the way: the line of dots ends on the screen.
    assert!(seen.contains("...."), "{seen}");
}

/// A pooled database is adopted in one transaction when it is as the pool
/// made it, and step by step when something of the project's is there
/// already (the one-step transaction then fails whole and changes
/// nothing): the same end either way.
#[tokio::test]
async fn a_pooled_database_is_adopted_at_once_or_step_by_step_to_the_same_end() {
    let dbs = databases().await;
    for project_role_exists in [false, true] {
        let (pooled, name) = (unique_name(), unique_name());
        let _cleanup = DbCleanup(vec![pooled.clone(), name.clone()]);
        dbs.ensure(&db_spec(&pooled)).await.unwrap();
        if project_role_exists {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE ROLE \"{name}\" NOLOGIN"
            )))
            .execute(dbs.pool())
            .await
            .unwrap();
        }
        let spec = db_spec(&name);
        assert_eq!(
            dbs.adopt(&spec, &pooled).await.unwrap(),
            Observed::Running,
            "role there before: {project_role_exists}"
        );
        let (owner, public, can_login): (String, bool, bool) = sqlx::query_as(
            "SELECT r.rolname::text,
                    EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                             WHERE a.grantee = 0),
                    r.rolcanlogin
               FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
              WHERE d.datname = $1",
        )
        .bind(&name)
        .fetch_one(dbs.pool())
        .await
        .unwrap();
        assert_eq!(owner, name);
        assert!(!public, "PUBLIC may not connect");
        assert!(can_login);
        assert!(kiln::model::scram::verifies(
            &stored_verifier(&dbs, &name).await,
            spec.password.expose_str()
        ));
        assert_eq!(
            role_and_db_exist(&dbs, &pooled).await,
            (false, false),
            "the pooled name is gone, role and database"
        );
        // Again (a retry after a lost write): nothing left to do, no error.
        assert_eq!(dbs.adopt(&spec, &pooled).await.unwrap(), Observed::Running);
    }
}
