//! Exec commands against real Postgres: output shapes, exit codes, one-line
//! errors, tenant isolation, SSH keys and hostile input.
//!
//! Over 500 lines: a flat list of independent tests of one front end, each
//! a few lines over the shared `run` helper; split it by command family if
//! a family grows its own fixtures.

use kiln::ssh::exec::{self, MASK, wants_stdin};
use kiln::store::users::User;
use kiln::store::{Store, StoreError};
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use serde_json::Value;

use crate::support::TestDb;

/// What a command printed, decoded, with the invariants every command keeps
/// already checked: nothing that could drive a terminal, and a failure is
/// exactly one `error: …` line (unless it is the command list).
#[derive(Debug)]
struct Out {
    stdout: String,
    stderr: String,
    code: u32,
}

async fn run_stdin(store: &Store, user: &User, line: &str, stdin: &[u8]) -> Out {
    let o = exec::run(
        &kiln::console::Console::new(store.clone(), None, None)
            .as_user(user.clone(), kiln::console::Front::Exec),
        line,
        stdin,
    )
    .await;
    let out = Out {
        stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
        code: o.code,
    };
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let bad: Vec<char> = text
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(
            bad.is_empty(),
            "{line:?}: raw control characters {bad:?} in {name}"
        );
    }
    out
}

async fn run(store: &Store, user: &User, line: &str) -> Out {
    run_stdin(store, user, line, b"").await
}

/// Asserts success and returns stdout.
async fn ok(store: &Store, user: &User, line: &str) -> String {
    let out = run(store, user, line).await;
    assert_eq!(out.code, 0, "{line:?} failed: {}", out.stderr);
    assert!(out.stderr.is_empty(), "{line:?}: {}", out.stderr);
    out.stdout
}

async fn ok_json(store: &Store, user: &User, line: &str) -> Value {
    let text = ok(store, user, line).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{line:?}: not JSON ({e}): {text}"))
}

/// Asserts a failure with `code`, one `error:` line containing `expect`,
/// and nothing on stdout.
fn assert_fails(out: &Out, code: u32, expect: &str) {
    assert_eq!(out.code, code, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.starts_with("error: "), "{out:?}");
    assert!(out.stderr.ends_with('\n'), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
    assert!(out.stderr.contains(expect), "want {expect:?}: {out:?}");
}

async fn fails(store: &Store, user: &User, line: &str, code: u32, expect: &str) -> Out {
    let out = run(store, user, line).await;
    assert_fails(&out, code, expect);
    out
}

async fn setup() -> (TestDb, Store, User, User) {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap();
    let bob = store
        .create_user("bob", Some("another password"), false)
        .await
        .unwrap();
    (db, store, alice, bob)
}

/// Every row of the tables a project command could touch, in a stable order.
async fn dump(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for table in [
        "projects",
        "sandboxes",
        "databases",
        "environments",
        "events",
        "identities",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t ORDER BY id"
        )))
        .fetch_all(store.pool())
        .await
        .unwrap();
        out.push(format!("{table}: {}", rows.join("\n")));
    }
    out
}

fn new_key_line(comment: &str) -> (PublicKey, String) {
    let private = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .expect("generate an ed25519 key");
    let mut public = private.public_key().clone();
    public.set_comment(comment);
    let line = public.to_openssh().unwrap();
    (public, line)
}

#[tokio::test]
async fn every_command_has_help_on_stdout_with_exit_0() {
    let (_db, store, alice, _) = setup().await;
    for line in [
        "projects --help",
        "project --help",
        "create --help",
        "start --help",
        "stop --help",
        "delete --help",
        "retry --help",
        "env --help",
        "env x set --help",
        "env x unset --help",
        "events --help",
        "keys --help",
        "keys add --help",
        "keys remove --help",
        "whoami --help",
        "help project",
    ] {
        let text = ok(&store, &alice, line).await;
        assert!(text.contains("Usage: "), "{line}: {text}");
        assert!(!text.contains("Usage:  "), "{line}: no empty binary name");
    }
    assert!(ok(&store, &alice, "delete --help").await.contains("--yes"));
    assert!(
        ok(&store, &alice, "projects --help")
            .await
            .contains("--json")
    );
    for line in ["--help", "help", "-h"] {
        let text = ok(&store, &alice, line).await;
        for cmd in [
            "projects", "project", "create", "env", "events", "keys", "whoami",
        ] {
            assert!(text.contains(cmd), "{line} lists {cmd}: {text}");
        }
    }
}

