//! `kiln hook --socket PATH`: the command Claude Code runs for each of its
//! hooks inside a sandbox. It hands the event to Kiln and returns: Claude
//! Code waits for it, so it is small, bounded in time (about half a second
//! at worst), and always exits 0 and prints nothing, whether Kiln is
//! reachable or not (a failing hook must never break or block Claude).
//!
//! Only the fields Kiln reads are sent (event, notification type, message),
//! so a `PreToolUse` carrying a large tool input costs nothing; Kiln checks
//! them again on arrival, since a sandbox may send anything.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// The whole hook, reading stdin included, gives up after this.
const DEADLINE: Duration = Duration::from_millis(500);

/// The most stdin read (Claude's payloads are far smaller; a tool input
/// may not be).
const MAX_STDIN: u64 = 8 * 1024 * 1024;

/// The longest message forwarded (Kiln cuts it further).
const MAX_MESSAGE: usize = 2000;

/// Runs the hook; never fails.
pub fn run(socket: &Path) {
    let socket: PathBuf = socket.to_owned();
    let session = std::env::var("KILN_SESSION").unwrap_or_default();
    let (done_tx, done_rx) = mpsc::channel();
    // On a thread, so the deadline holds even if stdin never closes or the
    // socket's backlog is full (a blocking connect would wait).
    std::thread::spawn(move || {
        let mut input = Vec::new();
        let _ = std::io::stdin().take(MAX_STDIN).read_to_end(&mut input);
        if let Some(report) = report(&session, &input) {
            let _ = send(&socket, &report);
        }
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(DEADLINE);
}

/// `session\n{compact payload}`, or `None` for input that is not a hook's
/// JSON object.
fn report(session: &str, input: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(input).ok()?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str());
    let mut out = serde_json::Map::new();
    out.insert(
        "hook_event_name".into(),
        field("hook_event_name")?.to_owned().into(),
    );
    if let Some(t) = field("notification_type") {
        out.insert("notification_type".into(), t.to_owned().into());
    }
    if let Some(m) = field("message") {
        out.insert(
            "message".into(),
            m.chars().take(MAX_MESSAGE).collect::<String>().into(),
        );
    }
    let session: String = session.chars().take(40).filter(|c| *c != '\n').collect();
    let mut bytes = format!("{session}\n").into_bytes();
    bytes.extend(serde_json::to_vec(&out).ok()?);
    Some(bytes)
}

fn send(socket: &Path, report: &[u8]) -> std::io::Result<()> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_write_timeout(Some(DEADLINE))?;
    stream.write_all(report)?;
    stream.shutdown(std::net::Shutdown::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_kiln_reads_are_sent() {
        let input = br#"{"session_id":"x","cwd":"/w","hook_event_name":"Notification",
            "notification_type":"permission_prompt","message":"May I?","tool_input":{"big":"..."}}"#;
        let r = report("s1", input).unwrap();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            r#"s1
{"hook_event_name":"Notification","message":"May I?","notification_type":"permission_prompt"}"#
        );
        assert_eq!(report("", b"not json"), None);
        assert_eq!(report("", br#"{"no":"event"}"#), None);
    }

    #[test]
    fn an_unreachable_kiln_is_not_an_error_the_hook_shows() {
        // No socket: the send fails and `run` returns all the same.
        assert!(send(Path::new("/nonexistent/hook.sock"), b"\n{}").is_err());
    }
}
