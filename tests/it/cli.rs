//! The operator command line, run as a real process against a real database.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::TestDb;

struct Kiln {
    url: String,
    data_dir: std::path::PathBuf,
}

impl Kiln {
    fn new(db: &TestDb) -> Kiln {
        let data_dir = std::env::temp_dir().join(format!(
            "kc-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        Kiln {
            url: db.url.clone(),
            data_dir,
        }
    }

    /// Runs `kiln ARGS` with `stdin`; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env_remove("KILN_SECRET_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kiln");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Kiln {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[tokio::test]
async fn operator_commands_record_the_same_intents_as_the_console() {
    let db = TestDb::new().await;
    let k = Kiln::new(&db);
    let (code, out, err) = k.run(
        &["user", "add", "alice", "--password-stdin"],
        "correct horse battery\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = k.run(&["project", "create", "My Blog!", "--user", "alice"], "");
    assert_eq!(code, 0);
    assert!(out.contains("slug myblog"), "{out}");
    let (code, out, _) = k.run(&["project", "list", "--user", "alice", "--json"], "");
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "My Blog!");
    assert_eq!(v[0]["status"], "CREATING");
    let (code, out, _) = k.run(&["project", "stop", "myblog", "--user", "alice"], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("STOPPING"), "{out}");
    let (code, _, err) = k.run(&["project", "stop", "myblog", "--user", "alice"], "");
    assert_eq!(code, 1);
    assert!(err.contains("already stopping"), "{err}");
    let (code, out, _) = k.run(&["status"], "");
    assert_eq!(code, 0);
    assert!(out.contains("queue depth"), "{out}");
    let (code, _, err) = k.run(&["project", "list", "--user", "nobody"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no such user"), "{err}");
}

#[tokio::test]
async fn reserved_usernames_are_refused_by_user_add() {
    let db = TestDb::new().await;
    let k = Kiln::new(&db);
    for name in ["root", "Admin", "www-data"] {
        let (code, out, err) = k.run(
            &["user", "add", name, "--password-stdin"],
            "correct horse battery\n",
        );
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(err.contains("reserved"), "{name}: {err}");
    }
    let (code, out, _) = k.run(&["user", "list"], "");
    assert_eq!(code, 0);
    assert!(!out.contains("root") && !out.contains("admin"), "{out}");
}

#[tokio::test]
async fn a_bad_key_file_creates_no_user() {
    let db = TestDb::new().await;
    let k = Kiln::new(&db);
    std::fs::create_dir_all(&k.data_dir).unwrap();
    let bad = k.data_dir.join("bad.pub");
    std::fs::write(&bad, "not a key\n").unwrap();
    let (code, _, err) = k.run(
        &[
            "user",
            "add",
            "bob",
            "--no-password",
            "--ssh-key",
            bad.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 1);
    assert!(err.contains("not an OpenSSH public key"), "{err}");
    let (_, out, _) = k.run(&["user", "list"], "");
    assert!(!out.contains("bob"), "{out}");

    let key = russh::keys::PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )
    .unwrap();
    let good = k.data_dir.join("good.pub");
    std::fs::write(&good, key.public_key().to_openssh().unwrap()).unwrap();
    let (code, out, err) = k.run(
        &[
            "user",
            "add",
            "bob",
            "--no-password",
            "--ssh-key",
            good.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let store = db
        .store_with_key(
            kiln::store::SecretKey::load_or_create(&k.data_dir.join("secret.key")).unwrap(),
        )
        .await;
    let user = store.user_by_key(key.public_key()).await.unwrap().unwrap();
    assert_eq!(user.username, "bob");
}

#[tokio::test]
async fn a_bad_config_file_stops_kiln_with_the_key_named() {
    let db = TestDb::new().await;
    let k = Kiln::new(&db);
    std::fs::create_dir_all(&k.data_dir).unwrap();
    std::fs::write(
        k.data_dir.join("kiln.toml"),
        "[reconcile]\nbatch_size = 0\n",
    )
    .unwrap();
    let (code, _, err) = k.run(&["status"], "");
    assert_eq!(code, 1);
    assert!(err.contains("reconcile.batch_size"), "{err}");
}

/// `kiln ARGS` under umask 022 (as a login shell would leave it).
fn run_with_umask_022(k: &Kiln, args: &[&str]) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--data-dir")
        .arg(&k.data_dir)
        .args(args)
        .env("DATABASE_URL", &k.url)
        .env_remove("KILN_SECRET_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn a_pre_existing_open_data_directory_ends_private_and_the_secret_key_0600() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new().await;
    let k = Kiln::new(&db);
    std::fs::create_dir_all(&k.data_dir).unwrap();
    std::fs::set_permissions(&k.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, err) = run_with_umask_022(&k, &["migrate"]);
    assert_eq!(code, 0, "{err}");
    let dir = mode_of(&k.data_dir);
    assert_eq!(dir & 0o700, 0o700, "{dir:o}");
    assert_eq!(
        dir & 0o066,
        0,
        "others can list or write the data dir: {dir:o}"
    );
    assert_eq!(mode_of(&k.data_dir.join("secret.key")), 0o600);
}

#[tokio::test]
async fn a_kiln_toml_holding_the_secret_key_open_to_others_is_refused_before_anything_starts() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new().await;
    let k = Kiln::new(&db);
    std::fs::create_dir_all(&k.data_dir).unwrap();
    let config = k.data_dir.join("kiln.toml");
    std::fs::write(
        &config,
        format!(
            "secret_key = \"{}\"\n",
            crate::support::ssh::TEST_SECRET_KEY
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = run_with_umask_022(&k, &["migrate"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", config.display())),
        "{err}"
    );
    // Nothing started: no file beside the config, no migration applied.
    let entries: Vec<_> = std::fs::read_dir(&k.data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["kiln.toml"]);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let migrated: Option<String> = sqlx::query_scalar("SELECT to_regclass('users')::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(migrated, None);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = run_with_umask_022(&k, &["migrate"]);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn operator_agents_inbox_and_mute_answer_as_the_users_exec_commands() {
    let db = TestDb::new().await;
    let k = Kiln::new(&db);
    let (code, out, err) = k.run(
        &["user", "add", "alice", "--password-stdin"],
        "correct horse battery\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = k.run(&["project", "create", "blog", "--user", "alice"], "");
    assert_eq!(code, 0);
    // The server's key is the one the CLI made in its data directory.
    let key = kiln::store::SecretKey::load_or_create(&k.data_dir.join("secret.key")).unwrap();
    let store = kiln::store::Store::connect(&db.url, key, 2).await.unwrap();
    let alice = store.find_user("alice").await.unwrap().unwrap();
    let p = store.find_project(alice.id, "blog").await.unwrap();
    let sandbox = p
        .resources
        .iter()
        .find(|r| r.kind == kiln::store::resources::ResourceKind::Sandbox)
        .unwrap()
        .resource_name
        .clone();
    // As the sandbox's hook reports it (the sandbox is meant to run).
    let t = kiln::model::agent::transition(
        br#"{"hook_event_name":"Notification","notification_type":"permission_prompt","message":"May I?"}"#,
    )
    .unwrap()
    .unwrap();
    store.record_agent_state(&sandbox, None, &t).await.unwrap();

    let (code, out, err) = k.run(&["agents", "--user", "alice", "--json"], "");
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["project"], "blog");
    assert_eq!(v[0]["state"], "needs_input");
    let (code, out, _) = k.run(&["inbox", "--user", "alice"], "");
    assert_eq!(code, 0);
    assert!(out.contains("blog") && out.contains("May I?"), "{out}");
    let (code, out, err) = k.run(&["mute", "blog", "--user", "alice"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("muted agent notifications of blog"), "{out}");
    assert!(
        store
            .find_project(alice.id, "blog")
            .await
            .unwrap()
            .project
            .agent_muted
    );
    let (code, _, _) = k.run(&["mute", "blog", "--user", "alice", "--off"], "");
    assert_eq!(code, 0);
    assert!(
        !store
            .find_project(alice.id, "blog")
            .await
            .unwrap()
            .project
            .agent_muted
    );
    let (code, _, err) = k.run(&["mute", "nope", "--user", "alice"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no such project"), "{err}");
}