#[tokio::test]
async fn unknown_or_empty_commands_list_the_commands_and_usage_errors_are_one_line() {
    let (_db, store, alice, _) = setup().await;
    for line in ["", "   ", "frobnicate", "--json", "PROJECTS"] {
        let out = run(&store, &alice, line).await;
        assert_eq!(out.code, 2, "{line:?}");
        assert!(out.stdout.is_empty());
        assert!(out.stderr.starts_with("error: "), "{out:?}");
        assert!(
            out.stderr.contains("whoami") && out.stderr.contains("keys"),
            "{out:?}"
        );
    }
    assert!(
        run(&store, &alice, "frobnicate")
            .await
            .stderr
            .contains("unknown command frobnicate")
    );
    fails(
        &store,
        &alice,
        "project 'unbalanced",
        2,
        "unbalanced quotes",
    )
    .await;
    fails(&store, &alice, "create \"x", 2, "unbalanced quotes").await;
    fails(&store, &alice, "project", 2, "project --help").await;
    fails(&store, &alice, "projects --bogus", 2, "--bogus").await;
    fails(&store, &alice, "projects extra", 2, "extra").await;
    fails(&store, &alice, "env app frob", 2, "frob").await;
    fails(&store, &alice, "events app --limit 0", 2, "events --help").await;
    fails(&store, &alice, "keys remove", 2, "keys --help").await;
}

#[tokio::test]
async fn projects_lists_human_and_json() {
    let (_db, store, alice, _) = setup().await;
    let empty = ok(&store, &alice, "projects").await;
    assert!(empty.contains("no projects yet"), "{empty}");
    assert_eq!(
        ok_json(&store, &alice, "projects --json").await,
        Value::Array(vec![])
    );

    ok(&store, &alice, "create blog").await;
    ok(&store, &alice, "create 'api server' -d 'the API'").await;
    let text = ok(&store, &alice, "projects").await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATUS"));
    assert!(text.contains("blog") && text.contains("api server"));
    assert!(lines[1].contains("CREATING"), "{text}");
    // Fixed-width columns: STATUS starts at the same offset on every line.
    let col = lines[0].find("STATUS").unwrap();
    assert!(lines[1..].iter().all(|l| l[col..].starts_with("CREATING")));

    let v = ok_json(&store, &alice, "projects --json").await;
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let api = list.iter().find(|p| p["slug"] == "apiserver").unwrap();
    assert_eq!(api["name"], "api server");
    assert_eq!(api["description"], "the API");
    assert_eq!(api["status"], "CREATING");
    let res = api["resources"].as_array().unwrap();
    assert_eq!(res.len(), 2);
    let kinds: Vec<&str> = res.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sandbox", "database"]);
    for r in res {
        assert_eq!(r["desired"], "RUNNING");
        assert_eq!(r["attempts"], 0);
        let name = r["name"].as_str().unwrap();
        if r["kind"] == "sandbox" {
            assert!(name.starts_with("apiserver-agentruntime-"), "{name}");
        } else {
            // No slug: other tenants can read a local database's name.
            assert!(name.starts_with("db-"), "{name}");
        }
        for field in ["last_error", "next_attempt_at", "lease_owner", "updated_at"] {
            assert!(r.get(field).is_some(), "{field} in {r}");
        }
    }
    // The global flag may also come first.
    assert_eq!(ok_json(&store, &alice, "--json projects").await, v);
}

