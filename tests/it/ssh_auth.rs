//! SSH authentication over real TCP with a real SSH client (russh): every
//! sign-in rule (passwords, keys, limits and throttling, sign-up, the
//! caps that bound memory, audit, the server's own files), each proven
//! over a real connection, which is why this file is long. Tests that need
//! the real `kiln serve` process (memory, files, its log) start it with
//! `ServeProcess`.

use std::time::Duration;

use kiln::config::Signup;

use crate::support::ssh::{Server, connect, test_ssh_config};

#[tokio::test]
async fn a_password_logs_in_and_a_retry_after_a_wrong_one_works() {
    let server = Server::start().await;
    server.user("alice", "correct horse battery").await;
    let mut c = connect(server.addr).await;
    assert!(!c.password("alice", "wrong password").await);
    assert!(c.password("alice", "correct horse battery").await);
}

#[tokio::test]
async fn wrong_password_unknown_user_and_disabled_user_look_the_same() {
    let server = Server::start().await;
    server.user("alice", "correct horse battery").await;
    server.user("carol", "correct horse battery").await;
    server.store.disable_user("carol").await.unwrap();
    let mut outcomes = Vec::new();
    for (user, pw) in [
        ("alice", "wrong password"),
        ("nobody", "correct horse battery"),
        ("carol", "correct horse battery"),
    ] {
        let mut c = connect(server.addr).await;
        let r = c
            .handle
            .authenticate_password(user, pw)
            .await
            .expect("auth round trip");
        // The whole answer (success flag and the methods offered next) is identical.
        outcomes.push(format!("{r:?}"));
    }
    assert!(!outcomes[0].contains("Success"), "{outcomes:?}");
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[1], outcomes[2]);
}

/// When the limit releases is the limiter's pure clock arithmetic, tested
/// with a clock of its own (`ssh::ratelimit`); here the window is far
/// longer than any run, so slow sign-ins on a busy machine cannot let the
/// first failure expire before the limit is checked (it once did).
#[tokio::test]
async fn the_rate_limit_engages_for_that_user_only() {
    let mut cfg = test_ssh_config();
    cfg.max_failures_per_user = 3;
    cfg.failure_window = Duration::from_secs(3600);
    cfg.throttle_base = Duration::from_secs(600);
    let server = Server::start_with(cfg).await;
    server.user("alice", "correct horse battery").await;
    for _ in 0..3 {
        let mut c = connect(server.addr).await;
        assert!(!c.password("alice", "guess").await);
    }
    // Limited now from this address: even the right password is refused...
    let mut c = connect(server.addr).await;
    let refused = !c.password("alice", "correct horse battery").await;
    // ...and the keyboard-interactive prompt says why.
    let mut c = connect(server.addr).await;
    let r = c
        .handle
        .authenticate_keyboard_interactive_start("alice", None::<String>)
        .await
        .unwrap();
    assert!(refused, "the right password was accepted while limited");
    match r {
        russh::client::KeyboardInteractiveAuthResponse::InfoRequest { instructions, .. } => {
            assert!(
                instructions.contains("Too many failed logins"),
                "{instructions}"
            );
        }
        other => panic!("expected a prompt, got {other:?}"),
    }
    // Another user is unaffected.
    server.user("bob", "another long password").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("bob", "another long password").await);
}

#[tokio::test]
async fn keyboard_interactive_prompts_for_the_password() {
    let server = Server::start().await;
    server.user("alice", "correct horse battery").await;
    let mut c = connect(server.addr).await;
    let r = c
        .handle
        .authenticate_keyboard_interactive_start("alice", None::<String>)
        .await
        .unwrap();
    let russh::client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } = r else {
        panic!("expected a prompt, got {r:?}");
    };
    assert_eq!(prompts.len(), 1);
    assert!(prompts[0].prompt.contains("Password"));
    let r = c
        .handle
        .authenticate_keyboard_interactive_respond(vec!["correct horse battery".into()])
        .await
        .unwrap();
    assert!(
        matches!(r, russh::client::KeyboardInteractiveAuthResponse::Success),
        "{r:?}"
    );
}

