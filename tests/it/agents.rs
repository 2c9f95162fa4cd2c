//! Agent states driven by Claude Code's own hooks (issue 20), end to end:
//! local sandboxes run the stand-in `claude` (`support/claude`), which reads
//! the settings files in Claude Code's order and runs the hook commands Kiln
//! installed (the real `kiln hook`), through each sandbox's own socket.
//! Users read the states over real SSH: exec commands and the dashboard.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::eventually;
use crate::support::ssh::{Client, Server, connect};

/// Types `line` and Enter into the default session of sandbox `resource`,
/// as a person at the stand-in's prompt would.
pub(crate) fn tell(server: &Server, resource: &str, line: &str) {
    let local = server.local.as_ref().expect("local driver");
    for keys in [&["-l", line][..], &["Enter"][..]] {
        let status = local
            .tmux_command(resource)
            .args(["send-keys", "-t", resource])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success(), "send-keys {keys:?} failed");
    }
}

async fn signed_in(server: &Server, user: &str) -> Client {
    let mut c = connect(server.addr).await;
    assert!(c.password(user, "pw-12345678").await);
    c
}

async fn agents_json(c: &Client) -> Vec<Value> {
    let out = c.exec("agents --json", b"").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until `agents --json` shows `project`'s default session in `state`.
async fn until_state(c: &Client, project: &str, state: &str) -> Value {
    eventually(
        &format!("{project} to be {state}"),
        Duration::from_secs(15),
        || async {
            agents_json(c)
                .await
                .into_iter()
                .find(|a| a["project"] == project && a["session"].is_null() && a["state"] == state)
        },
    )
    .await
}

fn sandbox_dir(server: &Server, resource: &str) -> std::path::PathBuf {
    server
        .local_dir
        .as_ref()
        .unwrap()
        .join("sandboxes")
        .join(resource)
}

#[tokio::test]
async fn each_hook_transition_shows_in_agents_json_and_the_inbox() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;

    // SessionStart, as the stand-in starts.
    until_state(&c, "blog", "idle").await;
    tell(&server, &resource, "prompt fix the tests");
    until_state(&c, "blog", "working").await;
    tell(
        &server,
        &resource,
        "perm Claude needs your permission to use Bash",
    );
    let waiting = until_state(&c, "blog", "needs_input").await;
    assert_eq!(
        waiting["message"],
        "Claude needs your permission to use Bash"
    );
    let inbox = c.exec("inbox --json", b"").await;
    let inbox: Value = serde_json::from_str(&inbox.stdout).unwrap();
    assert_eq!(inbox.as_array().unwrap().len(), 1, "{inbox}");
    assert_eq!(inbox[0]["project"], "blog");
    let text = c.exec("inbox", b"").await.stdout;
    assert!(
        text.contains("blog") && text.contains("? needs_input") && text.contains("permission"),
        "{text}"
    );
    tell(&server, &resource, "stop");
    until_state(&c, "blog", "done").await;
    let inbox = c.exec("inbox", b"").await.stdout;
    assert!(inbox.contains("nothing needs you"), "{inbox}");
    tell(&server, &resource, "end");
    until_state(&c, "blog", "ended").await;

    // needs_input and done were notified, once each.
    let n = c.exec("notifications --json", b"").await;
    let n: Value = serde_json::from_str(&n.stdout).unwrap();
    let kinds: Vec<&str> = n
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["done", "needs_input"], "{n}");
}

#[tokio::test]
async fn a_repeated_wait_is_notified_once_and_a_muted_project_not_at_all() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;
    tell(&server, &resource, "perm first");
    until_state(&c, "blog", "needs_input").await;
    tell(&server, &resource, "perm second");
    eventually("the second message", Duration::from_secs(15), || async {
        agents_json(&c)
            .await
            .into_iter()
            .find(|a| a["message"] == "second")
    })
    .await;
    let muted = c.exec("mute blog", b"").await;
    assert_eq!(muted.code, Some(0), "{muted:?}");
    tell(&server, &resource, "stop");
    until_state(&c, "blog", "done").await;
    let n = c.exec("notifications --json", b"").await;
    let n: Value = serde_json::from_str(&n.stdout).unwrap();
    assert_eq!(n.as_array().unwrap().len(), 1, "{n}");
    assert_eq!(n[0]["message"], "first");
}

