//! Teams on the dashboard, read off the screen over real SSH: the create
//! dialog's owner field (and the operator CLI's `--team`), the dashboard's
//! side of the role matrix, and a member removed while their pane is open.

use std::time::Duration;

use crate::console_fronts::cli;
use crate::support::eventually;
use crate::support::ssh::Server;
use crate::teams::{acme, signed_in};

const RIGHT: &[u8] = b"\x1b[C";

fn op(server: &Server, args: &[&str]) -> String {
    let (code, out, err) = tokio::task::block_in_place(|| cli(server, args));
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    out
}

async fn team_project_exists(server: &Server, team: &str, name: &str) {
    let id = server.store.require_team(team).await.unwrap();
    eventually(
        &format!("{team}/{name} recorded"),
        Duration::from_secs(10),
        || async { server.store.find_project(id, name).await.ok().map(|_| ()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_create_dialog_offers_the_teams_a_user_may_create_in() {
    let server = Server::start_local().await;
    acme(&server).await;
    // vi is a viewer of acme (no create there) and a member of zeta.
    op(&server, &["team", "create", "zeta"]);
    op(&server, &["team", "add", "zeta", "vi", "--role", "member"]);

    let mo = signed_in(&server, "mo").await;
    let screen = mo.shell(120, 30).await;
    screen.wait_for("acme/blog").await;
    screen.send(b"n").await;
    screen.wait_for("New project").await;
    // The owner field appears once the teams are loaded; it starts at me.
    screen.wait_for("your own project").await;
    screen.send(b"site\t\t").await;
    screen.wait_for("◂ me ▸").await;
    screen.send(RIGHT).await;
    screen.wait_for("◂ acme ▸").await;
    screen.wait_for("named acme/site").await;
    // Letters typed on the owner field are refused, not lost in a field.
    screen.send(b"q").await;
    screen.wait_for("← and → choose the owner").await;
    screen.send(b"\r").await;
    team_project_exists(&server, "acme", "site").await;
    screen
        .wait_until("acme/site listed", |t| {
            t.lines().any(|l| l.contains("acme/site"))
        })
        .await;
    // Not mo's own: mo's own list has no `site`.
    assert!(
        server
            .store
            .find_project(server.store.require_user("mo").await.unwrap().id, "site")
            .await
            .is_err()
    );

    // A viewer is offered only the teams where they may create.
    let vi = signed_in(&server, "vi").await;
    let screen = vi.shell(120, 30).await;
    screen.wait_for("acme/blog").await;
    screen.send(b"n").await;
    screen.wait_for("your own project").await;
    screen.send(b"notes\t\t").await;
    screen.wait_for("◂ me ▸").await;
    screen.send(RIGHT).await;
    screen.wait_for("◂ zeta ▸").await;
    screen.send(RIGHT).await;
    screen.wait_for("◂ me ▸").await;
    assert!(!screen.text().contains("◂ acme ▸"));
    screen.send(RIGHT).await;
    screen.wait_for("◂ zeta ▸").await;
    screen.send(b"\r").await;
    team_project_exists(&server, "zeta", "notes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_cli_creates_in_a_team_through_the_same_console_call() {
    let server = Server::start_local().await;
    acme(&server).await;
    let out = op(
        &server,
        &[
            "project", "create", "docs", "--user", "mo", "--team", "acme",
        ],
    );
    assert!(out.contains("acme/docs"), "{out}");
    team_project_exists(&server, "acme", "docs").await;
    // The same refusal as exec's for a team that does not exist.
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli(
            &server,
            &[
                "project", "create", "docs", "--user", "mo", "--team", "nope",
            ],
        )
    });
    assert_ne!(code, 0);
    assert!(err.contains("no such team: nope"), "{err}");
    let mo = signed_in(&server, "mo").await;
    let r = mo.exec("create docs2 --team nope", b"").await;
    assert!(r.stderr.contains("no such team: nope"), "{}", r.stderr);
}

/// Waits until the team's project `blog` is where `want` says (status).
async fn blog_is(server: &Server, want: kiln::model::ProjectStatus) {
    let team = server.store.require_team("acme").await.unwrap();
    eventually(
        &format!("acme/blog {want}"),
        Duration::from_secs(30),
        || async {
            let p = server.store.find_project(team, "blog").await.ok()?;
            (p.project.status == want).then_some(())
        },
    )
    .await;
}

/// The dashboard's side of the role matrix: stop, start, delete, env,
/// attach and read-only attach, pressed by an owner, a member, a viewer
/// and a non-member, each answer read off their screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_matrix_on_the_dashboard() {
    use kiln::model::ProjectStatus::{Running, Stopped};
    let server = Server::start_local().await;
    acme(&server).await;
    let team = server.store.require_team("acme").await.unwrap();
    // Keys a viewer is refused, with the reason the console gives.
    let refused = [
        (b"x", "stop needs the member role"),
        (b"s", "start needs the member role"),
        (b"d", "delete needs the member role"),
        (b"e", "env needs the member role"),
    ];
    for user in ["alice", "mo", "vi"] {
        let c = signed_in(&server, user).await;
        let screen = c.shell(120, 30).await;
        screen.wait_for("acme/blog").await;
        screen.send(b"/acme/blog\r").await;
        if user == "vi" {
            for (key, why) in refused {
                screen.send(key).await;
                screen
                    .wait_for(&format!("you are a viewer of this team: {why}"))
                    .await;
            }
            assert!(
                !screen.text().contains("Delete acme/blog"),
                "no confirmation for a viewer"
            );
        } else {
            // Stop, then start: both reach the project.
            screen.send(b"x").await;
            screen.wait_for("stop requested for acme/blog").await;
            blog_is(&server, Stopped).await;
            screen
                .wait_until("STOPPED on screen", |t| {
                    t.lines()
                        .any(|l| l.contains("acme/blog") && l.contains("STOPPED"))
                })
                .await;
            screen.send(b"s").await;
            screen.wait_for("start requested for acme/blog").await;
            blog_is(&server, Running).await;
            screen
                .wait_until("RUNNING on screen", |t| {
                    t.lines()
                        .any(|l| l.contains("acme/blog") && l.contains("RUNNING"))
                })
                .await;
            // Delete asks first; no keeps it.
            screen.send(b"d").await;
            screen.wait_for("yes, delete").await;
            screen.send(b"n").await;
            screen
                .wait_until("the confirmation closed", |t| !t.contains("yes, delete"))
                .await;
            // The env screen takes a new variable.
            let key = format!("SET_BY_{}", user.to_uppercase());
            screen.send(b"e").await;
            // The variables are loaded once the screen says which env version runs.
            screen.wait_for("set by Kiln and not listed here").await;
            screen.send(b"a").await;
            screen.wait_for("Add variable").await;
            screen.send(format!("{key}\t1\r").as_bytes()).await;
            eventually(&format!("{key} set"), Duration::from_secs(10), || async {
                let env = server.store.list_env(team, "blog").await.ok()?;
                env.iter().any(|v| v.key == key).then_some(())
            })
            .await;
            screen
                .wait_until("the form closed", |t| !t.contains("Add variable"))
                .await;
            // Back to the detail screen, then to the list.
            screen.send(b"qq").await;
            screen.wait_for("Projects (").await;
        }
        // a: a member's pane takes keys; a viewer's opens read-only.
        screen.send(b"a").await;
        if user == "vi" {
            screen.wait_for("read-only: your keys are not sent").await;
            screen.send(b"echo typed-by-vi\r").await;
            // What mo types afterwards shows in vi's pane; vi's never did.
            let mo = signed_in(&server, "mo").await;
            let direct = mo.exec_tty("attach acme/blog", 100, 30).await;
            direct.send(b"echo after-vi-$((6*7))\r").await;
            screen.wait_for("after-vi-42").await;
            assert!(!screen.text().contains("typed-by-vi"), "{}", screen.text());
            assert!(!direct.text().contains("typed-by-vi"), "{}", direct.text());
        } else {
            screen.wait_for("keys go to the session").await;
            let marker = format!("typed-by-{user}");
            screen
                .send(format!("echo {marker}-$((6*7))\r").as_bytes())
                .await;
            screen.wait_for(&format!("{marker}-42")).await;
        }
        // Detach (the prefix key, then d); v opens read-only for everyone.
        screen.send(b"\x1dd").await;
        screen.wait_for("detached from acme/blog").await;
        screen.send(b"v").await;
        screen.wait_for("read-only: your keys are not sent").await;
        screen.send(b"\x1dd").await;
    }
    // A non-member's dashboard has no trace of the team's project.
    let nat = signed_in(&server, "nat").await;
    assert_eq!(nat.exec("create mine", b"").await.code, Some(0));
    let screen = nat.shell(120, 30).await;
    screen.wait_for("mine").await;
    assert!(!screen.text().contains("acme"), "{}", screen.text());
    screen.send(b"/acme\r").await;
    screen.send(b"x").await;
    screen.wait_for("no project selected").await;
}

/// A member whose pane is open on a team's project is removed from the
/// team: the pane closes and the dashboard says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_members_pane_closes_with_the_reason_on_the_dashboard() {
    let server = Server::start_local().await;
    acme(&server).await;
    let mo = signed_in(&server, "mo").await;
    let screen = mo.shell(120, 30).await;
    screen.wait_for("acme/blog").await;
    screen.send(b"/acme/blog\ra").await;
    screen.wait_for("keys go to the session").await;
    screen.send(b"echo pane-$((6*7))\r").await;
    screen.wait_for("pane-42").await;
    let alice = signed_in(&server, "alice").await;
    let removed_at = std::time::Instant::now();
    let r = alice.exec("team acme remove mo", b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // The pane closes and the dashboard's status line says why.
    let text = screen
        .wait_until("the reason under the list", |t| {
            t.contains("Projects (")
                && t.contains("you no longer have access to team acme: detached")
        })
        .await;
    println!(
        "the pane closed {:?} after the removal",
        removed_at.elapsed()
    );
    assert!(!text.contains("keys go to the session"), "{text}");
    // The list drops the project once it reloads.
    screen.wait_for("Projects (0/0)").await;
}