#[tokio::test]
async fn open_signup_creates_an_account_only_with_a_long_password() {
    let mut cfg = test_ssh_config();
    cfg.signup = Signup::Open;
    let server = Server::start_with(cfg).await;
    let mut c = connect(server.addr).await;
    assert!(!c.password("newbie", "short").await);
    assert!(server.store.find_user("newbie").await.unwrap().is_none());
    assert!(c.password("newbie", "a long enough password").await);
    assert!(server.store.find_user("newbie").await.unwrap().is_some());
    // The account now exists: the password is checked, not re-created.
    let mut c = connect(server.addr).await;
    assert!(!c.password("newbie", "a different long password").await);
}

#[tokio::test]
async fn open_signup_refuses_reserved_usernames_but_existing_ones_still_sign_in() {
    let mut cfg = test_ssh_config();
    cfg.signup = Signup::Open;
    let server = Server::start_with(cfg).await;
    for name in ["admin", "Root", "postgres"] {
        let mut c = connect(server.addr).await;
        assert!(!c.password(name, "a long enough password").await, "{name}");
        assert!(
            server.store.find_user(name).await.unwrap().is_none(),
            "{name}"
        );
    }
    // An account that took such a name before the rule existed keeps working.
    server
        .store
        .create_user("system", Some("an older long password"), false)
        .await
        .unwrap();
    let mut c = connect(server.addr).await;
    assert!(c.password("system", "an older long password").await);
}

#[tokio::test]
async fn closed_signup_never_creates_accounts() {
    let server = Server::start().await;
    let mut c = connect(server.addr).await;
    assert!(!c.password("stranger", "a long enough password").await);
    assert!(server.store.find_user("stranger").await.unwrap().is_none());
}

#[tokio::test]
async fn a_shell_without_a_pty_is_refused_with_a_pointer_to_exec_commands() {
    let server = Server::start().await;
    server.user("alice", "correct horse battery").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let mut ch = c.handle.channel_open_session().await.unwrap();
    ch.request_shell(true).await.unwrap();
    let mut stderr = String::new();
    let mut code = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::ExtendedData { data, .. } => {
                stderr.push_str(&String::from_utf8_lossy(&data))
            }
            russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    assert_eq!(code, Some(1));
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn openssh_generated_ed25519_ecdsa_and_rsa_keys_log_in() {
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    let dir = std::env::temp_dir().join(format!("kk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (kind, bits) in [
        ("ed25519", None),
        ("ecdsa", Some("256")),
        ("rsa", Some("3072")),
    ] {
        let path = dir.join(kind);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("pub"));
        let mut cmd = std::process::Command::new("ssh-keygen");
        cmd.args(["-q", "-N", "", "-t", kind, "-f"]).arg(&path);
        if let Some(b) = bits {
            cmd.args(["-b", b]);
        }
        assert!(cmd.status().expect("ssh-keygen").success(), "{kind}");
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        server.store.add_ssh_key(alice.id, &public).await.unwrap();
        let key = russh::keys::load_secret_key(&path, None).unwrap();
        let mut c = connect(server.addr).await;
        assert!(c.key("alice", &key).await, "{kind} key logs in");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The failure rows (reserved or spent) a sign-in bucket holds.
async fn failures(store: &kiln::store::Store, key: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM signin_failures WHERE key = $1")
        .bind(key)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// A config whose failure window and throttle interval outlive any run, so
/// a slow machine cannot let a failure expire (or the next throttled attempt
/// fall due) before the limit is checked.
fn limited(per_address: usize, per_user: usize) -> kiln::config::SshConfig {
    let mut cfg = test_ssh_config();
    cfg.max_failures_per_address = per_address;
    cfg.max_failures_per_user = per_user;
    cfg.failure_window = Duration::from_secs(3600);
    cfg.throttle_base = Duration::from_secs(600);
    cfg
}

#[tokio::test]
async fn padded_and_nbsp_names_spend_the_plain_names_budget() {
    let server = Server::start_with(limited(1000, 3)).await;
    server.user("alice", "correct horse battery").await;
    for _ in 0..3 {
        let mut c = connect(server.addr).await;
        assert!(!c.password("alice", "guess").await);
    }
    for variant in [" alice", "alice\u{a0}", "ALICE", "alice "] {
        let mut c = connect(server.addr).await;
        assert!(
            !c.password(variant, "correct horse battery").await,
            "{variant:?} got a fresh budget"
        );
    }
    assert_eq!(failures(&server.store, "user:alice").await, 3);
}

#[tokio::test]
async fn signing_in_to_your_own_account_does_not_reset_the_address_budget() {
    let server = Server::start_with(limited(3, 1000)).await;
    server.user("alice", "correct horse battery").await;
    server.user("mallory", "mallory's own password").await;
    let mut c = connect(server.addr).await;
    assert!(!c.password("alice", "guess one").await);
    assert!(!c.password("alice", "guess two").await);
    let mut own = connect(server.addr).await;
    assert!(own.password("mallory", "mallory's own password").await);
    assert!(!c.password("alice", "guess three").await);
    // Three failures from this address: even the right password is refused.
    let mut c = connect(server.addr).await;
    assert!(!c.password("alice", "correct horse battery").await);
}

/// Each verification is reserved as a failure row before argon2 runs, so
/// the rows count the verifications that got through.
#[tokio::test]
async fn concurrent_guesses_verify_no_more_passwords_than_the_user_budget() {
    let server = Server::start_with(limited(1000, 3)).await;
    server.user("alice", "correct horse battery").await;
    let guesses: Vec<_> = (0..100)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut c = connect(addr).await;
                c.password("alice", &format!("guess {i}")).await
            })
        })
        .collect();
    for g in guesses {
        assert!(!g.await.unwrap());
    }
    let verified = failures(&server.store, "user:alice").await;
    assert!((1..=3).contains(&verified), "{verified} verifications");
    let mut c = connect(server.addr).await;
    assert!(!c.password("alice", "correct horse battery").await);
}

