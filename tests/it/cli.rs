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