#[tokio::test]
async fn wait_returns_when_the_hook_fires_and_times_out_otherwise() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;

    let timed_out = c
        .exec("wait blog --until needs_input --timeout 300ms", b"")
        .await;
    assert_eq!(timed_out.code, Some(1), "{timed_out:?}");
    assert!(
        timed_out.stderr.contains("timed out") && timed_out.stderr.contains("idle"),
        "{timed_out:?}"
    );

    let c2 = signed_in(&server, "alice").await;
    let waiter = tokio::spawn(async move {
        c2.exec("wait blog --until needs_input --timeout 60s --json", b"")
            .await
    });
    // The waiter is subscribed before the hook fires, or it finds the
    // state already reached: either way it returns with it.
    tell(&server, &resource, "perm May I run make?");
    let out = waiter.await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["state"], "needs_input");
    assert_eq!(v["message"], "May I run make?");

    let bad = c
        .exec("wait blog --until needs_input --timeout soon", b"")
        .await;
    assert_eq!(bad.code, Some(2), "{bad:?}");
    let missing = c.exec("wait nope --until done --timeout 1s", b"").await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("no such project"), "{missing:?}");
}

#[tokio::test]
async fn the_repositorys_own_claude_hooks_still_run() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;

    let dir = sandbox_dir(&server, &resource);
    std::fs::create_dir_all(dir.join(".claude")).unwrap();
    std::fs::write(
        dir.join(".claude/settings.json"),
        r#"{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "cat > repo-hook-ran.json"}]}]}}"#,
    )
    .unwrap();
    tell(&server, &resource, "stop");
    until_state(&c, "blog", "done").await;
    let ran = eventually("the repository's hook", Duration::from_secs(15), || async {
        std::fs::read_to_string(dir.join("repo-hook-ran.json")).ok()
    })
    .await;
    let payload: Value = serde_json::from_str(&ran).unwrap();
    assert_eq!(payload["hook_event_name"], "Stop");
    // Kiln's settings are the user scope under the CLAUDE_CONFIG_DIR it
    // owns; the repository's file was not touched.
    let repo = std::fs::read_to_string(dir.join(".claude/settings.json")).unwrap();
    assert!(!repo.contains("kiln"), "{repo}");
}

/// The hook as Claude Code runs it: `sh -c COMMAND` with the payload on stdin.
fn run_hook(socket: &str, stdin: Option<&[u8]>) -> (std::process::ExitStatus, Duration, Vec<u8>) {
    let start = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["hook", "--socket", socket])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
        drop(input);
    } else {
        // Never closed while the hook runs: the hook must not wait for it.
        std::mem::forget(input);
    }
    let out = child.wait_with_output().unwrap();
    let mut printed = out.stdout;
    printed.extend(out.stderr);
    (out.status, start.elapsed(), printed)
}

