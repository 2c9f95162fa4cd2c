//! The console through the stock OpenSSH client, inside tmux, read back with
//! `tmux capture-pane` — exactly what a person sees.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::support::ssh::Server;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Types `line` and Enter into the window.
    fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "kiln", line, "Enter"]);
    }
    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "kiln"])
    }
    fn alive(&self) -> bool {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["has-session", "-t", "kiln"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn wait_screen(t: &Tmux, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let screen = t.capture();
        if pred(&screen) {
            return screen;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; the pane shows:\n{screen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the shell prompt of an attached session.
async fn wait_prompt(t: &Tmux) {
    wait_screen(t, "a prompt in the session", |s| {
        s.contains('#') || s.contains('$')
    })
    .await;
}

const PASSWORD: &str = "correct horse battery";

/// An askpass script that answers [`PASSWORD`], so ssh logs in unattended;
/// removed on drop.
struct Askpass(String);

impl Askpass {
    fn new(id: &str) -> Askpass {
        let path = format!("/tmp/kiln-askpass-{id}.sh");
        std::fs::write(&path, format!("#!/bin/sh\necho '{PASSWORD}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        Askpass(path)
    }

    /// An `ssh` command line as alice, with `flags` and a remote `command`.
    fn ssh(&self, server: &Server, flags: &str, command: &str) -> String {
        format!(
            "SSH_ASKPASS={} SSH_ASKPASS_REQUIRE=force DISPLAY=:0 ssh {flags} \
             -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
             -o PreferredAuthentications=password -p {} alice@127.0.0.1 {command}",
            self.0,
            server.addr.port()
        )
    }
}

impl Drop for Askpass {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A tmux server of the test's own, running `command` in a 100x30 window.
fn tmux_running(id: &str, command: &str) -> Tmux {
    let t = Tmux {
        socket: format!("/tmp/kiln-ot-{id}.sock"),
    };
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "kiln",
        "-x",
        "100",
        "-y",
        "30",
        command,
    ]);
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_logs_in_with_a_password_and_shows_the_dashboard() {
    if Command::new("ssh").arg("-V").output().is_err() {
        panic!("the OpenSSH client is required (apt install openssh-client)");
    }
    let server = Server::start().await;
    let alice = server.user("alice", PASSWORD).await;
    server
        .store
        .create_project(alice.id, "Via OpenSSH", "", "alice")
        .await
        .unwrap();

    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let askpass = Askpass::new(id);
    let t = tmux_running(id, &askpass.ssh(&server, "-tt", ""));
    let screen = wait_screen(&t, "the project RUNNING", |s| {
        s.lines()
            .any(|l| l.contains("Via OpenSSH") && l.contains("RUNNING"))
    })
    .await;
    assert!(screen.contains("alice"), "{screen}");
    assert_eq!(
        t.run(&["display", "-p", "-t", "kiln", "#{alternate_on}"])
            .trim(),
        "1"
    );

    // q ends the session: ssh exits and the pane with it.
    t.run(&["send-keys", "-t", "kiln", "q"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while t.alive() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ssh did not exit:\n{}",
            t.capture()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_t_attaches_directly_and_the_prefix_detaches() {
    let server = Server::start_local().await;
    let alice = server.user("alice", PASSWORD).await;
    let session = server.running_project(alice.id, "Direct").await;

    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let askpass = Askpass::new(id);
    // The shell stays after ssh, so ssh's exit can be read afterwards.
    let ssh = askpass.ssh(&server, "-t", "attach direct; echo ssh-exit=$?; sleep 30");
    let t = tmux_running(id, &ssh);
    wait_prompt(&t).await;
    t.type_line("echo direct-$((6*7))-attach");
    wait_screen(&t, "the command's output", |s| {
        s.contains("direct-42-attach")
    })
    .await;
    t.run(&["send-keys", "-t", "kiln", "C-]"]);
    let screen = wait_screen(&t, "ssh to exit after detaching", |s| {
        s.contains("ssh-exit=")
    })
    .await;
    assert!(screen.contains("detached from direct"), "{screen}");
    assert!(screen.contains("ssh-exit=0"), "{screen}");
    let local = server.local.as_ref().unwrap();
    let alive = local
        .tmux_command(session.split("--").next().unwrap_or(&session))
        .args(["has-session", "-t", &format!("={session}")])
        .status()
        .unwrap()
        .success();
    assert!(alive, "the session survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_attach_draws_for_the_clients_terminal_type() {
    let server = Server::start_local().await;
    let alice = server.user("alice", PASSWORD).await;
    server.running_project(alice.id, "Term").await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let askpass = Askpass::new(id);
    // A type this machine knows is the client's; an unknown one (tmux
    // would refuse it) falls back to what the dashboard's pane emulates.
    for (term, drawn_for) in [
        ("screen-256color", "screen-256color"),
        ("kiln-no-such-terminal", "xterm-256color"),
    ] {
        let ssh = askpass.ssh(&server, "-t", "attach term");
        let t = tmux_running(&format!("{id}-{term}"), &format!("TERM={term} {ssh}"));
        wait_prompt(&t).await;
        // tmux names the terminal it draws for; the typed line does not
        // contain the answer, only the output does.
        t.type_line("tmux display -p 'drawn-for-#{client_termname}-end'");
        let want = format!("drawn-for-{drawn_for}-end");
        wait_screen(&t, &want, |s| s.contains(&want)).await;
    }
}
