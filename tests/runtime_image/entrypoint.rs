//! The entrypoint and tmux config run for real against the local tmux: the
//! config loads cleanly, the entrypoint starts `main`, supervises it,
//! restarts it, is idempotent, and stops the server on SIGTERM.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use crate::sandbox::{Sandbox, process_gone, signal};
use crate::{runtime_dir, which};

#[test]
fn tmux_conf_loads_cleanly_and_sets_the_embedding_options() {
    let sandbox = Sandbox::new("conf");
    let conf = runtime_dir().join("tmux.conf");
    let conf = conf.to_str().expect("utf-8 path");
    let t = &sandbox.tmux;
    t.ok(&["-f", conf, "new-session", "-d", "-s", "probe", "sh"]);
    // Sourcing again reports every error of the file, which at server start
    // would only show in the first pane.
    let out = t.run(&["source-file", conf]);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "runtime/tmux.conf has errors: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (scope, name, want) in [
        ("-g", "status", "off"),
        ("-g", "history-limit", "50000"),
        ("-g", "default-terminal", "tmux-256color"),
        ("-s", "escape-time", "0"),
        ("-g", "window-size", "latest"),
        ("-gw", "aggressive-resize", "on"),
        ("-s", "set-clipboard", "off"),
        ("-s", "focus-events", "on"),
        ("-g", "mouse", "off"),
        ("-g", "prefix", "None"),
        ("-g", "prefix2", "None"),
        ("-gw", "remain-on-exit", "on"),
        ("-s", "exit-empty", "off"),
        ("-g", "update-environment", ""),
    ] {
        assert_eq!(t.option(scope, name), want, "tmux option {name}");
    }
    let features = t.option("-s", "terminal-features");
    assert!(
        features.lines().any(|l| l.contains(":RGB")),
        "terminal-features does not enable RGB: {features}"
    );
    // Kiln's client prefix is C-]: tmux must not take it.
    let root_keys = t.ok(&["list-keys", "-T", "root"]);
    assert!(
        !root_keys.contains("C-]"),
        "tmux binds C-] in the root table, Kiln's own prefix:\n{root_keys}"
    );
}

const SESSION_COMMAND: &str = r#"printf '%s %s\n' "$$" "$PWD" >> "$KILN_TEST_DIR/runs"; env > "$KILN_TEST_DIR/env"; echo kiln-test-marker; exec sleep 100000"#;

