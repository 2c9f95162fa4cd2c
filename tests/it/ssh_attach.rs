//! Direct attach over SSH to a local sandbox (a real tmux session running sh).
//!
//! Over 500 lines: independent end-to-end tests of attach, each driving a
//! real session; they share only the harness.

use std::process::Command;

use kiln::store::resources::ResourceKind;

use crate::support;
use crate::support::ssh::{Server, connect};

/// The sandbox a tmux session belongs to: `{resource}` or
/// `{resource}--{name}`.
fn resource_of(session: &str) -> &str {
    session.split("--").next().unwrap_or(session)
}

fn tmux_has(server: &Server, session: &str) -> bool {
    let local = server.local.as_ref().unwrap();
    local
        .tmux_command(resource_of(session))
        .args(["has-session", "-t", &format!("={session}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Alice's dashboard at `cols`×`rows`, once `project` shows RUNNING on it
/// (the client is returned too: the connection lives as long as it does).
async fn alices_dashboard(
    server: &Server,
    project: &str,
    cols: u16,
    rows: u16,
) -> (support::ssh::Client, support::ssh::Screen) {
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.shell(cols, rows).await;
    screen
        .wait_until(&format!("{project} RUNNING"), |t| {
            support::ssh::line_with(t, project).is_some_and(|l| l.contains("RUNNING"))
        })
        .await;
    (c, screen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_types_into_the_session_and_detach_leaves_it_running() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    let session = server.running_project(alice.id, "shell").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);

    // Starting set the idle clock; typing must move it on.
    let active_at = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT last_active_at FROM sandboxes WHERE resource_name = $1",
        )
        .bind(&session)
        .fetch_one(server.store.pool())
        .await
        .unwrap()
    };
    let started = active_at().await;
    let screen = c.exec_tty("attach shell", 100, 30).await;
    let marker = format!("hello-{}-marker", std::process::id());
    screen.send(format!("echo {marker}\r").as_bytes()).await;
    screen
        .wait_until("the echo output", |t| t.matches(&marker).count() >= 2)
        .await;

    // Typing in the session counts as activity (for the idle policy).
    support::eventually(
        "last_active_at recorded",
        std::time::Duration::from_secs(10),
        || async { (active_at().await > started).then_some(()) },
    )
    .await;

    // The size of the client is the size the program sees.
    screen.send(b"stty size\r").await;
    screen.wait_for("30 100").await;
    screen.resize(90, 25).await;
    // The resize and the keys travel separately: ask until the shell sees it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !screen.text().contains("25 90") {
        assert!(tokio::time::Instant::now() < deadline, "{}", screen.text());
        screen.send(b"stty size\r").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    assert!(
        tmux_has(&server, &session),
        "the session runs while attached"
    );
    // Ctrl-] detaches; the session survives.
    screen.send(&[0x1d]).await;
    assert_eq!(screen.wait_closed().await, Some(0));
    if !tmux_has(&server, &session) {
        let p = server.store.find_project(alice.id, "shell").await.unwrap();
        let ev = server
            .store
            .list_events(alice.id, p.project.id, 50)
            .await
            .unwrap();
        panic!("the session did not survive a detach; events: {ev:#?}");
    }

    // Reattaching shows the current screen at once, marker included.
    let again = c.exec_tty("attach shell", 100, 30).await;
    again.wait_for(&marker).await;
    again.send(&[0x1d]).await;
    again.wait_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_refuses_without_a_terminal_for_a_stopped_project_and_for_other_tenants() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    server.user("bob", "another long password").await;
    server.running_project(alice.id, "mine").await;
    let mut a = connect(server.addr).await;
    assert!(a.password("alice", "correct horse battery").await);

    let r = a.exec("attach mine", b"").await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("ssh -t"), "{r:?}");

    let mut b = connect(server.addr).await;
    assert!(b.password("bob", "another long password").await);
    let theirs = b.exec_tty("attach mine", 80, 24).await;
    let code = theirs.wait_closed().await;
    assert_eq!(code, Some(1));
    let missing = b.exec_tty("attach nosuch", 80, 24).await;
    assert_eq!(missing.wait_closed().await, Some(1));
    let (t, m) = (
        theirs.state.lock().unwrap().stderr.clone(),
        missing.state.lock().unwrap().stderr.clone(),
    );
    assert_eq!(t.replace("mine", "X"), m.replace("nosuch", "X"));

    server
        .store
        .record_intent(alice.id, "mine", kiln::model::intent::Intent::Stop, "alice")
        .await
        .unwrap();
    let stopped = a.exec_tty("attach mine", 80, 24).await;
    assert_eq!(stopped.wait_closed().await, Some(1));
    assert!(
        stopped
            .state
            .lock()
            .unwrap()
            .stderr
            .contains("start it first")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_viewer_sees_output_and_changes_nothing() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    server.running_project(alice.id, "shared").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let writer = c.exec_tty("attach shared", 100, 30).await;
    let viewer = c.exec_tty("attach shared --read-only", 100, 30).await;
    viewer.send(b"echo SHOULD-NOT-RUN\r").await;
    writer.send(b"echo from-the-writer\r").await;
    viewer
        .wait_until("the writer's output in the viewer", |t| {
            t.matches("from-the-writer").count() >= 2
        })
        .await;
    assert!(
        !writer.text().contains("SHOULD-NOT-RUN"),
        "{}",
        writer.text()
    );
    writer.send(&[0x1d]).await;
    viewer.send(&[0x1d]).await;
    writer.wait_closed().await;
    viewer.wait_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_pane_attaches_detaches_and_reattaches_to_a_live_session() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    let session = server.running_project(alice.id, "paned").await;
    let (_c, screen) = alices_dashboard(&server, "paned", 100, 30).await;
    screen.send(b"a").await;
    screen.wait_for("Ctrl-] d detach").await;
    let marker = format!("pane-{}-marker", std::process::id());
    screen.send(format!("echo {marker}\r").as_bytes()).await;
    screen
        .wait_until("the marker echoed in the pane", |t| {
            t.matches(&marker).count() >= 2
        })
        .await;
    // The program inside sees the pane's size (the frame takes 2 columns, 5 rows).
    screen.send(b"stty size\r").await;
    screen.wait_for("25 98").await;

    // History: Ctrl-] [ then PgUp shows lines that scrolled off; q is live again.
    screen.send(b"seq 1000 1200\r").await;
    // (1199 is output only: "1200" is already in the typed command line.)
    screen.wait_for("1199").await;
    screen.send(&[0x1d, b'[']).await;
    screen.wait_for("[0/").await; // tmux's copy-mode position indicator
    screen.send(b"\x1b[5~").await;
    screen
        .wait_until("earlier lines in the pane", |t| t.contains("1160"))
        .await;
    screen.send(b"q").await;
    screen
        .wait_until("live again", |t| t.contains("1200"))
        .await;
    screen
        .send(format!("clear; echo {marker}\r").as_bytes())
        .await;
    screen
        .wait_until("the marker back on screen", |t| {
            t.contains(&marker) && !t.contains("1200")
        })
        .await;
    screen.send(&[0x1d, b'd']).await;
    screen.wait_for("detached from paned").await;
    assert!(
        screen.text().contains("NAME"),
        "back on the list:\n{}",
        screen.text()
    );
    assert!(tmux_has(&server, &session));

    // Reattach: the current screen is there at once, marker included.
    screen.send(b"a").await;
    screen.wait_for(&marker).await;

    // A flood does not make the detach key unresponsive.
    screen.send(b"yes\r").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    screen.send(&[0x1d, b'd']).await;
    screen.wait_for("detached from paned").await;
    // Stop the flood so the test leaves a quiet session behind.
    let local = server.local.as_ref().unwrap();
    local
        .tmux_command(resource_of(&session))
        .args(["send-keys", "-t", &format!("={session}"), "C-c", ""])
        .status()
        .unwrap();
    assert!(tmux_has(&server, &session));
}

/// tmux clients attached through this test server's socket.
fn attach_clients(server: &Server) -> usize {
    // Every sandbox's socket is under `{data}/run/`.
    let run = server.local_dir.as_ref().unwrap().join("run");
    let out = Command::new("pgrep")
        .args(["-f", &format!("{}/.* attach-session", run.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Clients attached to `session`, as its tmux server counts them.
fn session_clients(server: &Server, session: &str) -> usize {
    let local = server.local.as_ref().unwrap();
    let out = local
        .tmux_command(resource_of(session))
        .args(["list-clients", "-t", &format!("={session}"), "-F", "x"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Waits (up to 10 s) until tmux counts `n` clients on `session`.
async fn wait_for_clients(server: &Server, session: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = session_clients(server, session);
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} clients on {session}, not {n}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_leaves_no_orphan_client_and_the_session_intact() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    let session = server.running_project(alice.id, "orphans").await;
    {
        let mut c = connect(server.addr).await;
        assert!(c.password("alice", "correct horse battery").await);
        let direct = c.exec_tty("attach orphans", 80, 24).await;
        direct.send(b"echo attached\r").await;
        direct.wait_for("attached").await;
        let dash = c.shell(100, 30).await;
        dash.wait_for("orphans").await;
        dash.send(b"a").await;
        dash.wait_for("Ctrl-] d detach").await;
        // The pane opens once its client is started; tmux counts the client
        // only when it has connected, which may come a little later.
        wait_for_clients(&server, &session, 2).await;
        assert_eq!(attach_clients(&server), 2, "two viewers attached");
        // The client vanishes without detaching (as if killed).
        drop(direct);
        drop(dash);
        drop(c);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while attach_clients(&server) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "orphan tmux clients remain"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    wait_for_clients(&server, &session, 0).await;
    assert!(tmux_has(&server, &session), "the session survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_sessions_belong_to_their_sandbox_only() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    let bob = server.user("bob", "another long password").await;
    let alices = server.running_project(alice.id, "alicesbox").await;
    server.running_project(bob.id, "bobsbox").await;
    let mut b = connect(server.addr).await;
    assert!(b.password("bob", "another long password").await);

    // Naming alice's session from bob's own sandbox must not reach it.
    let sneaky = b
        .exec_tty(&format!("attach bobsbox --session {alices}"), 80, 24)
        .await;
    sneaky.send(b"echo $KILN_SANDBOX\r").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !sneaky.text().contains(&format!("{alices}\r")),
        "{}",
        sneaky.text()
    );
    let _ = sneaky.state.lock().unwrap().exit;

    // A named session is created on first use and survives a detach.
    let work = b.exec_tty("attach bobsbox --session work", 80, 24).await;
    work.send(b"echo in-work-$PROJECT_NAME\r").await;
    work.wait_until("the named session, with the project env", |t| {
        t.contains("in-work-bobsbox")
    })
    .await;
    work.send(&[0x1d]).await;
    assert_eq!(work.wait_closed().await, Some(0));
    let p = server.store.find_project(bob.id, "bobsbox").await.unwrap();
    let sb = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    assert!(tmux_has(&server, &format!("{}--work", sb.resource_name)));

    let bad = b.exec_tty("attach bobsbox --session ../x", 80, 24).await;
    assert_eq!(bad.wait_closed().await, Some(1));
    assert!(
        bad.state
            .lock()
            .unwrap()
            .stderr
            .contains("invalid session name")
    );
}

/// The cell of the client's screen where `needle` starts.
fn find_cell(screen: &support::ssh::Screen, needle: &str) -> Option<(u16, u16)> {
    let parser = screen.parser.lock().unwrap();
    let s = parser.screen();
    let (rows, cols) = s.size();
    for r in 0..rows {
        let line = s.contents_between(r, 0, r, cols);
        if let Some(byte) = line.find(needle) {
            let col = line[..byte].chars().count() as u16;
            return Some((r, col));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pane_keeps_colours_wide_characters_and_full_screen_programs() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    server.running_project(alice.id, "colours").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.shell(100, 30).await;
    screen.wait_for("colours").await;
    screen.send(b"a").await;
    screen.wait_for("Ctrl-] d detach").await;
    screen
        .send(b"printf '\\033[38;5;202mAAAA\\033[0m \\033[1;38;2;10;200;30mBBBB\\033[0m \\346\\274\\242\\345\\255\\227 end\\n'\r")
        .await;
    screen
        .wait_until("the coloured line", |t| t.contains("AAAA BBBB"))
        .await;
    let (r, col) = find_cell(&screen, "AAAA BBBB").unwrap();
    {
        let parser = screen.parser.lock().unwrap();
        let s = parser.screen();
        let a = s.cell(r, col).unwrap();
        assert_eq!(a.fgcolor(), vt100::Color::Idx(202), "256-colour");
        let b = s.cell(r, col + 5).unwrap();
        assert_eq!(b.fgcolor(), vt100::Color::Rgb(10, 200, 30), "true colour");
        assert!(b.bold());
    }
    let line = screen.text();
    assert!(
        line.contains("漢字 end"),
        "wide characters keep their place:\n{line}"
    );

    // A full-screen program takes the pane and gives it back.
    screen.send(b"seq 1 500 | less\r").await;
    screen
        .wait_until("less on the alternate screen", |t| {
            t.contains("\n1 ") || t.contains("│1 ")
        })
        .await;
    screen.send(b"q").await;
    screen
        .wait_until("the shell again", |t| t.contains("seq 1 500 | less"))
        .await;
    screen.send(&[0x1d, b'd']).await;
    screen.wait_for("detached from colours").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pane_creates_and_switches_named_sessions() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    let default = server.running_project(alice.id, "multi").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.shell(110, 30).await;
    screen.wait_for("multi").await;
    screen.send(b"a").await;
    screen.wait_for("Ctrl-] d detach").await;
    screen.send(b"echo in-the-default\r").await;
    screen
        .wait_until("default output", |t| {
            t.matches("in-the-default").count() >= 2
        })
        .await;

    screen.send(&[0x1d, b'n']).await;
    screen.wait_for("s1 (of").await;
    screen.send(b"echo in-s1-$PROJECT_NAME\r").await;
    screen.wait_for("in-s1-multi").await;
    assert!(tmux_has(&server, &format!("{default}--s1")));

    // w cycles back to the default session, whose screen is still there.
    screen.send(&[0x1d, b'w']).await;
    screen.wait_for("in-the-default").await;
    assert!(!screen.text().contains("in-s1-multi"), "{}", screen.text());
    screen.send(&[0x1d, b'd']).await;
    screen.wait_for("detached from multi").await;
    // The detail screen lists the sandbox's sessions.
    screen.send(b"\r").await;
    screen
        .wait_until("the session list", |t| {
            t.contains("Sessions")
                && support::ssh::line_with(t, "default").is_some_and(|l| l.contains("running"))
                && support::ssh::line_with(t, " s1 ").is_some_and(|l| l.contains("running"))
        })
        .await;
    assert!(tmux_has(&server, &default));
    assert!(tmux_has(&server, &format!("{default}--s1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_pane_says_so_and_refuses_what_needs_keys() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    let default = server.running_project(alice.id, "watched").await;
    let (_c, screen) = alices_dashboard(&server, "watched", 200, 30).await;
    screen.send(b"v").await;
    screen.wait_for("read-only: your keys are not sent").await;
    assert!(screen.text().contains("READ-ONLY"), "{}", screen.text());
    // The status line says what just happened, not the dashboard's last action.
    assert!(
        screen
            .text()
            .contains(&format!("viewing {default} read-only")),
        "{}",
        screen.text()
    );
    // Switching needs no keys in the session, but there is nothing to
    // switch to yet.
    screen.send(&[0x1d, b'w']).await;
    screen.wait_for("no other session to switch to").await;
    // History and a new session both need keys in the session: each says
    // why instead of doing nothing, and no session appears.
    screen.send(&[0x1d, b'[']).await;
    screen.wait_for("a read-only viewer has no history").await;
    let refused = |t: &str, what: &str| {
        support::ssh::line_with(t, what).is_some_and(|l| l.trim_start().starts_with('✗'))
    };
    assert!(refused(&screen.text(), "no history"), "{}", screen.text());
    screen.send(&[0x1d, b'n']).await;
    screen
        .wait_for("a read-only viewer cannot start a session")
        .await;
    screen.send(&[0x1d, b'r']).await;
    screen
        .wait_for("a read-only viewer cannot restart the session")
        .await;
    assert!(
        refused(&screen.text(), "cannot restart"),
        "{}",
        screen.text()
    );
    assert!(!tmux_has(&server, &format!("{default}--s1")));
    screen.send(b"echo SHOULD-NOT-RUN\r").await;
    screen.send(&[0x1d, b'd']).await;
    screen.wait_for("detached from watched").await;
    assert!(tmux_has(&server, &default));
    let local = server.local.as_ref().unwrap();
    let shown = local
        .tmux_command(resource_of(&default))
        .args(["capture-pane", "-p", "-t", &format!("={default}:")])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(!shown.contains("SHOULD-NOT-RUN"), "{shown}");
}

/// The size tmux gives a session's window, as `WxH`.
fn window_size(server: &Server, session: &str) -> String {
    let local = server.local.as_ref().unwrap();
    let out = local
        .tmux_command(resource_of(session))
        .args([
            "display-message",
            "-p",
            "-t",
            &format!("={session}:"),
            "#{window_width}x#{window_height}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_viewer_never_resizes_the_session() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    let session = server.running_project(alice.id, "sized").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let writer = c.exec_tty("attach sized", 100, 30).await;
    writer.send(b"stty size\r").await;
    writer.wait_for("30 100").await;
    let viewer = c.exec_tty("attach sized --read-only", 60, 20).await;
    viewer.wait_for("30 100").await;
    // The viewer resizes and presses keys (activity, for `window-size
    // latest`): the session keeps the writer's size.
    viewer.resize(50, 15).await;
    viewer.send(b"x").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(window_size(&server, &session), "100x30");
    writer.send(b"clear; stty size\r").await;
    writer.wait_for("30 100").await;
    // The writer's own resize still moves it.
    writer.resize(90, 25).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while window_size(&server, &session) != "90x25" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            window_size(&server, &session)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    writer.send(&[0x1d]).await;
    viewer.send(&[0x1d]).await;
    writer.wait_closed().await;
    viewer.wait_closed().await;
}

/// Waits (bounded) until tmux sees the program of `session` gone (its pane dead).
async fn wait_dead(server: &Server, session: &str) {
    let local = server.local.as_ref().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = local
            .tmux_command(resource_of(session))
            .args([
                "display-message",
                "-p",
                "-t",
                &format!("={session}:"),
                "#{pane_dead}",
            ])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{session} still runs"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_an_exited_session_and_restarts_it() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    let default = server.running_project(alice.id, "revive").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.shell(110, 32).await;
    screen.wait_for("revive").await;

    // A named session whose shell exits with status 3.
    screen.send(b"a").await;
    screen.wait_for("Ctrl-] d detach").await;
    screen.send(&[0x1d, b'n']).await;
    screen.wait_for("s1 (of").await;
    screen.send(b"echo in-s1\r").await;
    screen
        .wait_until("s1's prompt", |t| t.matches("in-s1").count() >= 2)
        .await;
    screen.send(b"exit 3\r").await;
    wait_dead(&server, &format!("{default}--s1")).await;
    screen.send(&[0x1d, b'd']).await;
    screen.wait_for("detached from revive").await;
    assert!(tmux_has(&server, &format!("{default}--s1")));

    // The detail screen marks it exited, with its status.
    screen.send(b"\r").await;
    let text = screen
        .wait_until("s1 exited on the detail screen", |t| {
            support::ssh::line_with(t, " s1 ").is_some_and(|l| l.contains("exited (status 3)"))
        })
        .await;
    assert!(
        support::ssh::line_with(&text, "default").is_some_and(|l| l.contains("running")),
        "{text}"
    );
    // Tab selects it; R restarts it (no confirmation), and says so.
    screen.send(b"\t").await;
    screen
        .wait_until("s1 selected", |t| {
            support::ssh::line_with(t, "▸ s1").is_some()
        })
        .await;
    screen.send(b"R").await;
    screen.wait_for("restarted session s1 of revive").await;
    screen
        .wait_until("s1 running again", |t| {
            support::ssh::line_with(t, " s1 ").is_some_and(|l| l.contains("running"))
        })
        .await;

    // Attaching (Enter) reaches the new shell.
    screen.send(b"\r").await;
    screen.wait_for("Ctrl-] d detach").await;
    screen.send(b"echo back-$((2+3))\r").await;
    screen.wait_for("back-5").await;

    // In the pane, Ctrl-] r restarts the session once it has exited.
    screen.send(&[0x1d, b'r']).await;
    screen.wait_for("still running").await;
    screen.send(b"exit 4\r").await;
    wait_dead(&server, &format!("{default}--s1")).await;
    screen.send(&[0x1d, b'r']).await;
    screen.wait_for("restarted session s1 of revive").await;
    screen.send(b"clear; echo again-$((3+4))\r").await;
    screen.wait_for("again-7").await;
    screen.send(b"exit 5\r").await;
    wait_dead(&server, &format!("{default}--s1")).await;
    screen.send(&[0x1d, b'd']).await;
    screen.wait_for("detached from revive").await;

    // Back on the detail screen, the list is current at once. Attaching to
    // an exited session offers a restart instead of a dead pane.
    screen
        .wait_until("s1 exited again", |t| {
            support::ssh::line_with(t, " s1 ").is_some_and(|l| l.contains("exited (status 5)"))
        })
        .await;
    // The cursor stayed on s1.
    assert!(screen.text().contains("▸ s1"), "{}", screen.text());
    screen.send(b"a").await;
    screen.wait_for("Session s1 has exited (status 5)").await;
    screen.send(b"y").await;
    screen.wait_for("Ctrl-] d detach").await;
    screen.send(b"echo fresh-$((4+4))\r").await;
    screen.wait_for("fresh-8").await;
    assert!(!screen.text().contains("Pane is dead"), "{}", screen.text());
    screen.send(&[0x1d, b'd']).await;
    screen.wait_for("detached from revive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_prefix_key_replaces_ctrl_bracket_in_the_pane_and_direct_attach() {
    let config = kiln::config::SshConfig {
        prefix_key: kiln::tui::prefix::PrefixKey::parse("C-a").unwrap(),
        ..support::ssh::test_ssh_config()
    };
    let server = Server::start_local_with(config).await;
    let alice = server.user("alice", "correct horse battery").await;
    let session = server.running_project(alice.id, "prefixed").await;

    // The pane says which key it is; Ctrl-] is just a key for the session now.
    let (_c, screen) = alices_dashboard(&server, "prefixed", 100, 30).await;
    screen.send(b"a").await;
    screen.wait_for("Ctrl-A d detach").await;
    assert!(!screen.text().contains("Ctrl-]"), "{}", screen.text());
    // (Ctrl-U then clears the line those two keys typed into the shell.)
    screen.send(&[0x1d, b'd', 0x15]).await;
    screen.send(b"echo still-$((20+22))-attached\r").await;
    screen.wait_for("still-42-attached").await;
    screen.send(&[0x01, b'd']).await;
    screen.wait_for("detached from prefixed").await;

    // Direct attach: Ctrl-] goes through, Ctrl-A detaches.
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let direct = c.exec_tty("attach prefixed", 100, 30).await;
    direct.send(&[0x1d, 0x15]).await;
    direct.send(b"echo direct-$((40+2))-still\r").await;
    direct.wait_for("direct-42-still").await;
    direct.send(&[0x01]).await;
    assert_eq!(direct.wait_closed().await, Some(0));
    assert!(tmux_has(&server, &session), "the session survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_reaches_a_program_that_asked_for_bracketed_paste_and_only_that_one() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    server.running_project(alice.id, "paste").await;
    let (_c, screen) = alices_dashboard(&server, "paste", 100, 30).await;
    screen.send(b"a").await;
    screen.wait_for("d detach").await;

    // A program that turned bracketed paste on sees the paste's markers
    // (cat -v shows ESC as ^[; the terminal's own echo is off).
    screen
        .send(b"stty -echo; printf '\\033[?2004h'; cat -v\r")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    screen.send(b"\x1b[200~pasted-one\x1b[201~\r").await;
    screen.wait_for("^[[200~pasted-one^[[201~").await;
    screen.send(&[0x03]).await;

    // One that did not gets the text alone, never the markers as garbage.
    screen.send(b"printf '\\033[?2004l'; cat -v\r").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    screen.send(b"\x1b[200~pasted-two\x1b[201~\r").await;
    screen.wait_for("pasted-two").await;
    let text = screen.text();
    let line = support::ssh::line_with(&text, "pasted-two").unwrap();
    assert!(!line.contains("200~"), "markers leaked: {line}\n{text}");
    screen.send(&[0x03]).await;
    screen.send(b"stty echo\r").await;
}
