//! Issue 18 §1: a local sandbox is a boundary. Alice attaches to her
//! sandbox over SSH, as a person would, types probes at its shell and reads
//! the answers off her screen: Kiln's data directory and files, Bob's
//! sandbox (its directory, its env file, its tmux server), Kiln's process
//! and the host's other processes must all be out of reach.

use crate::support::ssh::{Server, connect};

/// Probes typed into the sandbox's shell. Each prints `ok:NAME` only if the
/// thing it tries succeeds; markers are split in the typed text (`o""k`) so
/// the echo of the command line never matches.
fn probes(data: &str, bob_dir: &str, bob_socket: &str, kiln_pid: u32) -> String {
    [
        format!("cat {data}/secret.key >/dev/null 2>&1 && echo o\"\"k:secret"),
        // The path down to its own directory exists inside (bwrap makes
        // the mount point), but holds nothing else.
        format!("ls -A {data} | grep -qv '^sandboxes$' && echo o\"\"k:datadir"),
        format!("ls -A {data}/sandboxes | grep -qv mine && echo o\"\"k:sandboxes"),
        format!("cat {bob_dir}/.kiln-env >/dev/null 2>&1 && echo o\"\"k:bobenv"),
        format!("ls {bob_dir} >/dev/null 2>&1 && echo o\"\"k:bobdir"),
        format!("tmux -S {bob_socket} ls >/dev/null 2>&1 && echo o\"\"k:bobtmux"),
        format!("cat /proc/{kiln_pid}/environ >/dev/null 2>&1 && echo o\"\"k:kilnenv"),
        // Only the sandbox's own processes: bwrap's init, tmux, the shell,
        // ps itself. The host runs hundreds.
        "[ $(ls -d /proc/[0-9]* | wc -l) -gt 20 ] && echo o\"\"k:hostprocs".into(),
        "[ $(id -u) = 0 ] && echo o\"\"k:root".into(),
        // Its own directory is writable, and it knows where it is.
        "touch mine && echo o\"\"k:ownwrite".into(),
        // It has a name (git, ssh and friends refuse a nameless uid), and
        // the host's accounts are not listed.
        "[ \"$(id -un)\" = sandbox ] && echo o\"\"k:named".into(),
        "grep -q postgres /etc/passwd && echo o\"\"k:hostaccounts".into(),
        // libutempter's setgid helper, which tmux would run at every pane.
        "find /usr/lib/*/utempter /usr/lib/utempter /usr/libexec/utempter -type f 2>/dev/null \
         | grep -q . \
         && echo o\"\"k:utempter"
            .into(),
        "echo pro\"\"bes-done".into(),
    ]
    .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_reaches_nothing_of_kiln_or_of_another_sandbox() {
    let server = Server::start_local().await;
    let data = server.local_dir.clone().expect("a local data dir");
    let local = server.local.as_ref().expect("the local driver");
    assert!(
        local.confinement().is_confined(),
        "bubblewrap must work on this host for this test (apt install bubblewrap): {}",
        local.confinement().describe()
    );
    // What Kiln keeps in its data directory.
    std::fs::write(data.join("secret.key"), "kiln-secret-key-material").unwrap();

    let alice = server.user("alice", "correct horse battery").await;
    let bob = server.user("bob", "another long password").await;
    server.running_project(alice.id, "mine").await;
    let bobs = server.running_project(bob.id, "theirs").await;
    let bob_dir = data.join("sandboxes").join(&bobs);
    let bob_socket = local.socket_path(&bobs);
    assert!(bob_dir.is_dir() && bob_socket.exists());

    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.exec_tty("attach mine", 200, 50).await;
    let line = probes(
        &data.display().to_string(),
        &bob_dir.display().to_string(),
        &bob_socket.display().to_string(),
        std::process::id(),
    );
    screen.send(format!("{line}\r").as_bytes()).await;
    let text = screen.wait_for("probes-done").await;

    assert!(
        text.contains("ok:ownwrite") && text.contains("ok:named"),
        "the sandbox can write its own directory and has a user name:\n{text}"
    );
    for leak in [
        "hostaccounts",
        "utempter",
        "secret",
        "datadir",
        "sandboxes",
        "bobenv",
        "bobdir",
        "bobtmux",
        "kilnenv",
        "hostprocs",
        "root",
    ] {
        assert!(
            !text.contains(&format!("ok:{leak}")),
            "alice's sandbox reached {leak}:\n{text}"
        );
    }
    assert!(!text.contains("kiln-secret-key-material"), "{text}");
    // What it wrote is hers, on the host, and not Kiln's user's.
    let mine = std::fs::read_dir(data.join("sandboxes"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("mine"))
        .find(|p| p.exists())
        .expect("the file alice's sandbox made");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&mine).unwrap());
    if nix::unistd::getuid().is_root() {
        assert_ne!(owner, 0, "a sandbox never runs as host root");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_by_the_sandbox_tmux_server_stay_inside_the_sandbox() {
    // Every process of the sandbox is a child of its confined tmux server:
    // a window, or a `run-shell` (from the prefix key's command prompt or
    // from `tmux` in the shell, the same server), sees no more than the
    // first shell does.
    let server = Server::start_local().await;
    let data = server.local_dir.clone().expect("a local data dir");
    std::fs::write(data.join("secret.key"), "kiln-secret-key-material").unwrap();
    let alice = server.user("alice", "correct horse battery").await;
    server.running_project(alice.id, "mine").await;

    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.exec_tty("attach mine", 120, 40).await;
    screen.send(b"echo first-shell-up\r").await;
    screen.wait_for("first-shell-up").await;
    let probe = format!(
        "tmux run-shell \"cat {}/secret.key || echo prompt-''denied\"\r",
        data.display()
    );
    screen.send(probe.as_bytes()).await;
    let text = screen.wait_for("prompt-denied").await;
    assert!(!text.contains("kiln-secret-key-material"), "{text}");
}

/// The host's first non-loopback address, if it has one.
fn host_address() -> Option<std::net::IpAddr> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_has_a_network_of_its_own_and_its_app_port_is_forwarded() {
    let server = Server::start_local().await;
    let local = server.local.as_ref().expect("the local driver");
    assert!(
        local.confinement().has_own_network(),
        "slirp4netns must work on this host for this test (apt install slirp4netns): {}",
        local.confinement().describe()
    );
    // A service on the host's loopback (as Kiln's database or another
    // sandbox's forwarded port would be), and one on its outside address.
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let loop_port = loopback.local_addr().unwrap().port();
    let outside = host_address().map(|ip| {
        let l = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        (ip, port, l)
    });

    let alice = server.user("alice", "correct horse battery").await;
    let sandbox = server.running_project(alice.id, "web").await;
    let mut c = connect(server.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.exec_tty("attach web", 200, 50).await;
    let reach = |host: &str, port: u16, name: &str| {
        format!(
            "bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null && echo re\"\"ach:{name} || \
             echo no\"\"reach:{name}"
        )
    };
    let mut probes = vec![
        reach("127.0.0.1", loop_port, "loopback"),
        reach("10.0.2.2", loop_port, "gateway"),
    ];
    if let Some((ip, port, _)) = &outside {
        probes.push(reach(&ip.to_string(), *port, "outside"));
    }
    probes.push("echo pro\"\"bes-done".into());
    screen
        .send(format!("{}\r", probes.join("; ")).as_bytes())
        .await;
    let text = screen.wait_for("probes-done").await;
    assert!(text.contains("noreach:loopback"), "{text}");
    assert!(text.contains("noreach:gateway"), "{text}");
    if outside.is_some() {
        assert!(
            text.contains("reach:outside") && !text.contains("noreach:outside"),
            "the sandbox reaches addresses beyond the host's loopback:\n{text}"
        );
    }

    // Its app, on port 3000 inside, is served on the host port Kiln chose.
    let port = local.app_port(&sandbox).expect("a forwarded port");
    screen
        .send(b"echo app-body > index.html; python3 -m http.server 3000\r")
        .await;
    screen.wait_for("Serving HTTP").await;
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
    .await
    .unwrap();
    assert!(body.contains("app-body"), "{body}");

    // The dashboard's detail screen says where it is.
    let mut d = connect(server.addr).await;
    assert!(d.password("alice", "correct horse battery").await);
    let dashboard = d.shell(160, 40).await;
    dashboard.wait_for("web").await;
    dashboard.send(b"\r").await;
    let shown = dashboard.wait_for(&format!("127.0.0.1:{port}")).await;
    assert!(
        shown.contains("port 3000 in the sandbox"),
        "the detail screen names the forwarded port:\n{shown}"
    );
    drop(loopback);
}