pub(crate) fn random_key() -> russh::keys::PrivateKey {
    russh::keys::PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )
    .unwrap()
}

/// A client whose connection comes from `from` (any 127.0.0.0/8 address
/// reaches a server on 127.0.0.1): another address, as the server sees it.
pub(crate) async fn connect_from(
    from: &str,
    addr: std::net::SocketAddr,
) -> crate::support::ssh::Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("bind the client's address");
    let stream = socket.connect(addr).await.expect("connect");
    let config = std::sync::Arc::new(russh::client::Config::default());
    let handle = russh::client::connect_stream(config, stream, crate::support::ssh::Handler)
        .await
        .expect("ssh handshake");
    crate::support::ssh::Client { handle }
}

#[tokio::test]
async fn ten_wrong_passwords_do_not_lock_out_key_sign_in() {
    let server = Server::start_with(limited(1000, 3)).await;
    let alice = server.user("alice", "correct horse battery").await;
    let key = random_key();
    let public = key.public_key().to_openssh().unwrap();
    server.store.add_ssh_key(alice.id, &public).await.unwrap();
    for _ in 0..10 {
        let mut c = connect(server.addr).await;
        assert!(!c.password("alice", "guess").await);
    }
    // From the guessing address the password is held back...
    let mut c = connect(server.addr).await;
    assert!(!c.password("alice", "correct horse battery").await);
    // ...but the key is not charged to the password budget at all.
    let mut c = connect(server.addr).await;
    assert!(c.key("alice", &key).await, "the key was locked out");
}

/// Mallory at another address spends alice's whole password budget (and
/// more): alice, at her own address, still signs in with her password at
/// once, while Mallory's own next guess waits.
#[tokio::test]
async fn guesses_from_another_address_do_not_lock_the_user_out() {
    let server = Server::start_with(limited(1000, 3)).await;
    server.user("alice", "correct horse battery").await;
    for i in 0..10 {
        let mut c = connect_from("127.0.0.2", server.addr).await;
        assert!(!c.password("alice", &format!("guess {i}")).await);
    }
    // Mallory spent the budget and then some; only the first few were
    // verified, the rest were held back by the throttle.
    let verified = failures(&server.store, "user:alice").await;
    assert!((3..=4).contains(&verified), "{verified} guesses verified");
    let mut alice = connect(server.addr).await;
    assert!(
        alice.password("alice", "correct horse battery").await,
        "alice was locked out by guesses from another address"
    );
    // Mallory, even with the right password now, is made to wait...
    let mut c = connect_from("127.0.0.2", server.addr).await;
    assert!(!c.password("alice", "correct horse battery").await);
    // ...and the password prompt says for how long.
    let mut c = connect_from("127.0.0.2", server.addr).await;
    let r = c
        .handle
        .authenticate_keyboard_interactive_start("alice", None::<String>)
        .await
        .unwrap();
    match r {
        russh::client::KeyboardInteractiveAuthResponse::InfoRequest { instructions, .. } => {
            assert!(instructions.contains("try again in"), "{instructions}");
        }
        other => panic!("expected a prompt, got {other:?}"),
    }
}