#[test]
fn entrypoint_starts_supervises_and_stops_the_main_session() {
    let mut sandbox = Sandbox::new("sup");
    let pod_env = [
        ("KILN_SESSION_COMMAND", SESSION_COMMAND),
        ("PROJECT_NAME", "blog"),
        ("DATABASE_URL", "postgres://blog@db/blog"),
        ("ANTHROPIC_AUTH_TOKEN", "tok-123"),
        ("ANTHROPIC_BASE_URL", "http://gateway:8080"),
        ("USER_DEFINED_VAR", "user value"),
        ("COLORTERM", "truecolor"),
    ];
    sandbox.start(&pod_env);
    let t = &sandbox.tmux;

    // The session appears and runs the command, in HOME.
    sandbox.wait_for("the main session", || t.has_main().then_some(()));
    let runs = sandbox.wait_for("the session command to run", || {
        let lines = sandbox.lines_of("runs");
        (!lines.is_empty()).then_some(lines)
    });
    let (first_pid, cwd) = runs[0].split_once(' ').expect("`pid cwd` line");
    let home = sandbox.home().canonicalize().expect("home");
    assert_eq!(
        Path::new(cwd).canonicalize().expect("cwd"),
        home,
        "main must start in HOME"
    );
    sandbox.wait_for("the marker on the pane", || {
        sandbox
            .capture_main()
            .contains("kiln-test-marker")
            .then_some(())
    });

    // The container's environment reaches the session.
    let env = sandbox.wait_for("the env dump", || {
        let lines = sandbox.lines_of("env");
        lines
            .iter()
            .any(|l| l.starts_with("USER_DEFINED_VAR="))
            .then_some(lines)
    });
    for (k, v) in &pod_env[1..] {
        assert!(
            env.contains(&format!("{k}={v}")),
            "{k}={v} did not reach the session; its environment:\n{}",
            env.join("\n")
        );
    }
    assert!(
        env.contains(&"TERM=tmux-256color".to_string()),
        "panes should see TERM=tmux-256color"
    );

    // The server runs with tmux.conf.
    assert_eq!(t.option("-g", "status"), "off");
    assert_eq!(t.option("-g", "history-limit"), "50000");
    assert_eq!(t.option("-gw", "remain-on-exit"), "on");
    let server_pid: i32 = t
        .ok(&["list-sessions", "-F", "#{pid}"])
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("the server's pid");

    // The program exits: the pane is respawned with the same command.
    let first_pid: i32 = first_pid.parse().expect("pid");
    assert_eq!(t.main_panes(), [(false, first_pid)]);
    signal(first_pid, nix::sys::signal::Signal::SIGTERM);
    let second_pid = sandbox.wait_for("main's program to be restarted", || {
        let runs = sandbox.lines_of("runs");
        let panes = t.main_panes();
        match (runs.len(), panes.as_slice()) {
            (2, [(false, pid)]) if *pid != first_pid => Some(*pid),
            _ => None,
        }
    });
    sandbox.wait_for("the marker after the restart", || {
        sandbox
            .capture_main()
            .contains("kiln-test-marker")
            .then_some(())
    });

    // Ensuring again, twice, does not create another session or restart it.
    for _ in 0..2 {
        let out = sandbox.ensure(&pod_env);
        assert!(
            out.status.success(),
            "entrypoint.sh ensure failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sessions = t.ok(&["list-sessions", "-F", "#{session_name}"]);
    assert_eq!(sessions.lines().collect::<Vec<_>>(), ["main"]);
    assert_eq!(t.main_panes(), [(false, second_pid)]);
    assert_eq!(sandbox.lines_of("runs").len(), 2, "ensure restarted main");

    // A session made the way the server makes them sees the same
    // environment, stays dead when its program ends (not supervised), and
    // `respawn-pane -k` restarts it.
    t.ok(&[
        "new-session",
        "-d",
        "-s",
        "work",
        r#"echo "$PROJECT_NAME" >> "$KILN_TEST_DIR/work"; exec sleep 100000"#,
    ]);
    sandbox.wait_for("the work session's program", || {
        (sandbox.lines_of("work") == ["blog"]).then_some(())
    });
    let work_pid: i32 = t
        .ok(&["list-panes", "-t", "=work:", "-F", "#{pane_pid}"])
        .trim()
        .parse()
        .expect("work pane pid");
    signal(work_pid, nix::sys::signal::Signal::SIGTERM);
    sandbox.wait_for("the work pane to be dead", || {
        (t.ok(&["list-panes", "-t", "=work:", "-F", "#{pane_dead}"])
            .trim()
            == "1")
            .then_some(())
    });
    sleep(Duration::from_secs(3)); // several supervision rounds
    assert_eq!(
        t.ok(&["list-panes", "-t", "=work:", "-F", "#{pane_dead}"])
            .trim(),
        "1",
        "the entrypoint must only respawn main"
    );
    t.ok(&["respawn-pane", "-k", "-t", "=work:"]);
    sandbox.wait_for("the work session's program to restart", || {
        (sandbox.lines_of("work").len() == 2).then_some(())
    });

    // The whole main session is killed: it is recreated.
    t.ok(&["kill-session", "-t", "=main"]);
    sandbox.wait_for("main to be recreated", || {
        (sandbox.lines_of("runs").len() == 3 && t.has_main()).then_some(())
    });

    // SIGTERM: the entrypoint kills the tmux server and exits 0.
    let entrypoint_pid = sandbox.child.as_ref().expect("running").id() as i32;
    signal(entrypoint_pid, nix::sys::signal::Signal::SIGTERM);
    let status = sandbox.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "the entrypoint should exit 0 on SIGTERM ({status}); log:\n{}",
        sandbox.log()
    );
    sandbox.wait_for("the tmux server to be gone", || {
        (!sandbox.tmux.server_running() && process_gone(server_pid)).then_some(())
    });
    let log = sandbox.log();
    assert!(
        log.contains("stopping"),
        "the entrypoint should say it is stopping; log:\n{log}"
    );
}

#[test]
fn entrypoint_without_arguments_does_not_die_when_the_program_fails_to_start() {
    // A command that exits at once, every time: the container must stay up
    // and keep retrying rather than exit.
    let mut sandbox = Sandbox::new("fail");
    sandbox.start(&[(
        "KILN_SESSION_COMMAND",
        r#"echo x >> "$KILN_TEST_DIR/runs"; exit 3"#,
    )]);
    sandbox.wait_for("several restarts", || {
        (sandbox.lines_of("runs").len() >= 3).then_some(())
    });
    let child = sandbox.child.as_mut().expect("running");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the entrypoint exited although only the session's program failed; log:\n{}",
        sandbox.log()
    );
    assert!(
        sandbox.tmux.has_main(),
        "main should still exist (dead or respawned)"
    );
    let pid = child.id() as i32;
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(sandbox.wait_exit().code(), Some(0));
    sandbox.wait_for("the tmux server to be gone", || {
        (!sandbox.tmux.server_running()).then_some(())
    });
}

