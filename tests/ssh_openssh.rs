//! The console through the stock OpenSSH client, inside tmux, read back with
//! `tmux capture-pane` — exactly what a person sees.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use support::ssh::Server;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_logs_in_with_a_password_and_shows_the_dashboard() {
    if Command::new("ssh").arg("-V").output().is_err() {
        panic!("the OpenSSH client is required (apt install openssh-client)");
    }
    let server = Server::start().await;
    let alice = server.user("alice", "correct horse battery").await;
    server
        .store
        .create_project(alice.id, "Via OpenSSH", "", "alice")
        .await
        .unwrap();

    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let askpass = format!("/tmp/kiln-askpass-{id}.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho 'correct horse battery'\n").unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let t = Tmux {
        socket: format!("/tmp/kiln-ot-{id}.sock"),
    };
    let ssh = format!(
        "SSH_ASKPASS={askpass} SSH_ASKPASS_REQUIRE=force DISPLAY=:0 ssh -tt \
         -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
         -o PreferredAuthentications=password -p {} alice@127.0.0.1",
        server.addr.port()
    );
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "kiln",
        "-x",
        "100",
        "-y",
        "30",
        &ssh,
    ]);
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
    let _ = std::fs::remove_file(&askpass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_t_attaches_directly_and_the_prefix_detaches() {
    let server = Server::start_local().await;
    let alice = server.user("alice", "correct horse battery").await;
    server
        .store
        .create_project(alice.id, "Direct", "", "alice")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let session = loop {
        let p = server.store.find_project(alice.id, "direct").await.unwrap();
        let sb = p
            .resources
            .iter()
            .find(|r| r.kind == kiln::store::resources::ResourceKind::Sandbox)
            .unwrap();
        if sb.status == kiln::model::ResourceStatus::Running {
            break sb.resource_name.clone();
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let askpass = format!("/tmp/kiln-askpass-{id}.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho 'correct horse battery'\n").unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let t = Tmux {
        socket: format!("/tmp/kiln-ot-{id}.sock"),
    };
    // remain-on-exit keeps the pane, so ssh's exit can be read afterwards.
    let ssh = format!(
        "SSH_ASKPASS={askpass} SSH_ASKPASS_REQUIRE=force DISPLAY=:0 ssh -t \
         -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
         -o PreferredAuthentications=password -p {} alice@127.0.0.1 attach direct; \
         echo ssh-exit=$?; sleep 30",
        server.addr.port()
    );
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "kiln",
        "-x",
        "100",
        "-y",
        "30",
        &ssh,
    ]);
    wait_screen(&t, "a prompt in the session", |s| {
        s.contains('#') || s.contains('$')
    })
    .await;
    t.run(&[
        "send-keys",
        "-t",
        "kiln",
        "echo direct-$((6*7))-attach",
        "Enter",
    ]);
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
    let alive = Command::new("tmux")
        .arg("-S")
        .arg(local.socket_path())
        .args(["has-session", "-t", &format!("={session}")])
        .status()
        .unwrap()
        .success();
    assert!(alive, "the session survives");
    let _ = std::fs::remove_file(&askpass);
}
