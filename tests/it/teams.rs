//! Teams over real SSH: the role matrix (every exec action × owner, member,
//! viewer, non-member, admin), isolation (a non-member learns nothing of a
//! team's projects), a member removed while attached is detached, team
//! projects on a member's dashboard.

use std::time::{Duration, Instant};

use crate::console_fronts::cli;
use crate::support::eventually;
use crate::support::ssh::{Client, Server, connect};

pub(crate) const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The action ran (or failed for a reason other than the actor's right).
    Allowed,
    /// Refused for the role, saying which role it needs.
    NeedsRole,
    /// Answered exactly as for a project or team that does not exist.
    Missing,
}

pub(crate) async fn signed_in(server: &Server, user: &str) -> Client {
    let mut c = connect(server.addr).await;
    assert!(c.password(user, PASSWORD).await, "{user} signs in");
    c
}

async fn run(c: &Client, line: &str) -> (Outcome, String) {
    let r = c.exec(line, b"").await;
    let outcome = if r.code == Some(0) {
        Outcome::Allowed
    } else if r.stderr.contains("needs the") && r.stderr.contains("role") {
        Outcome::NeedsRole
    } else if r.stderr.contains("no such project") || r.stderr.contains("no such team") {
        Outcome::Missing
    } else {
        Outcome::Allowed
    };
    (outcome, format!("{}{}", r.stdout, r.stderr))
}

