//! One action, three front ends: the dashboard (keys typed over SSH, the
//! screen read back), the exec commands (over SSH) and the operator CLI (a
//! real `kiln` process) all reach the same console action, so the same
//! action leaves the same state behind and fails with the same words.

use std::process::Command;
use std::time::Duration;

use crate::support::ssh::{Server, TEST_SECRET_KEY, connect, line_with};
use kiln::model::{Desired, ProjectStatus};
use kiln::store::projects::ProjectView;

const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Dashboard,
    Exec,
    Cli,
}

const FRONTS: [Front; 3] = [Front::Dashboard, Front::Exec, Front::Cli];

/// What the project must be in after the action (checked in the store).
#[derive(Debug, Clone, Copy)]
enum After {
    Desired(Desired),
    Gone,
}

struct Case {
    /// The action as the exec command and the CLI name it.
    verb: &'static str,
    /// The project's status before the action: created and left RUNNING,
    /// or stopped first.
    before: Option<ProjectStatus>,
    /// The dashboard's keys once the project is selected.
    keys: &'static [u8],
    after: After,
}

const CASES: &[Case] = &[
    Case {
        verb: "create",
        before: None,
        keys: b"",
        after: After::Desired(Desired::Running),
    },
    Case {
        verb: "stop",
        before: Some(ProjectStatus::Running),
        keys: b"x",
        after: After::Desired(Desired::Stopped),
    },
    Case {
        verb: "start",
        before: Some(ProjectStatus::Stopped),
        keys: b"s",
        after: After::Desired(Desired::Running),
    },
    Case {
        verb: "delete",
        before: Some(ProjectStatus::Running),
        keys: b"dy",
        after: After::Gone,
    },
];

/// `kiln ARGS` against the server's database: (exit code, stdout, stderr).
pub(crate) fn cli(server: &Server, args: &[&str]) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!(
        "kf-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--data-dir")
        .arg(&dir)
        .args(args)
        .env("DATABASE_URL", &server.db.url)
        .env("KILN_SECRET_KEY", TEST_SECRET_KEY)
        .output()
        .expect("run kiln");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `verb NAME` through `front`; returns the one line it answered with
/// (the dashboard's status line, exec's or the CLI's output).
async fn perform(server: &Server, front: Front, verb: &str, name: &str, keys: &[u8]) -> String {
    match front {
        Front::Exec => {
            let mut c = connect(server.addr).await;
            assert!(c.password("alice", PASSWORD).await);
            let extra = if verb == "delete" { " --yes" } else { "" };
            let r = c.exec(&format!("{verb} {name}{extra}"), b"").await;
            format!("{}{}", r.stdout, r.stderr)
        }
        Front::Cli => {
            let (_, out, err) = tokio::task::block_in_place(|| {
                cli(server, &["project", verb, name, "--user", "alice"])
            });
            format!("{out}{err}")
        }
        Front::Dashboard => {
            let mut c = connect(server.addr).await;
            assert!(c.password("alice", PASSWORD).await);
            let screen = c.shell(120, 30).await;
            screen.wait_for("Projects (").await;
            if verb == "create" {
                screen.send(b"n").await;
                screen.wait_for("Name").await;
                screen.send(name.as_bytes()).await;
                screen.send(b"\r").await;
            } else {
                // Filter the list down to the project, then act on it.
                screen.wait_for(name).await;
                screen.send(b"/").await;
                screen.send(name.as_bytes()).await;
                screen.send(b"\r").await;
                screen.send(keys).await;
            }
            let text = screen
                .wait_until("the action's outcome", |t| {
                    t.contains("requested for") || t.contains("(slug ") || t.contains("cannot")
                })
                .await;
            let line = text
                .lines()
                .find(|l| {
                    l.contains("requested for") || l.contains("(slug ") || l.contains("cannot")
                })
                .unwrap_or_default()
                .trim()
                .to_string();
            screen.send(b"q").await;
            line
        }
    }
}

async fn project(server: &Server, owner: uuid::Uuid, name: &str) -> Option<ProjectView> {
    server.store.find_project(owner, name).await.ok()
}

