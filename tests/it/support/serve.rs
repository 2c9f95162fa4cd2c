//! `kiln serve` as a real process (its own data dir, SSH and HTTP ports,
//! stderr kept for assertions), a plain HTTP client for its operator
//! listener, and a TCP proxy a test can cut to make Postgres unreachable
//! without touching the shared server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// A free loopback port (bound, then released for the child to take).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub struct Serve {
    pub child: Child,
    pub ssh: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub replica: String,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `kiln serve` on `database_url` with `config` (TOML) and
    /// `env`, and waits until its SSH port accepts.
    pub async fn start(
        database_url: &str,
        replica: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Serve {
        let ssh = free_addr();
        let http = free_addr();
        let data_dir = std::env::temp_dir().join(format!(
            "ko-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&data_dir).unwrap();
        std::fs::write(data_dir.join("kiln.toml"), without_pool(config)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .arg("--ssh-listen")
            .arg(ssh.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("KILN_SECRET_KEY", crate::support::ssh::TEST_SECRET_KEY)
            .env("KILN_REPLICA_ID", replica)
            .env("KILN_LOG", "warn")
            .env_remove("KILN_LOG_FORMAT")
            .env_remove("KILN_SERVER_CLUSTER")
            .env("NO_COLOR", "1")
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start kiln serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut serve = Serve {
            child,
            ssh,
            http,
            data_dir,
            replica: replica.to_string(),
            stderr,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(ssh).await.is_err() {
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("kiln serve exited ({status}): {}", serve.stderr());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kiln serve never listened: {}",
                serve.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve
    }

    /// What the process wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `GET path` on the operator listener: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        get(self.http, path).await
    }

    pub fn sigterm(&self) {
        let pid = self.child.id().expect("still running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Waits for the process to exit (bounded, so a hang fails the test).
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "kiln serve did not exit within {limit:?}: {}",
                self.stderr()
            ),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Gone before its sandboxes are ended, so it starts no other.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Sandboxes (pooled ones too) outlive the server by design; a test
        // must not leave any running once its data directory is gone.
        if let Ok(sandboxes) = kiln::local::LocalSandboxes::new(&self.data_dir, Some("sh".into())) {
            sandboxes.kill_all_servers();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// One HTTP/1.1 GET through hyper's client: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("http://{addr}{path}").parse().unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .expect("the HTTP listener answers within 30 s")
        .expect("an HTTP answer");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A TCP proxy to `upstream` whose link can be cut (every connection
/// closed, new ones refused at once) and restored.
pub struct Proxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !*rx.borrow() {
                    drop(client);
                    continue;
                }
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { addr, up, task }
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` with its host and port replaced by `addr`.
pub fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}/{path}", userinfo.unwrap_or_default())
}

/// `config` with the warm pools off unless it sets `[pool]`: a pool would
/// make databases on the shared test server that outlive the test's own
/// database, and sandboxes that outlive the process (the pool tests keep
/// theirs and end them).
pub fn without_pool(config: &str) -> String {
    if config.contains("[pool]") {
        config.to_string()
    } else {
        format!("{config}\n[pool]\ndatabases = 0\nsandboxes = 0\n")
    }
}