/// Past the user's budget each address gets one attempt per growing
/// interval: a third address's first guess is verified, its second (at
/// once) is not.
#[tokio::test]
async fn past_the_user_budget_each_address_is_throttled_not_refused() {
    let server = Server::start_with(limited(1000, 2)).await;
    server.user("alice", "correct horse battery").await;
    for _ in 0..2 {
        let mut c = connect_from("127.0.0.2", server.addr).await;
        assert!(!c.password("alice", "guess").await);
    }
    assert_eq!(failures(&server.store, "user:alice").await, 2);
    let mut c = connect_from("127.0.0.3", server.addr).await;
    assert!(!c.password("alice", "another guess").await);
    assert_eq!(failures(&server.store, "user:alice").await, 3);
    assert!(!c.password("alice", "a third guess").await);
    assert_eq!(
        failures(&server.store, "user:alice").await,
        3,
        "a second guess from the same address went ahead at once"
    );
    assert_eq!(
        failures(&server.store, "pair:127.0.0.3|user:alice").await,
        1
    );
}

#[tokio::test]
async fn two_servers_on_one_database_share_the_budget() {
    let server = Server::start_with(limited(1000, 4)).await;
    let other = server.another_ssh_server(limited(1000, 4)).await;
    server.user("alice", "correct horse battery").await;
    for addr in [server.addr, server.addr, other, other] {
        let mut c = connect(addr).await;
        assert!(!c.password("alice", "guess").await);
    }
    for addr in [server.addr, other] {
        let mut c = connect(addr).await;
        assert!(!c.password("alice", "correct horse battery").await);
    }
}

#[tokio::test]
async fn an_overlong_username_is_refused_before_any_accounting() {
    let server = Server::start_with(limited(1000, 3)).await;
    let mut c = connect(server.addr).await;
    assert!(!c.password(&"a".repeat(4000), "whatever password").await);
    // 200 kB: refused (or the connection dropped) with nothing counted.
    let mut big = connect(server.addr).await;
    let r = big
        .handle
        .authenticate_password("b".repeat(200 * 1024), "whatever password")
        .await;
    assert!(!r.is_ok_and(|r| r.success()));
    let mut big = connect(server.addr).await;
    let r = big
        .handle
        .authenticate_keyboard_interactive_start("c".repeat(200 * 1024), None::<String>)
        .await;
    assert!(
        !matches!(
            r,
            Ok(russh::client::KeyboardInteractiveAuthResponse::Success)
        ),
        "{r:?}"
    );
    assert_eq!(failures(&server.store, "addr:127.0.0.1").await, 0);
    // A name of ordinary length is counted against the address.
    assert!(!c.password("nobody", "whatever password").await);
    assert_eq!(failures(&server.store, "addr:127.0.0.1").await, 1);
}

#[tokio::test]
async fn connections_over_the_pre_sign_in_cap_are_closed_until_one_signs_in() {
    let mut cfg = test_ssh_config();
    cfg.max_preauth_per_address = 2;
    let server = Server::start_with(cfg).await;
    server.user("alice", "correct horse battery").await;
    let try_connect = || async {
        let config = std::sync::Arc::new(russh::client::Config::default());
        russh::client::connect(config, server.addr, crate::support::ssh::Handler)
            .await
            .is_ok()
    };
    let mut first = connect(server.addr).await;
    let _second = connect(server.addr).await;
    assert!(
        !try_connect().await,
        "a third waiting connection was let in"
    );
    // Signed in, the first no longer waits: room for one more.
    assert!(first.password("alice", "correct horse battery").await);
    let _third = connect(server.addr).await;
    assert!(!try_connect().await);
}

/// `/proc/PID/status` field `field` (VmRSS, VmHWM) in kB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The real `kiln serve` in a child process on `db`, with `config` as its
/// `kiln.toml`; killed when dropped.
struct ServeProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    data_dir: std::path::PathBuf,
}