/// alice (owner), mo (member), vi (viewer), nat (no member), ada (admin);
/// team acme with a running project acme/blog created by mo.
pub(crate) async fn acme(server: &Server) {
    for u in ["alice", "mo", "vi", "nat", "zed"] {
        server.user(u, PASSWORD).await;
    }
    server
        .store
        .create_user("ada", Some(PASSWORD), true)
        .await
        .unwrap();
    let op = |args: &[&str]| {
        let (code, out, err) = tokio::task::block_in_place(|| cli(server, args));
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    };
    op(&["team", "create", "acme"]);
    op(&["team", "add", "acme", "alice", "--role", "owner"]);
    op(&["team", "add", "acme", "mo"]);
    op(&["team", "add", "acme", "vi", "--role", "viewer"]);
    let mo = signed_in(server, "mo").await;
    let r = mo.exec("create blog --team acme", b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("acme/blog"), "{}", r.stdout);
    let team = server.store.require_team("acme").await.unwrap();
    eventually("acme/blog running", Duration::from_secs(20), || async {
        let p = server.store.find_project(team, "blog").await.ok()?;
        (p.project.status == kiln::model::ProjectStatus::Running).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_matrix_over_ssh_exec() {
    use Outcome::*;
    let server = Server::start_local().await;
    acme(&server).await;
    // (command, owner, member, viewer, non-member, admin), run in order by
    // each user in turn; state-changing rows are arranged to be repeatable.
    let rows: &[(&str, [Outcome; 5])] = &[
        (
            "project acme/blog",
            [Allowed, Allowed, Allowed, Missing, Allowed],
        ),
        (
            "events acme/blog",
            [Allowed, Allowed, Allowed, Missing, Allowed],
        ),
        (
            "sessions acme/blog",
            [Allowed, Allowed, Allowed, Missing, Allowed],
        ),
        (
            "team acme members",
            [Allowed, Allowed, Allowed, Missing, Allowed],
        ),
        (
            "env acme/blog",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "env acme/blog set K=V",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "env acme/blog unset K",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "stop acme/blog",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "start acme/blog",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "restart acme/blog",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "create extra --team acme",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "delete acme/extra --yes",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "wait acme/blog --until done --timeout 1ms",
            [Allowed, Allowed, Allowed, Missing, Allowed],
        ),
        (
            "mute acme/blog",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "mute acme/blog --off",
            [Allowed, Allowed, NeedsRole, Missing, Allowed],
        ),
        (
            "team acme add zed --role viewer",
            [Allowed, NeedsRole, NeedsRole, Missing, Allowed],
        ),
        (
            "team acme remove zed",
            [Allowed, NeedsRole, NeedsRole, Missing, Allowed],
        ),
    ];
    let users = ["alice", "mo", "vi", "nat", "ada"];
    let mut clients = Vec::new();
    for u in users {
        clients.push(signed_in(&server, u).await);
    }
    let mut failures = Vec::new();
    for (line, expected) in rows {
        for (i, user) in users.iter().enumerate() {
            // `delete` of `extra` needs an `extra` to exist: whoever may
            // create makes it first (the create row), so re-create here.
            if line.starts_with("delete") && expected[i] == Allowed {
                let _ = clients[1].exec("create extra --team acme", b"").await;
            }
            if line.starts_with("team acme remove") && expected[i] == Allowed {
                let _ = clients[0]
                    .exec("team acme add zed --role viewer", b"")
                    .await;
            }
            let (got, text) = run(&clients[i], line).await;
            if got != expected[i] {
                failures.push(format!(
                    "{line} as {user}: {got:?}, expected {:?}: {text}",
                    expected[i]
                ));
            }
            if line.starts_with("create") && got == Allowed {
                let _ = clients[1].exec("delete acme/extra --yes", b"").await;
                // Deleting takes a moment; the name is free once it is gone.
                let team = server.store.require_team("acme").await.unwrap();
                eventually("acme/extra gone", Duration::from_secs(20), || async {
                    server
                        .store
                        .find_project(team, "extra")
                        .await
                        .is_err()
                        .then_some(())
                })
                .await;
            }
            if line.starts_with("delete") && got == Allowed {
                let team = server.store.require_team("acme").await.unwrap();
                eventually("acme/extra gone", Duration::from_secs(20), || async {
                    server
                        .store
                        .find_project(team, "extra")
                        .await
                        .is_err()
                        .then_some(())
                })
                .await;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A non-member is answered exactly as about a project that is missing.
    let (_, theirs) = run(&clients[3], "stop acme/blog").await;
    let (_, missing) = run(&clients[1], "stop acme/nothing-here").await;
    assert_eq!(
        theirs.replace("acme/blog", "X"),
        missing.replace("acme/nothing-here", "X")
    );
    let (_, no_team) = run(&clients[3], "team acme members").await;
    let (_, really_none) = run(&clients[3], "team nope members").await;
    assert_eq!(
        no_team.replace("acme", "X"),
        really_none.replace("nope", "X")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_learns_nothing_of_a_teams_projects() {
    let server = Server::start_local().await;
    acme(&server).await;
    let nat = signed_in(&server, "nat").await;
    let r = nat.exec("projects --json", b"").await;
    assert_eq!(r.stdout.trim(), "[]", "{}", r.stderr);
    let r = nat.exec("audit --json", b"").await;
    assert!(
        !r.stdout.contains("blog") && !r.stdout.contains("acme"),
        "{}",
        r.stdout
    );
    for line in [
        "project acme/blog",
        "events acme/blog",
        "sessions acme/blog",
        "env acme/blog",
    ] {
        let r = nat.exec(line, b"").await;
        assert_ne!(r.code, Some(0), "{line}");
        assert!(
            r.stderr.contains("no such project: acme/blog"),
            "{line}: {}",
            r.stderr
        );
    }
    let attach = nat.exec_tty("attach acme/blog --read-only", 80, 24).await;
    assert_eq!(attach.wait_closed().await, Some(1));
    assert!(
        attach
            .state
            .lock()
            .unwrap()
            .stderr
            .contains("no such project: acme/blog"),
        "{}",
        attach.state.lock().unwrap().stderr
    );
    // Members see it, under the team's name; the viewer sees no variables.
    let vi = signed_in(&server, "vi").await;
    let r = vi.exec("projects", b"").await;
    assert!(r.stdout.contains("acme/blog"), "{}", r.stdout);
    let mo = signed_in(&server, "mo").await;
    assert_eq!(
        mo.exec("env acme/blog set SHOWN=1", b"").await.code,
        Some(0)
    );
    let r = vi.exec("project acme/blog --json", b"").await;
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["env"], serde_json::json!([]), "{v}");
    // On a member's dashboard, the team's project is listed and live.
    let screen = mo.shell(120, 30).await;
    screen.wait_for("acme/blog").await;
    assert_eq!(mo.exec("stop acme/blog", b"").await.code, Some(0));
    screen
        .wait_until("acme/blog stopping on the dashboard", |t| {
            t.lines()
                .any(|l| l.contains("acme/blog") && (l.contains("STOPP")))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_while_attached_is_detached_with_a_message() {
    let server = Server::start_local().await;
    acme(&server).await;
    let mo = signed_in(&server, "mo").await;
    let attach = mo.exec_tty("attach acme/blog", 100, 30).await;
    let marker = "typed-by-mo";
    attach.send(format!("echo {marker}\r").as_bytes()).await;
    attach
        .wait_until("the echo", |t| t.matches(marker).count() >= 2)
        .await;
    // A viewer may not type: a read-write attach is refused, a read-only one opens.
    let vi = signed_in(&server, "vi").await;
    let rw = vi.exec_tty("attach acme/blog", 80, 24).await;
    assert_eq!(rw.wait_closed().await, Some(1));
    assert!(
        rw.state
            .lock()
            .unwrap()
            .stderr
            .contains("needs the member role")
    );

    let alice = signed_in(&server, "alice").await;
    let removed_at = Instant::now();
    let r = alice.exec("team acme remove mo", b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    attach.wait_closed().await;
    println!("detached {:?} after the removal", removed_at.elapsed());
    assert!(
        attach
            .text()
            .contains("you no longer have access to team acme"),
        "{}",
        attach.text()
    );
    let r = mo.exec("project acme/blog", b"").await;
    assert!(
        r.stderr.contains("no such project: acme/blog"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_dashboard_greys_stop_with_the_reason_and_attaches_read_only() {
    let server = Server::start_local().await;
    acme(&server).await;
    let vi = signed_in(&server, "vi").await;
    let screen = vi.shell(120, 30).await;
    screen.wait_for("acme/blog").await;
    screen.send(b"/acme/blog\r").await;
    screen.send(b"x").await;
    screen
        .wait_for("you are a viewer of this team: stop needs the member role")
        .await;
    let team = server.store.require_team("acme").await.unwrap();
    let p = server.store.find_project(team, "blog").await.unwrap();
    assert_eq!(p.project.status, kiln::model::ProjectStatus::Running);
    // `a` opens the pane read-only: what the viewer types reaches nothing.
    screen.send(b"a").await;
    screen.wait_for("read-only: your keys are not sent").await;
}
