//! A confined sandbox's network (issue 18 §1): a network namespace of its
//! own, connected to the outside by slirp4netns (user-mode networking) with
//! `--disable-host-loopback`, so it reaches the internet but neither the
//! host's loopback services (Kiln's database, other sandboxes' forwarded
//! ports) nor another sandbox. The port its app serves ([`APP_PORT`]) is
//! forwarded from a host port Kiln allocates on 127.0.0.1, so two tenants
//! can both run a dev server on 3000.
//!
//! slirp4netns lives exactly as long as the sandbox: its `--exit-fd` is the
//! read end of a pipe whose write end only bubblewrap holds (`--sync-fd`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The port a sandbox's app listens on inside, forwarded from the host.
pub const APP_PORT: u16 = 3000;

/// The resolver slirp4netns answers on inside the namespace.
const SLIRP_DNS: &str = "10.0.2.3";

/// How long slirp4netns may take to set the namespace up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// What `/etc/resolv.conf` says inside a sandbox with its own network.
pub(crate) fn resolv_conf() -> String {
    format!("# Written by Kiln: the sandbox's own network.\nnameserver {SLIRP_DNS}\n")
}

/// Lets a child process inherit `fds` (created close-on-exec, so no other
/// child of Kiln ever gets them). Runs between fork and exec.
pub(crate) fn inherit_fds(cmd: &mut tokio::process::Command, fds: Vec<RawFd>) {
    // SAFETY: only fcntl, which is async-signal-safe, runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The pid (in Kiln's PID namespace) of the sandbox's first process, read
/// from bubblewrap's `--info-fd` (`{"child-pid": N, …}`).
pub(crate) async fn read_child_pid(mut info: std::io::PipeReader) -> Result<u32, String> {
    let text = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        // bwrap writes the object once the namespaces exist, then closes.
        info.read_to_string(&mut text).map(|_| text)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading bubblewrap's info: {e}"))?;
    parse_child_pid(&text).ok_or_else(|| format!("bubblewrap reported no child pid ({text:?})"))
}

fn parse_child_pid(text: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    v.get("child-pid")?.as_u64()?.try_into().ok()
}

/// Where Kiln keeps a sandbox's network control files: outside the
/// sandbox's view (its API socket could open host ports).
#[derive(Debug, Clone)]
pub(crate) struct NetworkPaths {
    /// `{data}/run/{name}.net/`, owned by the sandbox user.
    pub(crate) dir: PathBuf,
    /// `{data}/run/{name}.port`: the forwarded host port, Kiln's own.
    pub(crate) port_file: PathBuf,
}

/// Connects the sandbox whose first process is `child_pid` to the outside
/// and forwards [`APP_PORT`]. `exit` is the read end of the lifetime pipe.
///
/// slirp4netns runs as Kiln's own user: it must open `/dev/net/tun`, which
/// many hosts keep 0600 root. It pivots into an empty root, drops its
/// capabilities and filters its system calls (`--enable-sandbox`,
/// `--enable-seccomp`) before it handles the sandbox's packets.
pub(crate) async fn connect(
    slirp: &Path,
    child_pid: u32,
    exit: std::io::PipeReader,
    paths: &NetworkPaths,
) -> Result<u16, String> {
    let api = paths.dir.join("slirp.sock");
    let _ = std::fs::remove_file(&api);
    // bubblewrap makes the network namespace in a user namespace of its
    // own and runs the sandbox in a nested one; slirp4netns must join the
    // one that owns the network namespace: the parent of the sandbox's.
    let owner = owning_user_namespace(child_pid)?;
    let (ready_r, ready_w) = std::io::pipe().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(slirp);
    cmd.arg("--configure")
        .arg("--mtu=65520")
        .arg("--disable-host-loopback")
        .arg("--enable-sandbox")
        .arg("--enable-seccomp")
        .arg(format!("--userns-path=/proc/self/fd/{}", owner.as_raw_fd()))
        .arg(format!("--exit-fd={}", exit.as_raw_fd()))
        .arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
        .arg("--api-socket")
        .arg(&api)
        .arg(child_pid.to_string())
        .arg("tap0")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    inherit_fds(
        &mut cmd,
        vec![exit.as_raw_fd(), ready_w.as_raw_fd(), owner.as_raw_fd()],
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", slirp.display()))?;
    drop((exit, ready_w, owner));
    // Reaped whenever it ends (with the sandbox).
    let waited = tokio::task::spawn_blocking(move || {
        let mut ready_r = ready_r;
        let mut byte = [0u8; 1];
        ready_r.read(&mut byte)
    });
    match tokio::time::timeout(READY_TIMEOUT, waited).await {
        Ok(Ok(Ok(1))) => {}
        _ => {
            let _ = child.start_kill();
            return Err(format!(
                "{} did not set up the sandbox's network",
                slirp.display()
            ));
        }
    }
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let port = forward_app_port(&api).await?;
    std::fs::write(&paths.port_file, port.to_string())
        .map_err(|e| format!("cannot write {}: {e}", paths.port_file.display()))?;
    Ok(port)
}

/// The user namespace that owns the network namespace of process `pid`:
/// the parent of its own (`NS_GET_PARENT`).
fn owning_user_namespace(pid: u32) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::fd::FromRawFd;
    /// `_IO(0xb7, 0x2)` from `linux/nsfs.h`.
    const NS_GET_PARENT: nix::libc::c_ulong = 0xb702;
    let path = format!("/proc/{pid}/ns/user");
    let ns = std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    // SAFETY: a plain ioctl on a descriptor we own; it returns a new
    // descriptor (close-on-exec) or -1.
    let parent = unsafe { nix::libc::ioctl(ns.as_raw_fd(), NS_GET_PARENT as _) };
    if parent < 0 {
        return Err(format!(
            "cannot find the owner of {path}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `parent` is a fresh descriptor nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(parent) })
}

/// Whether slirp4netns, run as Kiln's user, can make a tap device here.
pub(crate) fn tun_usable() -> bool {
    nix::unistd::access(
        "/dev/net/tun",
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    )
    .is_ok()
}

/// Asks slirp4netns (over its API socket) to forward a free host port on
/// 127.0.0.1 to [`APP_PORT`] inside.
async fn forward_app_port(api: &Path) -> Result<u16, String> {
    let api = api.to_owned();
    tokio::task::spawn_blocking(move || {
        // A port free now; slirp4netns binds it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let request = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": "tcp",
                "host_addr": "127.0.0.1",
                "host_port": port,
                "guest_port": APP_PORT,
            }
        });
        let mut stream = std::os::unix::net::UnixStream::connect(&api)
            .map_err(|e| format!("cannot reach slirp4netns at {}: {e}", api.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.to_string().as_bytes())
            .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
            .map_err(|e| format!("slirp4netns API: {e}"))?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .map_err(|e| format!("slirp4netns API: {e}"))?;
        if reply.contains("\"error\"") {
            return Err(format!(
                "slirp4netns refused to forward port {port}: {}",
                crate::model::naming::printable(&reply, 200)
            ));
        }
        Ok(port)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The host port forwarded to a running sandbox's [`APP_PORT`], if any.
pub(crate) fn forwarded_port(port_file: &Path) -> Option<u16> {
    std::fs::read_to_string(port_file).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_pid_comes_from_bubblewraps_info() {
        assert_eq!(
            parse_child_pid("{\n    \"child-pid\": 4242,\n    \"net-namespace\": 1\n}\n"),
            Some(4242)
        );
        for bad in [
            "",
            "{}",
            "{\"child-pid\": -1}",
            "{\"child-pid\": \"7\"}",
            "nope",
        ] {
            assert_eq!(parse_child_pid(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_sandbox_resolves_names_through_slirp() {
        assert!(resolv_conf().contains("nameserver 10.0.2.3\n"));
    }
}