impl ServeProcess {
    async fn start(db: &crate::support::TestDb, config: &str) -> ServeProcess {
        Self::start_logging(db, config, std::process::Stdio::null()).await
    }

    /// With its log (stderr) going to `log`.
    async fn start_logging(
        db: &crate::support::TestDb,
        config: &str,
        log: impl Into<std::process::Stdio>,
    ) -> ServeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let data_dir = std::env::temp_dir().join(format!(
            "ka-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&data_dir).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(
            data_dir.join("kiln.toml"),
            crate::support::serve::without_pool(config),
        )
        .unwrap();
        // Under umask 022, as a login shell would leave it.
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_kiln"))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--ssh-listen")
            .arg(addr.to_string())
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("KILN_SECRET_KEY", crate::support::ssh::TEST_SECRET_KEY)
            .env("KILN_LOG", "error,kiln::audit=info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kiln serve");
        let mut server = ServeProcess {
            child,
            addr,
            data_dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "kiln serve exited"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "kiln serve never listened"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// 100 connections at once, each trying a password (for a known or an
/// unknown user), against the real server process: argon2 runs at most one per
/// core, so the server's peak memory stays bounded (unbounded, it reached
/// 1.9 GB, and allocating each check's memory afresh left it 200-340 MB
/// larger). A resource bound, read from `/proc`, not a timing.
#[tokio::test]
async fn a_hundred_concurrent_password_attempts_keep_the_server_memory_bounded() {
    let db = crate::support::TestDb::new().await;
    let store = db
        .store_with_key(
            kiln::store::SecretKey::from_hex(crate::support::ssh::TEST_SECRET_KEY).unwrap(),
        )
        .await;
    store
        .create_user("alice", Some("correct horse battery"), false)
        .await
        .unwrap();
    let server = ServeProcess::start(
        &db,
        "[ssh]\nmax_failures_per_address = 100000\nmax_failures_per_user = 100000\n\
         max_preauth_per_address = 1000\nmax_preauth_total = 1000\nrejection_delay_ms = 0\n",
    )
    .await;
    let pid = server.child.id();
    // Settle: one sign-in warms up what every later one reuses.
    let mut c = connect(server.addr).await;
    assert!(!c.password("alice", "warm-up guess").await);
    let before = proc_kib(pid, "VmRSS");
    let attempts: Vec<_> = (0..100)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut c = connect(addr).await;
                let user = if i % 2 == 0 { "alice" } else { "nobody" };
                let ok = c
                    .handle
                    .authenticate_password(user, format!("guess {i}"))
                    .await
                    .map(|r| r.success())
                    .unwrap_or(false);
                assert!(!ok);
            })
        })
        .collect();
    for a in attempts {
        a.await.unwrap();
    }
    // The guesses went through argon2 (none was turned away by a limit;
    // on a shared database short of connections a few may fail closed).
    let verified: i64 = sqlx::query_scalar("SELECT count(*) FROM signin_failures WHERE key = $1")
        .bind("addr:127.0.0.1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(
        verified >= 50,
        "only {verified} of 101 guesses were verified (a limit, or the database short of \
         connections)"
    );
    let peak = proc_kib(pid, "VmHWM");
    let after = proc_kib(pid, "VmRSS");
    eprintln!("kiln serve RSS: {before} kB before, peak {peak} kB, {after} kB after");
    // What the checks running at once need (about 19 MB each, at most one
    // per core and four in all), plus room for the connections themselves.
    let checks = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let bound = (checks as u64 * 20 + 50) * 1024;
    assert!(
        peak.saturating_sub(before) < bound,
        "peak RSS grew by {} kB (from {before} kB to {peak} kB)",
        peak - before
    );
    assert!(
        after.saturating_sub(before) < bound,
        "RSS kept {} kB more after the attempts",
        after - before
    );
}

