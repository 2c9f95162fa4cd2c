//! The admin's view over real SSH: an admin's dashboard lists every
//! user's and team's projects and stops one (audited as the admin), exec
//! `admin …` answers admins; to anyone else `admin` is an unknown command,
//! byte for byte, and their dashboard has no trace of it.

use std::time::Duration;

use crate::support::eventually;
use crate::support::ssh::{Client, Server, connect};

const PASSWORD: &str = "correct horse battery";

async fn signed_in(server: &Server, user: &str) -> Client {
    let mut c = connect(server.addr).await;
    assert!(c.password(user, PASSWORD).await, "{user} signs in");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_everyones_projects_and_stops_one_as_the_admin() {
    let server = Server::start_local().await;
    let alice = server.user("alice", PASSWORD).await;
    server
        .store
        .create_user("ada", Some(PASSWORD), true)
        .await
        .unwrap();
    server.running_project(alice.id, "blog").await;
    // alice signs in once, so the admin sees when.
    let _alice = signed_in(&server, "alice").await;

    let ada = signed_in(&server, "ada").await;
    let screen = ada.shell(120, 30).await;
    screen.wait_for("A admin").await;
    screen.send(b"A").await;
    screen.wait_for("alice/blog").await;
    screen.wait_for("queue depth").await;
    // Users: alice, active, one project, signed in.
    screen.send(b"\t").await;
    screen
        .wait_until("alice's row", |t| {
            t.lines()
                .any(|l| l.contains("alice") && l.contains("active") && l.contains(" ago"))
        })
        .await;
    screen.send(b"\t").await;
    screen
        .wait_until("the replicas section", |t| {
            t.contains("REPLICA") || t.contains("No replica holds a lease right now")
        })
        .await;
    screen.send(b"\t").await;
    screen.wait_for("OWNER/PROJECT").await;
    screen.send(b"x").await;
    screen.wait_for("stop requested for alice/blog").await;
    eventually("alice/blog stopped", Duration::from_secs(30), || async {
        let p = server.store.find_project(alice.id, "blog").await.ok()?;
        (p.project.status == kiln::model::ProjectStatus::Stopped).then_some(())
    })
    .await;
    screen
        .wait_until("STOPPED on the admin screen", |t| {
            t.lines()
                .any(|l| l.contains("alice/blog") && l.contains("STOPPED"))
        })
        .await;
    let records = server
        .store
        .list_audit(&kiln::store::audit::AuditFilter {
            username: Some("ada".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let stops: Vec<_> = records
        .iter()
        .filter(|r| r.action == "admin.project.stop")
        .collect();
    assert_eq!(stops.len(), 1, "{records:?}");
    assert_eq!(stops[0].username, "ada");
    assert_eq!(stops[0].project.as_deref(), Some("alice/blog"));
    assert_eq!(stops[0].result, "ok");
    assert_eq!(stops[0].front, "dashboard");
    // alice's own events name the admin too.
    let r = _alice.exec("events blog", b"").await;
    assert!(r.stdout.contains("ada"), "{}", r.stdout);

    // The same over exec, in JSON.
    let r = ada.exec("admin projects --json", b"").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|p| p["owner"] == "alice" && p["name"] == "blog" && p["status"] == "STOPPED"),
        "{v}"
    );
    let r = ada.exec("admin users --json", b"").await;
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .cloned()
        .unwrap();
    assert_eq!(row["projects"], 1, "{row}");
    assert!(row["last_sign_in"].is_string(), "{row}");
    let r = ada.exec("admin replicas --json", b"").await;
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["queue_depth"].is_i64(), "{v}");
    assert!(v["lease_holders"].is_array(), "{v}");
    // A project that does not exist is said so; nothing is recorded for it.
    let r = ada.exec("admin stop alice/nothing", b"").await;
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("no such project"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_a_non_admin_admin_is_an_unknown_command() {
    let server = Server::start_local().await;
    let alice = server.user("alice", PASSWORD).await;
    server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    for args in [
        "",
        " projects",
        " users --json",
        " stop alice/blog",
        " --help",
    ] {
        let theirs = c.exec(&format!("admin{args}"), b"").await;
        let unknown = c.exec(&format!("nimda{args}"), b"").await;
        assert_eq!(theirs.code, unknown.code, "admin{args}");
        assert_eq!(theirs.stdout, unknown.stdout.replace("nimda", "admin"));
        assert_eq!(
            theirs.stderr,
            unknown.stderr.replace("nimda", "admin"),
            "admin{args}"
        );
        assert!(
            theirs.stderr.contains("unknown command"),
            "{}",
            theirs.stderr
        );
    }
    assert!(!c.exec("help", b"").await.stdout.contains("admin "));
    // The project was not stopped.
    let p = server.store.find_project(alice.id, "blog").await.unwrap();
    assert_eq!(p.project.status, kiln::model::ProjectStatus::Running);
    // On the dashboard, A is a key like any unbound one, and help has no admin.
    let screen = c.shell(120, 30).await;
    screen.wait_for("blog").await;
    screen.send(b"A").await;
    screen
        .wait_for("A does nothing here; press ? for the keys")
        .await;
    screen.send(b"?").await;
    let help = screen.wait_for("close help").await;
    assert!(!help.contains("admin"), "{help}");
}