/// A PATH holding only `tmux` (and, if asked, a fake `claude`), so whether
/// `claude` is found does not depend on this machine.
fn private_path(sandbox: &Sandbox, with_claude: bool) -> PathBuf {
    let bin = sandbox.file("bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    let tmux = which("tmux").expect("tmux on PATH");
    std::os::unix::fs::symlink(tmux, bin.join("tmux")).expect("symlink tmux");
    if with_claude {
        let claude = bin.join("claude");
        let mut f = File::create(&claude).expect("create fake claude");
        // Only builtins: PATH has nothing else.
        f.write_all(
            b"#!/bin/sh\necho \"$PWD\" > \"$KILN_TEST_DIR/claude-ran\"\necho kiln-fake-claude\n\
              while :; do read -r _ || exit 0; done\n",
        )
        .expect("write fake claude");
        fs::set_permissions(&claude, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

#[test]
fn default_session_command_is_claude() {
    let sandbox = Sandbox::new("claude");
    let bin = private_path(&sandbox, true);
    let bin = bin.to_str().expect("utf-8 path");
    let out = sandbox.ensure(&[("PATH", bin)]);
    assert!(
        out.status.success(),
        "entrypoint.sh ensure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sandbox.tmux.has_main());
    let ran = sandbox.wait_for("the fake claude to run", || {
        sandbox.lines_of("claude-ran").first().cloned()
    });
    assert_eq!(
        Path::new(&ran).canonicalize().expect("cwd"),
        sandbox.home().canonicalize().expect("home")
    );
    sandbox.wait_for("claude's output on the pane", || {
        sandbox
            .capture_main()
            .contains("kiln-fake-claude")
            .then_some(())
    });
}

#[test]
fn without_claude_the_session_falls_back_to_a_login_shell() {
    let sandbox = Sandbox::new("noclaude");
    let bin = private_path(&sandbox, false);
    let bin = bin.to_str().expect("utf-8 path");
    let out = sandbox.ensure(&[("PATH", bin)]);
    assert!(
        out.status.success(),
        "entrypoint.sh ensure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sandbox.wait_for("the fallback message", || {
        sandbox
            .capture_main()
            .contains("claude is not installed")
            .then_some(())
    });
    // The shell is still there waiting for input, not exited.
    sleep(Duration::from_millis(500));
    let panes = sandbox.tmux.main_panes();
    assert!(
        matches!(panes.as_slice(), [(false, _)]),
        "the fallback shell should be running: {panes:?}"
    );
}

/// Runs `entrypoint.sh claim` with `stdin`; its exit code and stderr.
fn claim(sandbox: &Sandbox, env: &[(&str, &str)], stdin: &str) -> (Option<i32>, String) {
    let mut child = sandbox
        .entrypoint(env)
        .arg("claim")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run entrypoint.sh claim");
    // A claim it refuses at once (not a pooled sandbox) exits without
    // reading: its stdin may be closed before this write, which is no error.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ready(sandbox: &Sandbox, env: &[(&str, &str)]) -> bool {
    sandbox
        .entrypoint(env)
        .arg("ready")
        .status()
        .expect("run entrypoint.sh ready")
        .success()
}

/// A pooled sandbox (issue 23): the entrypoint keeps a tmux server with no
/// session (ready, as its readiness probe says) until Kiln's claim brings
/// the project's environment on stdin, written by Kiln's own
/// `claim_env_script`; `main` then starts with it, every later session
/// sees it, and a restarted pod comes back with it. A second claim
/// replaces the environment for new sessions without restarting `main`;
/// what is not a claim file changes nothing.
#[test]
fn a_pooled_sandbox_waits_for_its_claim_and_keeps_the_claimed_environment() {
    use kiln::k8s::pool_objects::claim_env_script;
    let mut sandbox = Sandbox::new("pool");
    let pod_env = [
        ("KILN_SESSION_COMMAND", SESSION_COMMAND),
        ("KILN_POOLED", "1"),
    ];
    sandbox.start(&pod_env);
    let t = &sandbox.tmux;
    sandbox.wait_for("the pooled server to answer", || {
        ready(&sandbox, &pod_env).then_some(())
    });
    sleep(Duration::from_secs(2)); // several supervision rounds
    assert!(
        !t.has_main(),
        "a pooled sandbox must not start main unclaimed"
    );
    assert!(sandbox.lines_of("runs").is_empty());

    let env = |pairs: &[(&str, &str)]| -> String {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        claim_env_script(&owned).unwrap()
    };
    let first = env(&[
        ("PROJECT_NAME", "blog"),
        ("DATABASE_URL", "postgres://u:it's $x@db/blog"),
        ("MULTI", "one\ntwo"),
    ]);
    let (code, err) = claim(&sandbox, &pod_env, &first);
    assert_eq!(code, Some(0), "claim failed: {err}");
    assert!(t.has_main(), "the claim starts main");
    assert!(ready(&sandbox, &pod_env));
    let dumped = sandbox.wait_for("main's environment", || {
        let lines = sandbox.lines_of("env");
        lines
            .iter()
            .any(|l| l.starts_with("MULTI="))
            .then_some(lines)
    });
    for want in [
        "PROJECT_NAME=blog",
        "DATABASE_URL=postgres://u:it's $x@db/blog",
        "MULTI=one",
    ] {
        assert!(dumped.iter().any(|l| l == want), "{want} in {dumped:?}");
    }
    let file = sandbox.home().join(".kiln-claim.env");
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the claim file is the sandbox user's alone");
    // A session made later, as Kiln makes them, sees it too.
    t.ok(&[
        "new-session",
        "-d",
        "-s",
        "work",
        r#"echo "$PROJECT_NAME $DATABASE_URL" >> "$KILN_TEST_DIR/work"; exec sleep 100000"#,
    ]);
    sandbox.wait_for("the work session's program", || {
        (sandbox.lines_of("work") == ["blog postgres://u:it's $x@db/blog"]).then_some(())
    });

    // Not a claim file: refused, nothing changed.
    let (code, _) = claim(&sandbox, &pod_env, "export PROJECT_NAME=evil\n");
    assert_eq!(code, Some(2));
    assert_eq!(fs::read_to_string(&file).unwrap(), first);

    // The environment changes: new sessions get the new one, main runs on.
    let second = env(&[("PROJECT_NAME", "blog"), ("DATABASE_URL", "postgres://new")]);
    let (code, err) = claim(&sandbox, &pod_env, &second);
    assert_eq!(code, Some(0), "second claim failed: {err}");
    assert_eq!(sandbox.lines_of("runs").len(), 1, "main was restarted");
    let global = t.ok(&["show-environment", "-g"]);
    assert!(global.contains("DATABASE_URL=postgres://new"), "{global}");
    assert!(!global.contains("MULTI="), "a removed key stays: {global}");

    // The pod restarts: main comes back with the claimed environment.
    let entrypoint_pid = sandbox.child.as_ref().expect("running").id() as i32;
    signal(entrypoint_pid, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(sandbox.wait_exit().code(), Some(0));
    sandbox.wait_for("the server to stop", || {
        (!sandbox.tmux.server_running()).then_some(())
    });
    fs::remove_file(sandbox.file("env")).unwrap();
    sandbox.start(&pod_env);
    let dumped = sandbox.wait_for("main after the restart", || {
        let lines = sandbox.lines_of("env");
        lines
            .iter()
            .any(|l| l.starts_with("DATABASE_URL="))
            .then_some(lines)
    });
    assert!(
        dumped.iter().any(|l| l == "DATABASE_URL=postgres://new"),
        "{dumped:?}"
    );
    assert_eq!(sandbox.lines_of("runs").len(), 2);

    // A sandbox that was never pooled refuses a claim.
    let plain = Sandbox::new("plain");
    let (code, _) = claim(&plain, &[], &second);
    assert_eq!(code, Some(2));
}