#[tokio::test]
async fn open_signup_is_throttled_per_address() {
    let mut cfg = test_ssh_config();
    cfg.signup = Signup::Open;
    cfg.signup_limit.per_address = 2;
    let server = Server::start_with(cfg).await;
    for name in ["first", "second"] {
        let mut c = connect(server.addr).await;
        assert!(c.password(name, "a long enough password").await, "{name}");
    }
    let mut c = connect(server.addr).await;
    assert!(!c.password("third", "a long enough password").await);
    assert!(server.store.find_user("third").await.unwrap().is_none());
    // Existing accounts still sign in from the same address...
    assert!(c.password("first", "a long enough password").await);
    // ...and another address has sign-ups of its own.
    let mut c = connect_from("127.0.0.2", server.addr).await;
    assert!(c.password("third", "a long enough password").await);
    let signups: i64 = sqlx::query_scalar("SELECT count(*) FROM signups")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(signups, 3);
}

/// Two replicas on one database, many sign-ups at once from one address:
/// only the limit's worth of accounts are created.
#[tokio::test]
async fn concurrent_signups_from_one_address_across_replicas_stay_within_the_limit() {
    let mut cfg = test_ssh_config();
    cfg.signup = Signup::Open;
    cfg.signup_limit.per_address = 3;
    let server = Server::start_with(cfg.clone()).await;
    let other = server.another_ssh_server(cfg).await;
    let tries: Vec<_> = (0..12)
        .map(|i| {
            let addr = if i % 2 == 0 { server.addr } else { other };
            tokio::spawn(async move {
                let mut c = connect(addr).await;
                c.password(&format!("newbie{i}"), "a long enough password")
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tries {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 3);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(users, 3);
}

/// Started under umask 022 on a pre-existing 0755 data directory, `kiln
/// serve` leaves nothing of it readable or writable by others: the
/// directory itself, the host key (0600) and whatever it made inside.
#[tokio::test]
async fn kiln_serve_keeps_its_data_directory_and_host_key_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = crate::support::TestDb::new().await;
    let server = ServeProcess::start(&db, "").await;
    let mode =
        |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    let dir = mode(&server.data_dir);
    assert_eq!(dir & 0o700, 0o700, "{dir:o}");
    assert_eq!(dir & 0o066, 0, "the data dir is open to others: {dir:o}");
    assert_eq!(mode(&server.data_dir.join("ssh_host_ed25519_key")), 0o600);
    let mut open = Vec::new();
    let mut todo = vec![server.data_dir.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            // The test wrote kiln.toml (no secret in it); sockets are reached by name.
            if p.ends_with("kiln.toml") || m.file_type().is_symlink() {
                continue;
            }
            if m.is_dir() {
                todo.push(p.clone());
            }
            if !std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) && mode(&p) & 0o066 != 0 {
                open.push(format!("{} {:o}", p.display(), mode(&p)));
            }
        }
    }
    assert!(open.is_empty(), "open to others: {open:?}");
}

/// Every failed sign-in is a `kiln::audit` line with the method, the name
/// and the address, and never the password.
#[tokio::test]
async fn failed_sign_ins_are_audited_without_the_password() {
    let db = crate::support::TestDb::new().await;
    let log_path =
        std::env::temp_dir().join(format!("kiln-audit-{}.log", uuid::Uuid::new_v4().simple()));
    let log = std::fs::File::create(&log_path).unwrap();
    let server = ServeProcess::start_logging(&db, "", log).await;
    let mut c = connect(server.addr).await;
    assert!(!c.password("mallory", "hunter2-secret-guess").await);
    let mut c = connect(server.addr).await;
    let r = c
        .handle
        .authenticate_keyboard_interactive_start("eve", None::<String>)
        .await
        .unwrap();
    assert!(matches!(
        r,
        russh::client::KeyboardInteractiveAuthResponse::InfoRequest { .. }
    ));
    let r = c
        .handle
        .authenticate_keyboard_interactive_respond(vec!["another-secret-guess".into()])
        .await
        .unwrap();
    assert!(!matches!(
        r,
        russh::client::KeyboardInteractiveAuthResponse::Success
    ));
    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("kiln::audit") && l.contains("sign_in_failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{log}");
    assert!(
        failed[0].contains("mallory") && failed[0].contains("method=\"password\""),
        "{log}"
    );
    assert!(
        failed[1].contains("eve") && failed[1].contains("keyboard-interactive"),
        "{log}"
    );
    assert!(failed.iter().all(|l| l.contains("127.0.0.1")), "{log}");
    assert!(
        !log.contains("secret-guess"),
        "a password reached the log: {log}"
    );
}