#[tokio::test]
async fn project_detail_says_why_and_masks_secrets() {
    let (_db, store, alice, _) = setup().await;
    ok(&store, &alice, "create blog -d 'my blog'").await;
    ok(&store, &alice, "env blog set MODE=dev").await;
    ok(&store, &alice, "env blog set TOKEN=hunter2-secret --secret").await;
    sqlx::query(
        "UPDATE sandboxes SET attempts = 3, last_error = 'image pull failed: not found',
                lease_owner = 'replica-7', lease_until = now() + interval '30 seconds',
                next_attempt_at = now() + interval '35 seconds'",
    )
    .execute(store.pool())
    .await
    .unwrap();

    let text = ok(&store, &alice, "project blog").await;
    for want in [
        "project      blog (slug blog)",
        "description  my blog",
        "RESOURCES",
        "DESIRED",
        "ATTEMPTS",
        "last error: image pull failed: not found",
        "replica-7 until",
        "in 3",
        "MODE=dev",
        &format!("TOKEN={MASK}  (secret)"),
        "EVENTS",
        "project created",
    ] {
        assert!(text.contains(want), "want {want:?} in\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");

    let v = ok_json(&store, &alice, "project blog --json").await;
    assert!(!v.to_string().contains("hunter2"));
    assert_eq!(v["name"], "blog");
    assert_eq!(v["status"], "CREATING");
    let sandbox = &v["resources"][0];
    assert_eq!(sandbox["kind"], "sandbox");
    assert_eq!(sandbox["attempts"], 3);
    assert_eq!(sandbox["last_error"], "image pull failed: not found");
    assert_eq!(sandbox["lease_owner"], "replica-7");
    assert!(sandbox["next_attempt_at"].is_string());
    let env = v["env"].as_array().unwrap();
    assert_eq!(env.len(), 2);
    assert_eq!(
        env[0],
        serde_json::json!({"key": "MODE", "value": "dev", "secret": false})
    );
    assert_eq!(
        env[1],
        serde_json::json!({"key": "TOKEN", "value": MASK, "secret": true})
    );
    let events = v["events"].as_array().unwrap();
    assert_eq!(events[0]["message"], "project created");
    assert_eq!(events[0]["actor"], "alice");
    assert_eq!(events[0]["to"], "CREATING");

    fails(&store, &alice, "project nope", 1, "no such project: nope").await;
}

#[tokio::test]
async fn create_reports_and_refuses_with_reasons() {
    let (_db, store, alice, _) = setup().await;
    let text = ok(&store, &alice, "create 'My Blog' --description 'a blog'").await;
    assert!(
        text.contains("created project My Blog (slug myblog): CREATING"),
        "{text}"
    );
    let v = ok_json(&store, &alice, "create shop --json").await;
    assert_eq!(v["name"], "shop");
    assert_eq!(v["slug"], "shop");
    assert_eq!(v["status"], "CREATING");
    assert_eq!(v["resources"].as_array().unwrap().len(), 2);

    fails(
        &store,
        &alice,
        "create my-blog",
        1,
        "already have a project",
    )
    .await;
    fails(&store, &alice, "create '!!!'", 1, "no letters or digits").await;
    fails(&store, &alice, "create ''", 1, "empty").await;
    fails(&store, &alice, "create", 2, "create --help").await;
}

#[tokio::test]
async fn intents_are_recorded_or_refused_with_the_reason() {
    let (_db, store, alice, _) = setup().await;
    ok(&store, &alice, "create app").await;
    // Start while creating is refused by the intents table.
    fails(
        &store,
        &alice,
        "start app",
        1,
        "cannot start a project that is CREATING",
    )
    .await;
    let text = ok(&store, &alice, "stop app").await;
    assert_eq!(text, "stop requested for app: now STOPPING\n");
    fails(&store, &alice, "stop app", 1, "cannot stop").await;
    let v = ok_json(&store, &alice, "start app --json").await;
    assert_eq!(
        v,
        serde_json::json!({"project": "app", "intent": "start", "status": "STARTING"})
    );
    fails(&store, &alice, "retry app", 1, "cannot retry").await;

    // A resource in ERROR can be retried toward what it wanted.
    sqlx::query("UPDATE sandboxes SET status = 'ERROR', last_error = 'boom'")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE projects SET status = 'ERROR'")
        .execute(store.pool())
        .await
        .unwrap();
    let v = ok_json(&store, &alice, "retry app --json").await;
    assert_eq!(v["intent"], "retry");
    assert_eq!(v["status"], "STARTING");

    let events = ok(&store, &alice, "events app").await;
    for want in [
        "stop requested",
        "start requested",
        "retry requested",
        "by alice",
    ] {
        assert!(events.contains(want), "{want}: {events}");
    }
}

#[tokio::test]
async fn delete_needs_yes_and_changes_nothing_without_it() {
    let (_db, store, alice, _) = setup().await;
    ok(&store, &alice, "create 'my app'").await;
    let before = dump(&store).await;
    let out = fails(
        &store,
        &alice,
        "delete 'my app'",
        2,
        "delete 'my app' --yes",
    )
    .await;
    assert!(out.stderr.contains("for good"), "{out:?}");
    assert_eq!(dump(&store).await, before);
    // An unknown name is reported as such, not with the confirmation hint.
    fails(&store, &alice, "delete ghost", 1, "no such project: ghost").await;

    let v = ok_json(&store, &alice, "delete myapp --yes --json").await;
    assert_eq!(v["intent"], "delete");
    assert_eq!(v["status"], "TERMINATING");
    fails(&store, &alice, "delete myapp --yes", 1, "cannot delete").await;
}

#[tokio::test]
async fn env_lists_sets_and_unsets() {
    let (_db, store, alice, _) = setup().await;
    ok(&store, &alice, "create app").await;
    assert!(ok(&store, &alice, "env app").await.contains("no variables"));
    assert_eq!(
        ok_json(&store, &alice, "env app --json").await,
        serde_json::json!([])
    );

    let text = ok(&store, &alice, "env app set URL=postgres://u@h/db?a=b").await;
    assert!(text.starts_with("set URL on app"), "{text}");
    let v = ok_json(&store, &alice, "env app set API_KEY=sk-123 --secret --json").await;
    assert_eq!(
        v,
        serde_json::json!({"project": "app", "key": "API_KEY", "action": "set", "secret": true})
    );
    ok(&store, &alice, "env app set EMPTY=").await;

    let text = ok(&store, &alice, "env app list").await;
    assert_eq!(
        text,
        format!("API_KEY={MASK}  (secret)\nEMPTY=\nURL=postgres://u@h/db?a=b\n")
    );
    let v = ok_json(&store, &alice, "env app --json").await;
    assert_eq!(
        v,
        serde_json::json!([
            {"key": "API_KEY", "value": MASK, "secret": true},
            {"key": "EMPTY", "value": "", "secret": false},
            {"key": "URL", "value": "postgres://u@h/db?a=b", "secret": false},
        ])
    );
    // The secret itself is stored and decrypts; it is only never printed.
    let vars = store.list_env(alice.id, "app").await.unwrap();
    assert_eq!(vars[0].value, "sk-123");

    assert_eq!(
        ok(&store, &alice, "env app unset EMPTY").await,
        "unset EMPTY on app\n"
    );
    let v = ok_json(&store, &alice, "env app unset URL --json").await;
    assert_eq!(v["action"], "unset");
    assert_eq!(
        ok_json(&store, &alice, "env app --json")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    fails(&store, &alice, "env app unset NOPE", 1, "no variable NOPE").await;
    fails(&store, &alice, "env app set NOEQUALS", 2, "KEY=VALUE").await;
    fails(
        &store,
        &alice,
        "env app set 1BAD=x",
        1,
        "not a valid variable name",
    )
    .await;
    fails(&store, &alice, "env app set PATH=/x", 1, "set by Kiln").await;
    fails(&store, &alice, "env ghost", 1, "no such project: ghost").await;
    fails(
        &store,
        &alice,
        "env app set A=1 B=2",
        2,
        "expected one KEY=VALUE",
    )
    .await;
    fails(
        &store,
        &alice,
        "env app unset",
        2,
        "expected one variable name",
    )
    .await;
    fails(
        &store,
        &alice,
        "env app list extra",
        2,
        "takes no arguments",
    )
    .await;
    fails(
        &store,
        &alice,
        "env app --secret",
        2,
        "--secret goes with set",
    )
    .await;

    // A project may be named like an action and is still addressable.
    ok(&store, &alice, "create list").await;
    ok(&store, &alice, "env list set set=1").await;
    assert_eq!(ok(&store, &alice, "env list").await, "set=1\n");
    assert_eq!(ok(&store, &alice, "env list list").await, "set=1\n");
}

#[tokio::test]
async fn events_show_history_in_both_forms() {
    let (_db, store, alice, _) = setup().await;
    ok(&store, &alice, "create app").await;
    ok(&store, &alice, "stop app").await;
    let text = ok(&store, &alice, "events app").await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("project created") && lines[0].contains("by alice"));
    assert!(lines[1].contains("CREATING → STOPPING") && lines[1].contains("stop requested"));
    let v = ok_json(&store, &alice, "events app --json").await;
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["from"], "CREATING");
    assert_eq!(list[1]["to"], "STOPPING");
    assert_eq!(list[1]["kind"], "project");
    assert_eq!(list[1]["resource"], "app");
    assert!(list[1]["time"].is_string());
    let v = ok_json(&store, &alice, "events app --limit 1 --json").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["message"], "stop requested");
}

