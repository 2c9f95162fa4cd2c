//! A real git server on loopback (`git daemon` on a free port) serving bare
//! repositories the test fills, and git run on the host to look into a
//! sandbox's working tree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct GitServer {
    pub addr: SocketAddr,
    base: PathBuf,
    daemon: std::process::Child,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Runs git on the host (any owner's tree: the sandbox's files belong to
/// its user), panicking with git's output when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "safe.directory=*",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl GitServer {
    /// Serves `{base}/*.git` on a free loopback port; returns once it
    /// accepts connections.
    pub async fn start() -> GitServer {
        let base = PathBuf::from(format!(
            "/tmp/kg-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&base).unwrap();
        let addr = super::serve::free_addr();
        // git-daemon itself, not `git daemon`: killing `git` would leave
        // the daemon it runs behind, listening.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let daemon = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--informative-errors")
            .arg(format!("--base-path={}", base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={}", addr.port()))
            .arg(&base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start git daemon");
        let server = GitServer { addr, base, daemon };
        super::eventually("git daemon to listen", Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        server
    }

    /// A repository `name.git` (see [`make_repository`]); its URL.
    pub fn repository(&self, name: &str) -> String {
        make_repository(&self.base, name);
        self.url(name)
    }

    /// The `git://` URL of `name.git` (which need not exist).
    pub fn url(&self, name: &str) -> String {
        format!("git://{}/{name}.git", self.addr)
    }
}

/// Creates a bare repository `{base}/name.git` whose default branch `main` holds
/// `README.md`, with a branch `feature` one commit ahead (`feature.txt`).
pub fn make_repository(base: &Path, name: &str) {
    let bare = base.join(format!("{name}.git"));
    let work = base.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "hello from main\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(work.join("feature.txt"), "on feature\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "feature"]);
    git(&work, &["checkout", "-q", "main"]);
    git(
        base,
        &[
            "clone",
            "-q",
            "--bare",
            &work.to_string_lossy(),
            &bare.to_string_lossy(),
        ],
    );
}
