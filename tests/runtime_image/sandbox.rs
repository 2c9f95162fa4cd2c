//! The harness of the entrypoint tests: a scratch directory, a tmux socket
//! private to one test, and the entrypoint process, all cleaned up on drop.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{runtime_dir, which};

/// How long to wait for something that should happen within a second or two.
/// Generous: the machine may be busy with parallel builds.
const PATIENCE: Duration = Duration::from_secs(20);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Short: the tmux socket lives inside and must fit sun_path.
        let path = std::env::temp_dir().join(format!("krt-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A tmux socket private to one test (its own TMUX_TMPDIR and name); the
/// server on it is killed on drop, also when the test fails.
pub struct TmuxSocket {
    tmpdir: PathBuf,
    name: String,
}

impl TmuxSocket {
    pub fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env("TMUX_TMPDIR", &self.tmpdir)
            .env_remove("TMUX")
            .arg("-L")
            .arg(&self.name)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux (is it installed?): {e}"))
    }

    /// Runs a tmux command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux -L {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn has_main(&self) -> bool {
        self.run(&["has-session", "-t", "=main"]).status.success()
    }

    pub fn server_running(&self) -> bool {
        self.run(&["list-sessions"]).status.success()
    }

    pub fn option(&self, scope: &str, name: &str) -> String {
        self.ok(&["show-options", scope, "-v", name])
            .trim()
            .to_string()
    }

    /// (pane_dead, pane_pid) of every pane of `main`.
    pub fn main_panes(&self) -> Vec<(bool, i32)> {
        let out = self.run(&[
            "list-panes",
            "-s",
            "-t",
            "=main",
            "-F",
            "#{pane_dead} #{pane_pid}",
        ]);
        if !out.status.success() {
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (dead, pid) = l.split_once(' ')?;
                Some((dead == "1", pid.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for TmuxSocket {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Everything one entrypoint test needs: a temporary HOME, a private tmux
/// socket, and the entrypoint process (killed on drop if still running).
pub struct Sandbox {
    pub child: Option<Child>,
    pub tmux: TmuxSocket,
    dir: TempDir,
}

impl Sandbox {
    pub fn new(tag: &str) -> Self {
        assert!(
            which("tmux").is_some(),
            "tmux is not installed; these tests run the entrypoint against it"
        );
        let dir = TempDir::new(tag);
        fs::create_dir_all(dir.path().join("home")).expect("mkdir home");
        fs::create_dir_all(dir.path().join("tmux")).expect("mkdir tmux");
        let tmux = TmuxSocket {
            tmpdir: dir.path().join("tmux"),
            name: format!("kiln-{tag}"),
        };
        Self {
            child: None,
            tmux,
            dir,
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The entrypoint with the test's environment: a clean env plus what a
    /// pod would set, pointed at this sandbox's socket, config and HOME.
    pub fn entrypoint(&self, extra_env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(runtime_dir().join("entrypoint.sh"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("SHELL", "/bin/sh")
            .env("LANG", "C.UTF-8")
            // As the image sets it; panes must still get tmux-256color.
            .env("TERM", "xterm-256color")
            .env("TMUX_TMPDIR", &self.tmux.tmpdir)
            .env("KILN_TMUX_SOCKET", &self.tmux.name)
            .env("KILN_TMUX_CONF", runtime_dir().join("tmux.conf"))
            .env("KILN_SUPERVISE_INTERVAL", "1")
            .env("KILN_TEST_DIR", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.file("entrypoint.log")).unwrap_or_default()
    }

    /// Starts the supervising entrypoint, logging its stderr to a file.
    pub fn start(&mut self, extra_env: &[(&str, &str)]) {
        let log = File::create(self.file("entrypoint.log")).expect("create log");
        let child = self
            .entrypoint(extra_env)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run runtime/entrypoint.sh: {e}"));
        self.child = Some(child);
    }

    /// Runs `entrypoint.sh ensure` to completion.
    pub fn ensure(&self, extra_env: &[(&str, &str)]) -> Output {
        self.entrypoint(extra_env)
            .arg("ensure")
            .output()
            .expect("run entrypoint.sh ensure")
    }

    pub fn lines_of(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.file(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn capture_main(&self) -> String {
        let out = self.tmux.run(&["capture-pane", "-p", "-t", "=main:"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `check` until it returns Some, failing after PATIENCE with the
    /// entrypoint's log.
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out after {PATIENCE:?} waiting for {what}\nentrypoint log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the entrypoint was started");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the entrypoint did not exit within {PATIENCE:?} of SIGTERM\nlog:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Then `tmux` (kill-server) and `dir` are dropped, in that order.
    }
}

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet).
pub fn process_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}