#[tokio::test]
async fn whoami_counts_projects_and_ways_in() {
    let (_db, store, alice, _) = setup().await;
    ok(&store, &alice, "create one").await;
    let text = ok(&store, &alice, "whoami").await;
    assert_eq!(
        text,
        "username  alice\nrole      member\nprojects  1\nauth      password\n"
    );
    let (_, line) = new_key_line("alice@laptop");
    store.add_ssh_key(alice.id, &line).await.unwrap();
    let v = ok_json(&store, &alice, "whoami --json").await;
    assert_eq!(
        v,
        serde_json::json!({"username": "alice", "role": "member", "projects": 1,
                           "auth_methods": ["password", "ssh_key"], "password": true, "ssh_keys": 1})
    );
    assert!(
        ok(&store, &alice, "whoami")
            .await
            .contains("password, 1 ssh key\n")
    );
}

#[tokio::test]
async fn keys_are_added_listed_and_removed_over_exec() {
    let (_db, store, alice, bob) = setup().await;
    assert!(wants_stdin("keys add"));
    assert!(ok(&store, &alice, "keys").await.contains("no keys"));
    let (public, line) = new_key_line("alice@laptop");
    let fp = public.fingerprint(russh::keys::HashAlg::Sha256).to_string();

    let out = run_stdin(&store, &alice, "keys add", format!("{line}\n").as_bytes()).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!(
            "added ssh-ed25519 key {fp} (alice@laptop); pending until you sign in with it once (ssh -i KEY …), which proves it is yours\n"
        )
    );

    let text = ok(&store, &alice, "keys list").await;
    assert!(text.starts_with("FINGERPRINT"), "{text}");
    assert!(text.contains(&fp) && text.contains("ssh-ed25519") && text.contains("alice@laptop"));
    let v = ok_json(&store, &alice, "keys --json").await;
    assert_eq!(v[0]["fingerprint"], fp.as_str());
    assert_eq!(v[0]["algorithm"], "ssh-ed25519");
    assert_eq!(v[0]["comment"], "alice@laptop");
    assert_eq!(v[0]["pending"], true);
    assert!(v[0]["created_at"].is_string());

    // The same key again, by anyone: pending for each, nothing said about
    // who else holds it (only a sign-in with it will bind it).
    for user in [&alice, &bob] {
        let out = run_stdin(&store, user, "keys add", line.as_bytes()).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("pending"), "{out:?}");
    }

    // Bad input is refused with a reason and stores nothing.
    let before = dump(&store).await;
    let cases: [(&[u8], &str); 6] = [
        (b"", "no key given"),
        (b"hello", "not an OpenSSH public key"),
        (b"ssh-ed25519 AAAAnotbase64!!", "not an OpenSSH public key"),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n",
            "private key",
        ),
        (b"\xff\xfe", "not text"),
        (&[b'a'; 20_000], "16 KiB"),
    ];
    for (input, expect) in cases {
        let out = run_stdin(&store, &alice, "keys add", input).await;
        assert_fails(&out, 1, expect);
    }
    let two = format!("{}\n{}\n", new_key_line("a").1, new_key_line("b").1);
    let out = run_stdin(&store, &alice, "keys add --json", two.as_bytes()).await;
    assert_fails(&out, 1, "exactly one key");
    assert_eq!(dump(&store).await, before);

    // A second key via JSON, then removal (with or without the SHA256: prefix).
    let (second, line2) = new_key_line("");
    let out = run_stdin(&store, &alice, "keys add --json", line2.as_bytes()).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let fp2 = second.fingerprint(russh::keys::HashAlg::Sha256).to_string();
    assert_eq!(v["fingerprint"], fp2.as_str());
    assert_eq!(v["comment"], "");
    let v = ok_json(&store, &alice, &format!("keys remove {fp2} --json")).await;
    assert_eq!(v, serde_json::json!({"removed": fp2}));
    let bare = fp.strip_prefix("SHA256:").unwrap();
    assert_eq!(
        ok(&store, &alice, &format!("keys remove {bare}")).await,
        format!("removed key {fp}\n")
    );
    assert_eq!(
        ok_json(&store, &alice, "keys --json").await,
        serde_json::json!([])
    );
    fails(
        &store,
        &alice,
        &format!("keys remove {fp}"),
        1,
        "no such key",
    )
    .await;
}