#[test]
fn the_hook_returns_within_a_second_and_exits_0_when_kiln_is_unreachable() {
    let payload = br#"{"session_id":"s","cwd":"/","hook_event_name":"Notification","notification_type":"permission_prompt","message":"hi"}"#;
    let dir = std::env::temp_dir().join(format!("kiln-hook-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // A Kiln that hangs: its socket takes connections and never reads them.
    let stuck = dir.join("stuck.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&stuck).unwrap();
    let cases: [(&str, String, Option<&[u8]>); 4] = [
        (
            "no socket",
            dir.join("missing.sock").display().to_string(),
            Some(payload),
        ),
        ("not a socket", dir.display().to_string(), Some(payload)),
        (
            "a socket that never accepts",
            stuck.display().to_string(),
            Some(payload),
        ),
        (
            "stdin never closed",
            dir.join("missing.sock").display().to_string(),
            None,
        ),
    ];
    for (what, socket, stdin) in cases {
        let (status, took, printed) = run_hook(&socket, stdin);
        assert!(status.success(), "{what}: {status}");
        assert!(printed.is_empty(), "{what}: printed {printed:?}");
        // The issue's bound (Claude Code waits for its hooks); the hook's
        // own deadline is half of it.
        assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn one_sandboxs_socket_cannot_set_anothers_state_and_another_tenant_sees_nothing() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let bob = server.user("bob", "pw-12345678").await;
    let a = server.running_project(alice.id, "blog").await;
    let b = server.running_project(bob.id, "shop").await;
    let ca = signed_in(&server, "alice").await;
    let cb = signed_in(&server, "bob").await;
    until_state(&ca, "blog", "idle").await;
    until_state(&cb, "shop", "idle").await;
    let local = server.local.as_ref().unwrap();

    // Whatever arrives on alice's socket is about alice's sandbox, even a
    // report that names bob's sandbox and a session of his.
    for session in ["", "s1"] {
        let mut s = std::os::unix::net::UnixStream::connect(local.hook_socket(&a)).unwrap();
        write!(
            s,
            "{session}\n{{\"hook_event_name\":\"Notification\",\"notification_type\":\"permission_prompt\",\"message\":\"from {a} about {b}\",\"resource\":\"{b}\"}}"
        )
        .unwrap();
    }
    until_state(&ca, "blog", "needs_input").await;
    let bobs = agents_json(&cb).await;
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(bobs[0]["project"], "shop");
    assert_eq!(bobs[0]["state"], "idle");

    // Inside alice's sandbox, bob's socket does not exist at any path
    // (each sandbox sees only its own run directory, at /run/kiln).
    let probe = format!(
        "test -e {} && touch /run/kiln/saw-other || touch /run/kiln/saw-none",
        local.hook_socket(&b).display()
    );
    let status = local
        .tmux_command(&a)
        .args(["run-shell", &probe])
        .status()
        .unwrap();
    assert!(status.success());
    let run_dir = local.hook_socket(&a).parent().unwrap().to_owned();
    if local.confinement().is_confined() {
        assert!(run_dir.join("saw-none").exists());
        assert!(!run_dir.join("saw-other").exists());
    }

    // Bob sees none of alice's state, inbox or notifications, and waiting on
    // her project answers as for a missing one.
    assert!(
        agents_json(&cb)
            .await
            .iter()
            .all(|x| x["project"] == "shop")
    );
    let inbox = cb.exec("inbox --json", b"").await;
    assert_eq!(inbox.stdout.trim(), "[]", "{inbox:?}");
    let n = cb.exec("notifications --json", b"").await;
    assert_eq!(n.stdout.trim(), "[]", "{n:?}");
    let theirs = cb
        .exec("wait blog --until needs_input --timeout 1s", b"")
        .await;
    let missing = cb
        .exec("wait nothing --until needs_input --timeout 1s", b"")
        .await;
    assert_eq!(theirs.code, missing.code);
    assert_eq!(
        theirs.stderr.replace("blog", "X"),
        missing.stderr.replace("nothing", "X")
    );
    // And alice's own inbox has her report.
    let inbox = ca.exec("inbox --json", b"").await;
    let inbox: Value = serde_json::from_str(&inbox.stdout).unwrap();
    assert_eq!(inbox.as_array().unwrap().len(), 2, "{inbox}");
}

#[tokio::test]
async fn stopping_a_sandbox_clears_its_states() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;
    tell(&server, &resource, "perm waiting");
    until_state(&c, "blog", "needs_input").await;
    let stop = c.exec("stop blog", b"").await;
    assert_eq!(stop.code, Some(0), "{stop:?}");
    eventually("the state to clear", Duration::from_secs(15), || async {
        agents_json(&c).await.is_empty().then_some(())
    })
    .await;
    // The loop stops the sandbox after the intent: then its socket is gone.
    eventually("the sandbox to stop", Duration::from_secs(30), || async {
        let p = server.store.find_project(alice.id, "blog").await.unwrap();
        (p.project.status == kiln::model::ProjectStatus::Stopped).then_some(())
    })
    .await;
    assert!(
        !server
            .local
            .as_ref()
            .unwrap()
            .hook_socket(&resource)
            .exists()
    );
}

#[tokio::test]
async fn transitions_reach_an_open_dashboard_without_a_key_press_and_the_inbox_attaches() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;
    // NO_COLOR: the states must read by the glyph's shape alone.
    // Wide enough for the state names beside the glyphs.
    let screen = c.shell_with_env(140, 30, &[("NO_COLOR", "1")]).await;
    screen.wait_for("○ idle").await;

    tell(&server, &resource, "prompt go");
    screen.wait_for("» working").await;
    let bells = || screen.state.lock().unwrap().bells;
    assert_eq!(bells(), 0, "nothing needed the user yet");
    tell(
        &server,
        &resource,
        "perm Claude needs your permission to use Bash",
    );
    let text = screen.wait_for("? needs_input").await;
    assert!(text.contains("? 1 needs you"), "{text}");
    screen.wait_until("the bell", |_| bells() == 1).await;
    // The same wait reported again does not ring again; a keystroke later
    // the bell count is still one.
    tell(
        &server,
        &resource,
        "perm Claude needs your permission to use Bash",
    );
    tell(&server, &resource, "prompt noop-marker");
    screen.wait_for("» working").await;
    assert_eq!(bells(), 1);
    tell(&server, &resource, "perm May I edit src/main.rs?");
    screen.wait_for("? needs_input").await;
    screen.wait_until("the second bell", |_| bells() == 2).await;

    // The inbox, oldest first, with Claude's message; Enter attaches.
    screen.send(b"i").await;
    let inbox = screen.wait_for("Inbox (1)").await;
    assert!(inbox.contains("May I edit src/main.rs?"), "{inbox}");
    assert!(inbox.contains("blog"), "{inbox}");
    screen.send(b"\r").await;
    screen.wait_for("stand-in claude ready").await;
    screen.wait_for("fired Notification").await;
}

#[tokio::test]
async fn the_detail_screen_lists_each_sessions_state() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;
    tell(&server, &resource, "stop");
    until_state(&c, "blog", "done").await;
    let screen = c.shell(140, 40).await;
    screen.wait_for("✓ done").await;
    screen.send(b"\r").await;
    let detail = screen
        .wait_until("the session's state on the detail screen", |t| {
            t.contains("Sessions")
                && crate::support::ssh::line_with(t, "default")
                    .is_some_and(|l| l.contains("✓ done"))
        })
        .await;
    assert!(detail.contains("blog"), "{detail}");
}

/// Kills the program of sandbox `resource`'s default session with SIGKILL,
/// from inside the sandbox (its pids are the sandbox's own), as a crash or
/// an OOM kill would: it says nothing, no SessionEnd.
fn kill_program(server: &Server, resource: &str) {
    let status = server
        .local
        .as_ref()
        .unwrap()
        .tmux_command(resource)
        .args([
            "run-shell",
            "-t",
            &format!("={resource}:"),
            "kill -KILL #{pane_pid}",
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_program_killed_without_session_end_is_ended_and_a_restart_clears_it() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;
    tell(&server, &resource, "perm May I?");
    until_state(&c, "blog", "needs_input").await;

    kill_program(&server, &resource);
    let ended = until_state(&c, "blog", "ended").await;
    assert_eq!(ended["message"], "", "{ended}");
    let inbox = c.exec("inbox --json", b"").await;
    assert_eq!(inbox.stdout.trim(), "[]", "{inbox:?}");

    // A restart starts a new program: the old one's state goes, and the
    // new one's own first report (SessionStart) is what shows.
    let restarted = c.exec("restart blog", b"").await;
    assert_eq!(restarted.code, Some(0), "{restarted:?}");
    until_state(&c, "blog", "idle").await;
    tell(&server, &resource, "prompt again");
    until_state(&c, "blog", "working").await;
}

#[tokio::test]
async fn a_plain_session_that_exits_stays_unknown() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;
    let local = server.local.as_ref().unwrap();
    // A named session running a program that never reports, then exits:
    // its pane dies like Claude's, but no agent was ever heard there. The
    // program (`cat`) waits for its end of input, so `remain-on-exit` is
    // surely set before it exits; a timed exit raced the option under load,
    // and a pane that exits without it takes its session away.
    let status = local
        .tmux_command(&resource)
        .args([
            "new-session",
            "-d",
            "-s",
            "plain",
            "-e",
            "KILN_SESSION=plain",
            "cat",
        ])
        .args([";", "set-option", "-t", "=plain:", "remain-on-exit", "on"])
        .status()
        .unwrap();
    assert!(status.success());
    let status = local
        .tmux_command(&resource)
        .args(["send-keys", "-t", "=plain:", "C-d"])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(
        "the plain session's pane to die",
        Duration::from_secs(15),
        || async {
            let out = local
                .tmux_command(&resource)
                .args(["list-panes", "-t", "=plain:", "-F", "#{pane_dead}"])
                .output()
                .unwrap();
            (String::from_utf8_lossy(&out.stdout).trim() == "1").then_some(())
        },
    )
    .await;
    // The default session is killed after it: once its `ended` shows, the
    // plain session's report (sent first) has been taken too.
    kill_program(&server, &resource);
    until_state(&c, "blog", "ended").await;
    let all = agents_json(&c).await;
    assert_eq!(
        all.len(),
        1,
        "only the default session has a state: {all:?}"
    );
}

#[tokio::test]
async fn m_on_the_dashboard_mutes_the_project_and_marks_its_row() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    until_state(&c, "blog", "idle").await;
    // Wide enough for the state's name beside its glyph.
    let screen = c.shell(140, 30).await;
    screen.wait_for("○ idle").await;
    screen.send(b"m").await;
    screen.wait_for("⊘").await;
    screen.wait_for("muted agent notifications of blog").await;
    let p = server.store.find_project(alice.id, "blog").await.unwrap();
    assert!(p.project.agent_muted);
    screen.send(b"m").await;
    screen
        .wait_until("the mark to go", |t| {
            t.contains("unmuted agent notifications of blog") && !t.contains('⊘')
        })
        .await;
    let p = server.store.find_project(alice.id, "blog").await.unwrap();
    assert!(!p.project.agent_muted);
}

#[tokio::test]
async fn a_teams_sessions_reach_its_members_inboxes_a_viewer_attaches_read_only_and_others_see_nothing()
 {
    use kiln::model::team::TeamRole;
    let server = Server::start_agents().await;
    for name in ["bob", "carol", "dave"] {
        server.user(name, "pw-12345678").await;
    }
    let team = server.store.create_team("acme").await.unwrap();
    server
        .store
        .set_member(team.id, "bob", TeamRole::Member)
        .await
        .unwrap();
    server
        .store
        .set_member(team.id, "carol", TeamRole::Viewer)
        .await
        .unwrap();
    let resource = server.running_project(team.id, "web").await;
    let (bob, carol, dave) = (
        signed_in(&server, "bob").await,
        signed_in(&server, "carol").await,
        signed_in(&server, "dave").await,
    );
    until_state(&bob, "acme/web", "idle").await;
    tell(&server, &resource, "perm May I deploy?");
    until_state(&bob, "acme/web", "needs_input").await;
    for c in [&bob, &carol] {
        let inbox = c.exec("inbox --json", b"").await;
        let v: Value = serde_json::from_str(&inbox.stdout).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v[0]["project"], "acme/web");
        assert_eq!(v[0]["message"], "May I deploy?");
    }
    // Each member is notified on their own, of the project as they name
    // it; reading marks only their own read.
    for c in [&bob, &carol] {
        let r = c.exec("notifications --json", b"").await;
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v[0]["project"], "acme/web", "{v}");
        assert_eq!(v[0]["kind"], "needs_input", "{v}");
        assert_eq!(v[0]["message"], "May I deploy?", "{v}");
    }
    // A member waits on the team's session by the name they see it under.
    let r = bob
        .exec("wait acme/web --until needs_input --timeout 5s", b"")
        .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    // Not a member: nothing of the team's, anywhere.
    assert_eq!(dave.exec("inbox --json", b"").await.stdout.trim(), "[]");
    assert_eq!(dave.exec("agents --json", b"").await.stdout.trim(), "[]");
    assert_eq!(
        dave.exec("notifications --json --all", b"")
            .await
            .stdout
            .trim(),
        "[]"
    );
    let r = dave
        .exec("wait acme/web --until needs_input --timeout 1s", b"")
        .await;
    assert!(r.stderr.contains("no such project"), "{r:?}");

    // The viewer's Enter in the inbox opens the session read-only.
    let screen = carol.shell(140, 30).await;
    screen.wait_for("? 1 needs you").await;
    screen.send(b"i").await;
    screen.wait_for("Inbox (1)").await;
    screen.send(b"\r").await;
    screen.wait_for("read-only: your keys are not sent").await;

    // A member who leaves the team sees its sessions no more, nor what
    // they were notified of.
    server.store.remove_member(team.id, "bob").await.unwrap();
    assert_eq!(bob.exec("inbox --json", b"").await.stdout.trim(), "[]");
    assert_eq!(
        bob.exec("notifications --json --all", b"")
            .await
            .stdout
            .trim(),
        "[]"
    );
}