/// Waits until the project's status is `status`.
async fn settle(server: &Server, owner: uuid::Uuid, name: &str, status: ProjectStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let p = project(server, owner, name).await;
        if p.as_ref().is_some_and(|p| p.project.status == status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never became {status}: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_leaves_the_same_state_from_each_front_end() {
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    for case in CASES {
        for front in FRONTS {
            let name = format!("{}-{:?}", case.verb, front).to_lowercase();
            if let Some(before) = case.before {
                server.running_project(alice.id, &name).await;
                if before == ProjectStatus::Stopped {
                    server
                        .store
                        .record_intent(alice.id, &name, kiln::model::intent::Intent::Stop, "test")
                        .await
                        .unwrap();
                    settle(&server, alice.id, &name, ProjectStatus::Stopped).await;
                }
            }
            let existing = project(&server, alice.id, &name).await;
            let before = existing.as_ref().map(|p| p.project.id);
            // A delete is held in flight (TERMINATING), so its events are
            // still there to read; the resources go once it is released.
            let held: Vec<String> = match case.after {
                After::Gone => existing
                    .iter()
                    .flat_map(|p| p.resources.iter().map(|r| r.resource_name.clone()))
                    .collect(),
                After::Desired(_) => Vec::new(),
            };
            for r in &held {
                server.fake.hang(r);
            }
            let said = perform(&server, front, case.verb, &name, case.keys).await;
            // The dashboard answers at once and records the intent as a
            // task: wait for the store to say so.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let p = project(&server, alice.id, &name).await;
                let done = match case.after {
                    After::Desired(d) => p
                        .as_ref()
                        .is_some_and(|p| p.resources.iter().all(|r| r.desired == d)),
                    After::Gone => p.as_ref().is_none_or(|p| {
                        p.resources.iter().all(|r| r.desired == Desired::Terminated)
                    }),
                };
                if done {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{front:?} {}: {p:?} ({said})",
                    case.verb
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Who asked is recorded the same way: the user, or the operator.
            let Some(id) = before.or(project(&server, alice.id, &name)
                .await
                .map(|p| p.project.id))
            else {
                panic!("{front:?} {}: no project", case.verb)
            };
            let events = server.store.list_events(alice.id, id, 100).await.unwrap();
            let want = if front == Front::Cli {
                "operator"
            } else {
                "alice"
            };
            assert!(
                events.iter().any(|e| e.actor == want),
                "{front:?} {}: no event by {want}: {events:?}",
                case.verb
            );
            for r in &held {
                server.fake.release(r);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_action_says_the_same_thing_from_each_front_end() {
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    server.running_project(alice.id, "busy").await;
    // Starting a running project is refused by the intents table.
    let refusal =
        kiln::model::intent::check(kiln::model::intent::Intent::Start, ProjectStatus::Running)
            .unwrap_err()
            .to_string();
    for front in [Front::Exec, Front::Cli] {
        let said = perform(&server, front, "start", "busy", b"").await;
        assert!(
            said.contains(&refusal),
            "{front:?} said {said:?}, not {refusal:?}"
        );
    }
    // The dashboard greys the key and says why when it is pressed, from the
    // same table.
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", PASSWORD).await);
    let screen = c.shell(120, 30).await;
    screen
        .wait_until("busy runs", |t| {
            line_with(t, "busy").is_some_and(|l| l.contains("RUNNING"))
        })
        .await;
    screen.send(b"s").await;
    screen.wait_for(&refusal).await;
    // A project that does not exist: the same words everywhere.
    let mut missing = Vec::new();
    for front in [Front::Exec, Front::Cli] {
        missing.push(perform(&server, front, "stop", "nosuch", b"").await);
    }
    let exec_line = missing[0].trim().trim_start_matches("error: ").to_string();
    assert!(!exec_line.is_empty());
    assert!(
        missing[1].contains(&exec_line),
        "cli said {:?}, exec {:?}",
        missing[1],
        exec_line
    );
}

/// A quota is enforced in the console, so every front end refuses a create
/// past it with the same words, naming the limit and the usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_past_the_quota_is_refused_alike_from_each_front_end() {
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    server
        .store
        .set_quota(
            alice.id,
            kiln::model::quota::Limits {
                projects: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let refusal = "you have 0 of 0 projects: delete one or ask an admin";
    for front in [Front::Exec, Front::Cli] {
        let said = perform(&server, front, "create", "over", b"").await;
        assert!(said.contains(refusal), "{front:?} said {said:?}");
    }
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", PASSWORD).await);
    let screen = c.shell(120, 30).await;
    screen.wait_for("Projects (").await;
    screen.send(b"n").await;
    screen.wait_for("Name").await;
    screen.send(b"over\r").await;
    screen.wait_for(refusal).await;
    assert!(
        server
            .store
            .list_projects(alice.id)
            .await
            .unwrap()
            .is_empty()
    );
}