#[tokio::test]
async fn a_key_only_user_cannot_remove_the_last_way_in() {
    let (_db, store, _, bob) = setup().await;
    let carol = store.create_user("carol", None, false).await.unwrap();
    let (_, line) = new_key_line("carol");
    let key = store.add_ssh_key(carol.id, &line).await.unwrap();
    assert!(!store.has_password(carol.id).await.unwrap());
    let err = store
        .remove_ssh_key(carol.id, &key.fingerprint)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let out = fails(
        &store,
        &carol,
        &format!("keys remove {}", key.fingerprint),
        1,
        "only way to log in",
    )
    .await;
    assert!(out.stderr.contains("set a password"), "{out:?}");
    // Someone else's key is "no such key" for bob, and stays.
    fails(
        &store,
        &bob,
        &format!("keys remove {}", key.fingerprint),
        1,
        "no such key",
    )
    .await;
    assert_eq!(store.list_ssh_keys(carol.id).await.unwrap().len(), 1);

    // With a password, the key can go.
    assert!(store.set_password(carol.id, "short").await.is_err());
    store
        .set_password(carol.id, "carol's new password")
        .await
        .unwrap();
    assert!(store.has_password(carol.id).await.unwrap());
    let (u, _) = store.password_hash("carol").await.unwrap().unwrap();
    assert_eq!(u.id, carol.id);
    store
        .remove_ssh_key(carol.id, &key.fingerprint)
        .await
        .unwrap();
    // Setting it again replaces, not duplicates.
    store
        .set_password(carol.id, "yet another password")
        .await
        .unwrap();
    let (_, hash) = store.password_hash("carol").await.unwrap().unwrap();
    assert!(kiln::store::users::verify_password("yet another password", &hash).await);
}

