//! The idle stop policy end to end (issue 19, part 4): the reconcile loop's
//! sweep warns, the warning reaches an open dashboard over SSH, the key and
//! `extend` postpone the stop, and without them the project ends STOPPED by
//! an ordinary stop intent whose event names the idle policy. Typing in an
//! attached session and a working agent keep a project running.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kiln::model::idle::IdlePolicy;
use kiln::model::{Desired, ProjectStatus};
use kiln::store::events::Event;
use kiln::store::idle::IDLE_ACTOR;
use serde_json::Value;

use crate::support::eventually;
use crate::support::ssh::{Client, Server, connect, line_with, test_ssh_config};

const PW: &str = "pw-12345678";

fn with_policy(stop_after: Duration, warn_before: Duration) -> kiln::config::SshConfig {
    kiln::config::SshConfig {
        idle: IdlePolicy {
            stop_after,
            warn_before,
            sweep_every: Duration::from_millis(200),
            ..IdlePolicy::default()
        },
        ..test_ssh_config()
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn signed_in(server: &Server, user: &str) -> Client {
    let mut c = connect(server.addr).await;
    assert!(c.password(user, PW).await, "{user} signs in");
    c
}

async fn exec_json(c: &Client, command: &str) -> Value {
    let out = c.exec(command, b"").await;
    assert_eq!(out.code, Some(0), "{command}: {out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{command}: {e}: {out:?}"))
}

async fn events(server: &Server, owner: uuid::Uuid, name: &str) -> Vec<Event> {
    let p = server.store.find_project(owner, name).await.unwrap();
    server
        .store
        .list_events(owner, p.project.id, 200)
        .await
        .unwrap()
}

fn idle_stops(events: &[Event]) -> Vec<&Event> {
    events.iter().filter(|e| e.actor == IDLE_ACTOR).collect()
}

async fn status(server: &Server, owner: uuid::Uuid, name: &str) -> (ProjectStatus, Vec<Desired>) {
    let p = server.store.find_project(owner, name).await.unwrap();
    (
        p.project.status,
        p.resources.iter().map(|r| r.desired).collect(),
    )
}

/// Waits until `name` is STOPPED with every resource meant to be.
async fn until_stopped(server: &Server, owner: uuid::Uuid, name: &str, limit: Duration) {
    eventually(&format!("{name} STOPPED"), limit, || async {
        let (s, desired) = status(server, owner, name).await;
        (s == ProjectStatus::Stopped && desired.iter().all(|d| *d == Desired::Stopped))
            .then_some(())
    })
    .await;
}

fn rfc3339(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

async fn db_now(server: &Server) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(server.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn without_extend_an_idle_project_is_warned_on_the_dashboard_then_stopped_by_the_policy() {
    let server = Server::start_with(with_policy(secs(2), secs(6))).await;
    let alice = server.user("alice", PW).await;
    // Signed in first: the warning's few seconds are for reading it.
    let c = signed_in(&server, "alice").await;
    let screen = c.shell(100, 30).await;
    server.running_project(alice.id, "blog").await;

    // The warning reaches the open dashboard by itself, with the time left.
    screen
        .wait_until("the idle banner", |t| {
            t.contains("⚠ idle: blog stops in") && t.contains("E extends")
        })
        .await;
    // Nobody extends: the loop stops it, as an ordinary stop intent.
    screen
        .wait_until("blog STOPPED", |t| {
            line_with(t, "blog").is_some_and(|l| l.contains("STOPPED")) && !t.contains("⚠ idle")
        })
        .await;
    until_stopped(&server, alice.id, "blog", secs(20)).await;
    let all = events(&server, alice.id, "blog").await;
    let stops = idle_stops(&all);
    assert_eq!(stops.len(), 1, "one stop, by the idle policy: {all:#?}");
    assert!(
        stops[0]
            .message
            .starts_with("stop requested: stopped by the idle policy"),
        "{:?}",
        stops[0]
    );
    assert_eq!(stops[0].to_status.as_deref(), Some("STOPPING"));

    // Both notifications, newest first; reading them marks them read.
    let n = exec_json(&c, "notifications --json").await;
    let kinds: Vec<&str> = n
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["idle_stopped", "idle_warning"], "{n}");
    assert!(n.as_array().unwrap().iter().all(|x| x["project"] == "blog"));
    assert!(
        n[1]["message"].as_str().unwrap().contains("extend blog"),
        "the warning says how to postpone: {n}"
    );
}

#[tokio::test]
async fn the_warning_shows_on_the_list_and_detail_screens_and_its_key_postpones_the_stop() {
    // A long warning, so it stays up while the screens are read; an
    // extension long enough that no new warning follows at once.
    let mut config = with_policy(secs(2), secs(120));
    config.idle.extend_by = Some(secs(600));
    let server = Server::start_with(config).await;
    let alice = server.user("alice", PW).await;
    server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    let screen = c.shell(100, 30).await;
    screen
        .wait_until("the idle banner on the list", |t| {
            t.contains("⚠ idle: blog stops in") && line_with(t, "blog").is_some()
        })
        .await;
    screen.send(b"\r").await;
    screen
        .wait_until("the banner on the detail screen", |t| {
            t.contains(" Events") && t.contains("⚠ idle: blog stops in")
        })
        .await;
    let before = exec_json(&c, "idle blog --json").await;
    assert!(before["stop_at"].is_string(), "{before}");

    screen.send(b"E").await;
    screen
        .wait_until("the banner gone after E", |t| {
            t.contains(" Events") && !t.contains("⚠ idle") && t.contains("keeps running")
        })
        .await;
    let after = exec_json(&c, "idle blog --json").await;
    assert!(
        after["stop_at"].is_null(),
        "the warning is withdrawn: {after}"
    );
    let extended = rfc3339(&after["extended_until"]);
    assert!(
        extended > rfc3339(&before["stop_at"]),
        "the stop moved past the one announced: {before} {after}"
    );
    // The extension is recorded with who asked for it.
    let all = events(&server, alice.id, "blog").await;
    assert!(
        all.iter()
            .any(|e| e.actor == "alice" && e.message.starts_with("idle stop postponed until")),
        "{all:#?}"
    );
    assert_eq!(
        status(&server, alice.id, "blog").await.0,
        ProjectStatus::Running
    );
}

#[tokio::test]
async fn extend_over_exec_postpones_the_stop_past_the_warning() {
    // The warning stays up long enough to be read back and answered.
    let server = Server::start_with(with_policy(secs(2), secs(8))).await;
    let alice = server.user("alice", PW).await;
    let c = signed_in(&server, "alice").await;
    server.running_project(alice.id, "blog").await;
    let warned = eventually("the warning", secs(20), || async {
        let s = exec_json(&c, "idle blog --json").await;
        s["stop_at"].is_string().then_some(s)
    })
    .await;

    // Bad input is refused and changes nothing.
    let bad = c.exec("extend blog --for soon", b"").await;
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(bad.stderr.contains("invalid --for soon"), "{bad:?}");
    let long = c.exec("extend blog --for 30d", b"").await;
    assert_eq!(long.code, Some(1), "{long:?}");
    assert!(long.stderr.contains("at most 7d"), "{long:?}");
    let unchanged = exec_json(&c, "idle blog --json").await;
    assert_eq!(unchanged["stop_at"], warned["stop_at"], "{unchanged}");
    assert!(unchanged["extended_until"].is_null(), "{unchanged}");

    let ext = exec_json(&c, "extend blog --for 12s --json").await;
    let until = rfc3339(&ext["until"]);
    assert!(until > rfc3339(&warned["stop_at"]), "{ext} {warned}");
    let now = exec_json(&c, "idle blog --json").await;
    assert!(now["stop_at"].is_null(), "withdrawn: {now}");

    // The stop comes, but not before the extension ends (times are the
    // database's own, so no clock is compared with another).
    until_stopped(&server, alice.id, "blog", secs(40)).await;
    let all = events(&server, alice.id, "blog").await;
    let stops = idle_stops(&all);
    assert_eq!(stops.len(), 1, "{all:#?}");
    assert!(
        stops[0].created_at >= until,
        "stopped at {} though extended until {until}",
        stops[0].created_at
    );
}

#[tokio::test]
async fn a_projects_own_idle_time_is_set_within_the_servers_maximum() {
    let server = Server::start_with(with_policy(secs(3600), secs(60))).await;
    let alice = server.user("alice", PW).await;
    server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    let s = exec_json(&c, "idle blog --json").await;
    assert_eq!(s["setting"], "default");
    assert_eq!(s["stop_after_secs"], 3600);
    let too_long = c.exec("idle blog --after 8d", b"").await;
    assert_eq!(too_long.code, Some(1), "{too_long:?}");
    assert!(too_long.stderr.contains("at most 7d"), "{too_long:?}");
    let garbage = c.exec("idle blog --after whenever", b"").await;
    assert_eq!(garbage.code, Some(2), "{garbage:?}");
    assert_eq!(
        exec_json(&c, "idle blog --json").await["setting"],
        "default"
    );

    let s = exec_json(&c, "idle blog --after off --json").await;
    assert_eq!(s["setting"], "off");
    assert!(s["stop_after_secs"].is_null(), "{s}");
    let text = c.exec("idle blog", b"").await.stdout;
    assert!(text.contains("never stopped for being idle"), "{text}");

    // A short own time: the sweep warns on it (the server's default would not).
    let s = exec_json(&c, "idle blog --after 2s --json").await;
    assert_eq!(s["stop_after_secs"], 2);
    eventually(
        "the warning on the project's own time",
        secs(20),
        || async {
            exec_json(&c, "idle blog --json").await["stop_at"]
                .is_string()
                .then_some(())
        },
    )
    .await;
    // The operator's CLI reaches the same console function.
    let bob = server.user("bob", PW).await;
    server.running_project(bob.id, "api").await;
    let data_dir = std::env::temp_dir().join(format!(
        "ki-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["project", "idle", "api", "--user", "bob", "--after", "45m"])
        .env("DATABASE_URL", &server.db.url)
        .env("KILN_SECRET_KEY", crate::support::ssh::TEST_SECRET_KEY)
        .env("KILN_LOG", "warn")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert!(out.status.success(), "{out:?}");
    let bc = signed_in(&server, "bob").await;
    assert_eq!(
        exec_json(&bc, "idle api --json").await["stop_after_secs"],
        2700
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_in_an_attached_session_keeps_it_running() {
    // Activity is written every few seconds: the idle time leaves room for that.
    let server = Server::start_local_with(with_policy(secs(10), secs(2))).await;
    let alice = server.user("alice", PW).await;
    let c = signed_in(&server, "alice").await;
    server.running_project(alice.id, "shell").await;
    let screen = c.exec_tty("attach shell", 100, 30).await;
    screen.send(b"echo ready\r").await;
    screen
        .wait_until("the shell", |t| t.matches("ready").count() >= 2)
        .await;

    // Type for well past the idle time and the warning.
    let typing_until = db_now(&server).await + chrono::Duration::seconds(16);
    while db_now(&server).await < typing_until {
        screen.send(b"x").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (s, _) = status(&server, alice.id, "shell").await;
    assert_eq!(s, ProjectStatus::Running);
    let all = events(&server, alice.id, "shell").await;
    assert!(idle_stops(&all).is_empty(), "{all:#?}");
    let state = exec_json(&c, "idle shell --json").await;
    assert!(
        state["stop_at"].is_null(),
        "no warning while typing: {state}"
    );

    // Hands off the keyboard: now it is idle, and the policy stops it.
    screen.send(b"\x1d").await;
    until_stopped(&server, alice.id, "shell", secs(60)).await;
    let all = events(&server, alice.id, "shell").await;
    assert_eq!(idle_stops(&all).len(), 1, "{all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_agent_keeps_it_running() {
    let server = Server::start_agents_with(with_policy(secs(6), secs(2))).await;
    let alice = server.user("alice", PW).await;
    let c = signed_in(&server, "alice").await;
    let resource = server.running_project(alice.id, "blog").await;
    let until_state = |state: &'static str| {
        let c = &c;
        async move {
            eventually(&format!("blog {state}"), secs(15), || async {
                exec_json(c, "agents --json")
                    .await
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["project"] == "blog" && a["state"] == state)
                    .cloned()
            })
            .await
        }
    };
    until_state("idle").await;
    crate::agents::tell(&server, &resource, "prompt fix the tests");
    until_state("working").await;

    // Past the idle time and the warning, the working agent holds it.
    let until = db_now(&server).await + chrono::Duration::seconds(12);
    while db_now(&server).await < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        status(&server, alice.id, "blog").await.0,
        ProjectStatus::Running
    );
    let state = exec_json(&c, "idle blog --json").await;
    assert!(
        state["stop_at"].is_null(),
        "never warned while working: {state}"
    );
    assert!(idle_stops(&events(&server, alice.id, "blog").await).is_empty());

    // Claude finishes: from then on the sandbox is idle, and stopped.
    crate::agents::tell(&server, &resource, "stop");
    until_state("done").await;
    until_stopped(&server, alice.id, "blog", secs(40)).await;
    assert_eq!(
        idle_stops(&events(&server, alice.id, "blog").await).len(),
        1
    );
}

/// A server whose own loop never sweeps (its policy is off), so only the
/// test's replicas sweep, when told: a sweep of its own (it sweeps once at
/// its start) could take a warning from them.
async fn server_that_never_sweeps() -> Server {
    Server::start_with(kiln::config::SshConfig {
        idle: IdlePolicy {
            stop_after: Duration::ZERO,
            ..IdlePolicy::default()
        },
        ..test_ssh_config()
    })
    .await
}

/// A replica of the server's reconcile loop with `policy`, for sweeps.
fn sweeping_replica(
    server: &Server,
    policy: &IdlePolicy,
    name: &str,
) -> kiln::reconcile::Reconciler {
    kiln::reconcile::Reconciler::new(
        server.store.clone(),
        server.fake.clone(),
        server.fake.clone(),
        kiln::reconcile::ReconcileConfig {
            idle: policy.clone(),
            ..Default::default()
        },
        name,
    )
}

/// A sweep that finds several projects near their stop warns them all in
/// one write (one query to find, one to warn), each owner told about each
/// of their own projects by name, once; the next sweep writes nothing.
#[tokio::test]
async fn one_sweep_warns_many_projects_in_one_write_each_owner_told_once_per_project() {
    let policy = IdlePolicy {
        stop_after: secs(10),
        warn_before: secs(1),
        sweep_every: secs(3600),
        ..IdlePolicy::default()
    };
    let server = server_that_never_sweeps().await;
    let alice = server.user("alice", PW).await;
    let bob = server.user("bob", PW).await;
    let projects = [
        (alice.id, "blog"),
        (alice.id, "shop"),
        (bob.id, "notes"),
        (bob.id, "api"),
    ];
    for (owner, name) in projects {
        let resource = server.running_project(owner, name).await;
        sqlx::query(
            "UPDATE sandboxes SET last_active_at = now() - interval '1 hour' WHERE resource_name = $1",
        )
        .bind(&resource)
        .execute(server.store.pool())
        .await
        .unwrap();
    }
    let sweeper = sweeping_replica(&server, &policy, "sweeper");
    let s = sweeper.idle_sweep(Utc::now()).await.unwrap();
    assert_eq!((s.candidates, s.warned, s.queries), (4, 4, 2), "{s:?}");
    for (owner, name) in projects {
        let told: Vec<String> = sqlx::query_scalar(
            "SELECT n.message FROM notifications n JOIN projects p ON p.id = n.project_id
              WHERE n.user_id = $1 AND p.name = $2 AND n.kind = 'idle_warning'",
        )
        .bind(owner)
        .bind(name)
        .fetch_all(server.store.pool())
        .await
        .unwrap();
        assert_eq!(told.len(), 1, "{name}: {told:?}");
        assert!(told[0].contains(name), "{name}: {told:?}");
    }
    let again = sweeper.idle_sweep(Utc::now()).await.unwrap();
    assert_eq!((again.warned, again.queries), (0, 1), "{again:?}");
}

#[tokio::test]
async fn two_sweeps_at_once_warn_once_and_stop_once() {
    // Only the test's two replicas sweep, when told, at the same moment.
    // The server's own loop has the policy off: a sweep of its own (it
    // sweeps once at its start) could come after `last_active_at` is moved
    // back below and take the warning from both.
    let policy = IdlePolicy {
        stop_after: secs(10),
        warn_before: secs(1),
        sweep_every: secs(3600),
        ..IdlePolicy::default()
    };
    let server = server_that_never_sweeps().await;
    let alice = server.user("alice", PW).await;
    let resource = server.running_project(alice.id, "blog").await;
    sqlx::query(
        "UPDATE sandboxes SET last_active_at = now() - interval '1 hour' WHERE resource_name = $1",
    )
    .bind(&resource)
    .execute(server.store.pool())
    .await
    .unwrap();
    let (r1, r2) = (
        sweeping_replica(&server, &policy, "r1"),
        sweeping_replica(&server, &policy, "r2"),
    );
    let (a, b) = tokio::join!(r1.idle_sweep(Utc::now()), r2.idle_sweep(Utc::now()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.warned + b.warned, 1, "{a:?} {b:?}");
    // Each replica's one query finds it. Which of the two warns is a race:
    // the loser either tried to warn too (a fenced write that changed
    // nothing, one more query) or already saw the warning and left it.
    for s in [&a, &b] {
        assert_eq!(s.candidates, 1, "one query finds it: {a:?} {b:?}");
        assert!((1..=2).contains(&s.queries), "{a:?} {b:?}");
    }

    // Once the warning's time is up, both try to stop it.
    let stop_at: DateTime<Utc> =
        sqlx::query_scalar("SELECT idle_stop_at FROM sandboxes WHERE resource_name = $1")
            .bind(&resource)
            .fetch_one(server.store.pool())
            .await
            .unwrap();
    while db_now(&server).await < stop_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (a, b) = tokio::join!(r1.idle_sweep(Utc::now()), r2.idle_sweep(Utc::now()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.stopped + b.stopped, 1, "{a:?} {b:?}");
    let all = events(&server, alice.id, "blog").await;
    assert_eq!(idle_stops(&all).len(), 1, "{all:#?}");
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM notifications WHERE user_id = $1 ORDER BY created_at")
            .bind(alice.id)
            .fetch_all(server.store.pool())
            .await
            .unwrap();
    assert_eq!(kinds, ["idle_warning", "idle_stopped"]);
    until_stopped(&server, alice.id, "blog", secs(20)).await;

    // Nothing running: the next sweep's one query finds nothing.
    let (a, _) = tokio::join!(r1.idle_sweep(Utc::now()), async {});
    assert_eq!(a.unwrap().candidates, 0);
}
