//! The anchor: OpenSSH's sshd on a loopback port plus a tmux session
//! equivalent to Kiln's, and the pace of that tmux server with no viewer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::cpu::{ms_per_mib, process_cpu};

/// sshd on a loopback port plus a tmux session equivalent to Kiln's.
pub(super) struct Anchor {
    pub(super) sshd: tokio::process::Child,
    pub(super) addr: std::net::SocketAddr,
    pub(super) socket: PathBuf,
}

impl Anchor {
    pub(super) async fn start(
        work: &Path,
        tmux_conf: &Path,
        public_key: &str,
    ) -> anyhow::Result<Anchor> {
        let socket = work.join("anchor.sock");
        let ok = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(tmux_conf)
            .args([
                "new-session",
                "-d",
                "-s",
                "bench",
                "-x",
                "100",
                "-y",
                "30",
                "sh",
            ])
            .status()?
            .success();
        if !ok {
            bail!("cannot start the anchor's tmux session");
        }
        let host_key = work.join("host_ed25519");
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", "ed25519", "-f"])
            .arg(&host_key)
            .status()
            .context("ssh-keygen")?;
        std::fs::write(work.join("authorized_keys"), format!("{public_key}\n"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = work.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nPidFile {}\n",
                host_key.display(),
                work.join("authorized_keys").display(),
                work.join("sshd.pid").display()
            ),
        )?;
        std::fs::create_dir_all("/run/sshd")?;
        let sshd = tokio::process::Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting sshd")?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let t = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("sshd did not start listening on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Anchor { sshd, addr, socket })
    }
}

impl Anchor {
    /// `cat` of the payload in the anchor's session with no client attached:
    /// the pace of the tmux server itself, which every path shares. The
    /// shell signals the end through `tmux wait-for`.
    pub(super) async fn throughput_alone(
        &self,
        payload: &Path,
        bytes: f64,
        round: usize,
        tmux_pid: u32,
    ) -> anyhow::Result<(f64, f64)> {
        let channel = format!("kiln-bench-{round}");
        let tmux = |args: Vec<String>| {
            let socket = self.socket.clone();
            async move {
                let out = tokio::process::Command::new("tmux")
                    .arg("-S")
                    .arg(&socket)
                    .args(&args)
                    .stdin(Stdio::null())
                    .output()
                    .await?;
                if !out.status.success() {
                    bail!(
                        "tmux {}: {}",
                        args[0],
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Ok(())
            }
        };
        let line = format!(
            "cat {}; tmux -S {} wait-for -S {channel}",
            payload.display(),
            self.socket.display()
        );
        let cpu_before = [process_cpu(tmux_pid)];
        let t = Instant::now();
        // C-u first: nothing left on the command line may change the command.
        tmux(vec![
            "send-keys".into(),
            "-t".into(),
            "=bench:".into(),
            "C-u".into(),
            line,
            "Enter".into(),
        ])
        .await?;
        tokio::time::timeout(
            Duration::from_secs(600),
            tmux(vec!["wait-for".into(), channel]),
        )
        .await
        .context("the cat did not finish within 600 s")??;
        let elapsed = t.elapsed().as_secs_f64();
        let [tmux_ms] = ms_per_mib(cpu_before, [process_cpu(tmux_pid)], bytes);
        Ok((bytes / elapsed, tmux_ms))
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}