#[tokio::test]
async fn user_by_key_finds_enabled_owners_by_key_material() {
    let (_db, store, alice, _) = setup().await;
    let (public, line) = new_key_line("alice@laptop");
    store.add_ssh_key(alice.id, &line).await.unwrap();
    let found = store.user_by_key(&public).await.unwrap().unwrap();
    assert_eq!(found.id, alice.id);
    // The comment is not part of the identity.
    let mut renamed = public.clone();
    renamed.set_comment("other");
    assert!(store.user_by_key(&renamed).await.unwrap().is_some());
    let (stranger, _) = new_key_line("x");
    assert!(store.user_by_key(&stranger).await.unwrap().is_none());

    // A row whose stored key does not match its fingerprint never authenticates.
    let (other, other_line) = new_key_line("");
    store.add_ssh_key(alice.id, &other_line).await.unwrap();
    sqlx::query(
        "UPDATE identities SET metadata = jsonb_set(metadata, '{key}', to_jsonb($1::text))
          WHERE provider_user_id = $2",
    )
    .bind(line.rsplit_once(' ').unwrap().0)
    .bind(other.fingerprint(russh::keys::HashAlg::Sha256).to_string())
    .execute(store.pool())
    .await
    .unwrap();
    assert!(store.user_by_key(&other).await.unwrap().is_none());

    store.disable_user("alice").await.unwrap();
    assert!(store.user_by_key(&public).await.unwrap().is_none());
}

