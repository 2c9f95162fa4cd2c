//! The channel Claude Code's hooks report through, one per local sandbox:
//! a Unix socket in the sandbox's run directory (`/run/kiln/hook.sock`
//! inside), which Kiln listens on. The socket *is* the sandbox's identity:
//! each sandbox sees only its own run directory, so whatever arrives on a
//! sandbox's socket is about that sandbox, whatever it claims.
//!
//! The listener only carries bytes: a report is handed on as it came
//! (bounded in size, time and number) to whoever consumes the sink, which
//! validates it (see `model::agent`). The driver never touches the
//! database.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc};

use super::confine::SandboxUser;
use crate::model::agent::MAX_PAYLOAD;

/// The socket's file name in the run directory.
pub const SOCKET: &str = "hook.sock";

/// How long one report may take to arrive (the hook sends it at once).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports of one sandbox read at once; more connections wait in the
/// socket's backlog (a flood from one sandbox costs only its own reports).
const CONCURRENT_READS: usize = 8;

/// The session line (the name, or empty) precedes the payload.
const MAX_SESSION_LINE: usize = 64;

/// One report as it arrived on a sandbox's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    /// The sandbox whose socket it came through.
    pub resource: String,
    /// The session name it gave (untrusted; empty: the default session).
    pub session: String,
    /// The hook's payload (untrusted).
    pub payload: Vec<u8>,
}

/// The listeners of every sandbox of this driver.
#[derive(Debug, Clone)]
pub struct HookListeners {
    sink: mpsc::Sender<HookReport>,
    tasks: Arc<Mutex<HashMap<String, tokio::task::AbortHandle>>>,
}

impl HookListeners {
    /// Listeners whose reports go to `sink` (dropped when it is full:
    /// a hook never waits on Kiln).
    pub fn new(sink: mpsc::Sender<HookReport>) -> Self {
        HookListeners {
            sink,
            tasks: Arc::default(),
        }
    }

    /// Listens on sandbox `name`'s socket `socket` unless already listening.
    /// The socket is the sandbox user's (0600): only its sandbox connects.
    pub(crate) fn ensure(
        &self,
        name: &str,
        socket: &Path,
        owner: Option<SandboxUser>,
    ) -> std::io::Result<()> {
        let mut tasks = self.tasks.lock().expect("hook listeners lock");
        if let Some(task) = tasks.get(name)
            && !task.is_finished()
            && socket.exists()
        {
            return Ok(());
        }
        if let Some(task) = tasks.remove(name) {
            task.abort();
        }
        // A socket left by an earlier Kiln (or removed by the sandbox).
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
            if let Some(u) = owner {
                std::os::unix::fs::chown(socket, Some(u.uid), Some(u.gid))?;
            }
        }
        let resource = name.to_owned();
        let sink = self.sink.clone();
        let task = tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(CONCURRENT_READS));
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let Ok((stream, _)) = listener.accept().await else {
                    // The socket is gone or broken: the next `ensure` binds anew.
                    return;
                };
                let (resource, sink) = (resource.clone(), sink.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Some(report) = read_report(stream, resource).await
                        && sink.try_send(report).is_err()
                    {
                        tracing::debug!("agent hook report dropped: Kiln is behind");
                    }
                });
            }
        });
        tasks.insert(name.to_owned(), task.abort_handle());
        Ok(())
    }

    /// Stops listening for sandbox `name` (it stopped or was deleted).
    pub(crate) fn stop(&self, name: &str, socket: &Path) {
        if let Some(task) = self.tasks.lock().expect("hook listeners lock").remove(name) {
            task.abort();
        }
        let _ = std::fs::remove_file(socket);
    }
}

/// Reads one report (the session line, then the payload up to EOF),
/// within [`READ_TIMEOUT`]; `None` when it is too large, too slow or cut.
async fn read_report(stream: tokio::net::UnixStream, resource: String) -> Option<HookReport> {
    let limit = (MAX_PAYLOAD + MAX_SESSION_LINE + 1) as u64;
    let mut bytes = Vec::new();
    let read =
        tokio::time::timeout(READ_TIMEOUT, stream.take(limit + 1).read_to_end(&mut bytes)).await;
    if !matches!(read, Ok(Ok(_))) || bytes.len() as u64 > limit {
        return None;
    }
    split_report(&bytes, resource)
}

/// `session\npayload` into a report; `None` without a session line.
fn split_report(bytes: &[u8], resource: String) -> Option<HookReport> {
    let nl = bytes
        .iter()
        .take(MAX_SESSION_LINE + 1)
        .position(|&b| b == b'\n')?;
    let session = std::str::from_utf8(&bytes[..nl]).ok()?.to_owned();
    Some(HookReport {
        resource,
        session,
        payload: bytes[nl + 1..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_a_session_line_then_the_payload() {
        let r = split_report(b"s1\n{\"a\":1}", "sb".into()).unwrap();
        assert_eq!(r.session, "s1");
        assert_eq!(r.payload, b"{\"a\":1}");
        assert_eq!(split_report(b"\n{}", "sb".into()).unwrap().session, "");
        assert_eq!(split_report(b"no newline", "sb".into()), None);
        let long = [vec![b'a'; 100], b"\n{}".to_vec()].concat();
        assert_eq!(split_report(&long, "sb".into()), None);
    }
}
