//! `kiln hook`: the command Claude Code runs for each of its hooks inside a
//! sandbox. It hands the event to Kiln and returns: Claude Code waits for
//! it, so it is small, bounded in time (about half a second at worst), and
//! always exits 0 and prints nothing, whether Kiln is reachable or not (a
//! failing hook must never break or block Claude).
//!
//! Two ways to Kiln: `--socket PATH`, the local sandbox's own socket; or,
//! without it, HTTP to `KILN_HOOK_URL` with the sandbox's token in
//! `KILN_HOOK_TOKEN` (a Kubernetes sandbox; both come from its pod spec).
//!
//! Only the fields Kiln reads are sent (event, notification type, message),
//! so a `PreToolUse` carrying a large tool input costs nothing; Kiln checks
//! them again on arrival, since a sandbox may send anything.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::model::hook_token::{HOOK_TOKEN_VAR, HOOK_URL_VAR};
use crate::model::webhook::{WebhookUrl, parse_url};

/// The whole hook, reading stdin included, gives up after this.
const DEADLINE: Duration = Duration::from_millis(500);

/// The most stdin read (Claude's payloads are far smaller; a tool input
/// may not be).
const MAX_STDIN: u64 = 8 * 1024 * 1024;

/// The longest message forwarded (Kiln cuts it further).
const MAX_MESSAGE: usize = 2000;

/// Where the report goes.
enum Target {
    Socket(PathBuf),
    Http { url: WebhookUrl, token: String },
}

impl Target {
    /// The socket if given, else the HTTP endpoint from the environment;
    /// `None` (report nothing) when neither is set or the URL is not plain
    /// HTTP.
    fn choose(socket: Option<&Path>) -> Option<Target> {
        if let Some(s) = socket {
            return Some(Target::Socket(s.to_owned()));
        }
        let url = parse_url(&std::env::var(HOOK_URL_VAR).ok()?).ok()?;
        let token = std::env::var(HOOK_TOKEN_VAR).ok()?;
        // Written into a header line: anything but visible ASCII is refused.
        if url.https || token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        Some(Target::Http { url, token })
    }
}

/// Runs the hook; never fails. `exited`: instead of a hook's JSON on
/// stdin, report that the session's program exited (tmux's `pane-died`).
pub fn run(socket: Option<&Path>, exited: bool) {
    let Some(target) = Target::choose(socket) else {
        return;
    };
    let session = clean_session(&std::env::var("KILN_SESSION").unwrap_or_default());
    let (done_tx, done_rx) = mpsc::channel();
    // On a thread, so the deadline holds even if stdin never closes, the
    // socket's backlog is full (a blocking connect would wait) or a name
    // takes long to resolve.
    std::thread::spawn(move || {
        let mut input = Vec::new();
        if exited {
            input = exited_event();
        } else {
            let _ = std::io::stdin().take(MAX_STDIN).read_to_end(&mut input);
        }
        if let Some(payload) = payload(&input) {
            let _ = match &target {
                Target::Socket(path) => send(path, &socket_report(&session, &payload)),
                Target::Http { url, token } => post(url, token, &session, &payload),
            };
        }
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(DEADLINE);
}

/// The payload Kiln's own `pane-died` hook sends for the session.
fn exited_event() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "hook_event_name": crate::model::agent::PROGRAM_EXITED
    }))
    .expect("a JSON object serialises")
}

/// At most 40 characters, none of them control characters (it goes into a
/// line of its own, or a header).
fn clean_session(session: &str) -> String {
    session
        .chars()
        .take(40)
        .filter(|c| !c.is_control())
        .collect()
}

/// The compact payload, or `None` for input that is not a hook's JSON object.
fn payload(input: &[u8]) -> Option<Vec<u8>> {
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
    serde_json::to_vec(&out).ok()
}

/// `session\n{compact payload}`, as the socket takes it.
fn socket_report(session: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{session}\n").into_bytes();
    bytes.extend_from_slice(payload);
    bytes
}

fn send(socket: &Path, report: &[u8]) -> std::io::Result<()> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_write_timeout(Some(DEADLINE))?;
    stream.write_all(report)?;
    stream.shutdown(std::net::Shutdown::Write)
}

/// The HTTP request, by hand: one POST on a fresh connection, no TLS (Kiln's
/// in-cluster listener), nothing read back but the status line.
fn http_request(url: &WebhookUrl, token: &str, session: &str, body: &[u8]) -> Vec<u8> {
    let host = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        body.len()
    );
    if !session.is_empty() {
        head.push_str(&format!(
            "{}: {session}\r\n",
            crate::ops::hooks::SESSION_HEADER
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn post(url: &WebhookUrl, token: &str, session: &str, body: &[u8]) -> std::io::Result<()> {
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the hook URL's host has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE)?;
    stream.set_write_timeout(Some(DEADLINE))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.write_all(&http_request(url, token, session, body))?;
    // Wait for the answer's first bytes: closing before Kiln has read the
    // request could reset it.
    let mut status = [0u8; 12];
    let _ = stream.read(&mut status)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_kiln_reads_are_sent() {
        let input = br#"{"session_id":"x","cwd":"/w","hook_event_name":"Notification",
            "notification_type":"permission_prompt","message":"May I?","tool_input":{"big":"..."}}"#;
        let r = socket_report("s1", &payload(input).unwrap());
        assert_eq!(
            String::from_utf8(r).unwrap(),
            r#"s1
{"hook_event_name":"Notification","message":"May I?","notification_type":"permission_prompt"}"#
        );
        assert_eq!(payload(b"not json"), None);
        assert_eq!(payload(br#"{"no":"event"}"#), None);
        assert_eq!(
            String::from_utf8(payload(&exited_event()).unwrap()).unwrap(),
            "{\"hook_event_name\":\"KilnProgramExited\"}"
        );
        assert_eq!(clean_session("s1\r\nX-Evil: 1"), "s1X-Evil: 1");
    }

    #[test]
    fn the_http_request_carries_the_token_and_session_in_headers() {
        let url = parse_url("http://kiln.kiln.svc:9090/hooks/v1/event").unwrap();
        let req = String::from_utf8(http_request(&url, "sb.abc", "s1", b"{}")).unwrap();
        assert_eq!(
            req,
            "POST /hooks/v1/event HTTP/1.1\r\nHost: kiln.kiln.svc:9090\r\n\
             Authorization: Bearer sb.abc\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\nx-kiln-session: s1\r\n\r\n{}"
        );
    }

    #[test]
    fn an_unreachable_kiln_is_not_an_error_the_hook_shows() {
        // No socket: the send fails and `run` returns all the same.
        assert!(send(Path::new("/nonexistent/hook.sock"), b"\n{}").is_err());
    }
}