#[tokio::test]
async fn another_tenants_project_answers_exactly_like_a_missing_one() {
    let (_db, store, alice, bob) = setup().await;
    ok(&store, &alice, "create secretapp -d 'alice only'").await;
    ok(&store, &alice, "env secretapp set FOO=bar").await;
    ok(&store, &alice, "env secretapp set TOKEN=t0ps3cret --secret").await;
    ok(&store, &alice, "stop secretapp").await;
    let before = dump(&store).await;

    let commands = [
        "project {}",
        "project {} --json",
        "start {}",
        "stop {}",
        "retry {}",
        "delete {}",
        "delete {} --yes",
        "delete {} --yes --json",
        "env {}",
        "env {} list --json",
        "env {} set FOO=evil",
        "env {} set NEW=x --secret",
        "env {} unset FOO",
        "events {}",
        "events {} --json",
    ];
    for template in commands {
        let theirs = run(&store, &bob, &template.replace("{}", "secretapp")).await;
        let missing = run(&store, &bob, &template.replace("{}", "nosuchapp")).await;
        assert_fails(&theirs, 1, "no such project: secretapp");
        assert_eq!(
            theirs.stderr.replace("secretapp", "nosuchapp"),
            missing.stderr,
            "{template}"
        );
        assert_eq!(theirs.code, missing.code, "{template}");
        assert_eq!(theirs.stdout, missing.stdout, "{template}");
    }
    // The slug of alice's project behaves the same way.
    fails(&store, &bob, "project secretapp", 1, "no such project").await;
    assert!(
        ok(&store, &bob, "projects")
            .await
            .contains("no projects yet")
    );
    assert_eq!(
        ok_json(&store, &bob, "projects --json").await,
        serde_json::json!([])
    );
    assert!(ok(&store, &bob, "whoami").await.contains("projects  0"));
    assert_eq!(dump(&store).await, before, "bob changed nothing");
    // And alice still sees her project as it was.
    assert!(
        ok(&store, &alice, "env secretapp")
            .await
            .contains("FOO=bar")
    );
}

#[tokio::test]
async fn hostile_input_never_reaches_the_terminal_raw() {
    let (_db, store, alice, _) = setup().await;
    // Names with escape sequences are refused, and the refusal is harmless.
    let out = run(&store, &alice, "create 'evil\x1b[2Jname'").await;
    assert_fails(&out, 1, "control characters");
    let out = run(&store, &alice, "project 'x\x1b]0;pwned\x07'").await;
    assert_fails(&out, 1, "no such project: x?]0;pwned?");
    let out = run(&store, &alice, "\x1b[31mred").await;
    assert!(out.stderr.contains("unknown command '?[31mred'"), "{out:?}");
    let out = run(&store, &alice, "projects --\x1b[5mblink").await;
    // clap drops what looks like styling from its message; either way no raw ESC.
    assert_fails(&out, 2, "blink");
    fails(
        &store,
        &alice,
        "create x -d 'bad\x1b[0m'",
        1,
        "control characters",
    )
    .await;

    // What does get stored (a newline in a description, escapes and C1
    // controls in values, comments and errors) is neutralised on output.
    ok(&store, &alice, "create app -d 'line one\nline two'").await;
    ok(&store, &alice, "env app set ESC='\x1b]52;c;cG93bmVk\x07'").await;
    ok(&store, &alice, "env app set CSI='a\u{9b}31mb\u{7f}'").await;
    sqlx::query("UPDATE sandboxes SET last_error = E'fail\\x1b[2J\\rwipe'")
        .execute(store.pool())
        .await
        .unwrap();
    let (_, line) = new_key_line("me\x1b[8m@host");
    let out = run_stdin(&store, &alice, "keys add", line.as_bytes()).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("me?[8m@host"), "{out:?}");

    let detail = ok(&store, &alice, "project app").await;
    assert!(detail.contains("line one?line two"), "{detail}");
    assert!(detail.contains("ESC=?]52;c;cG93bmVk?"), "{detail}");
    assert!(detail.contains("CSI=a?31mb?"), "{detail}");
    assert!(detail.contains("last error: fail?[2J?wipe"), "{detail}");
    assert!(ok(&store, &alice, "env app").await.contains("ESC=?]52"));
    assert!(
        ok(&store, &alice, "projects")
            .await
            .contains("fail?[2J?wipe")
    );
    assert!(ok(&store, &alice, "keys").await.contains("me?[8m@host"));
    // JSON keeps the exact value, escaped.
    for line in [
        "project app --json",
        "env app --json",
        "projects --json",
        "keys --json",
    ] {
        ok_json(&store, &alice, line).await;
    }
    let v = ok_json(&store, &alice, "env app --json").await;
    assert_eq!(v[0]["value"], "a\u{9b}31mb\u{7f}");
    assert_eq!(v[1]["value"], "\x1b]52;c;cG93bmVk\x07");
    let raw = ok(&store, &alice, "env app --json").await;
    assert!(raw.contains("\\u009b") && raw.contains("\\u001b"), "{raw}");
}

#[tokio::test]
async fn huge_arguments_are_refused_briefly() {
    let (_db, store, alice, _) = setup().await;
    ok(&store, &alice, "create app").await;
    let big = "a".repeat(100_000);
    let cases = [
        (format!("create {big}"), 1, "limit is 100"),
        (format!("project {big}"), 1, "no such project"),
        (format!("create x -d {big}"), 1, "the limit is 2000"),
        (format!("env app set K={big}"), 1, "the limit is 32768"),
        (format!("env app set {big}=v"), 1, "the limit is 128"),
        (format!("env app unset {big}"), 1, "no variable"),
        (format!("keys remove {big}"), 1, "no such key"),
        (format!("projects --{big}"), 2, "projects --help"),
        (format!("{big} projects"), 2, "unknown command"),
        (format!("events app --limit {big}"), 2, "events --help"),
    ];
    let before = dump(&store).await;
    for (line, code, expect) in cases {
        let out = run(&store, &alice, &line).await;
        assert_eq!(out.code, code, "{}: {out:?}", &line[..20]);
        assert!(
            out.stderr.contains(expect),
            "{}: {}",
            &line[..20],
            &out.stderr[..out.stderr.len().min(300)]
        );
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(
            first.len() < 1_000,
            "{}: {} bytes",
            &line[..20],
            first.len()
        );
        if code == 1 || !expect.contains("unknown") {
            assert_eq!(out.stderr.lines().count(), 1);
        }
    }
    assert_eq!(dump(&store).await, before);
}
