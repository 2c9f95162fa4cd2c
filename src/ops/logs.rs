//! Logs an operator can ship: with `KILN_LOG_FORMAT=json`, one JSON object
//! per line (tracing's JSON formatter), each carrying the replica id and,
//! inside a console action or a reconcile of one row, the span's user and
//! project ids.
//!
//! The replica id is known only once the config is loaded, after the
//! subscriber is installed, so it is added by the writer: the formatter
//! hands each event's whole line to one `write`, and the writer puts
//! `"replica":…` first in the object.

use std::io::Write;
use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter;

static REPLICA: OnceLock<String> = OnceLock::new();
static JSON: OnceLock<bool> = OnceLock::new();

/// Records that logs are JSON (set once by `main`), so that [`notice`]
/// writes JSON too.
pub fn set_json(json: bool) {
    let _ = JSON.set(json);
}

/// A message for the operator whatever the log filter (startup lines,
/// shutdown): `kiln: …` on stderr, or with JSON logs one JSON object of
/// the formatter's shape, so that every line a log shipper reads parses.
pub fn notice(message: &str) {
    if JSON.get().copied().unwrap_or(false) {
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "INFO",
            "fields": { "message": message },
            "target": "kiln",
        });
        let _ = LineWriter.write_all(format!("{line}\n").as_bytes());
    } else {
        eprintln!("kiln: {message}");
    }
}

/// Names this process's replica on every later JSON line.
pub fn set_replica(id: &str) {
    let _ = REPLICA.set(id.to_string());
}

/// Whether `KILN_LOG_FORMAT` asks for JSON; anything but `json` or `text`
/// (or unset) is refused at start.
pub fn json_requested(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::trim) {
        None | Some("") | Some("text") => Ok(false),
        Some("json") => Ok(true),
        Some(other) => Err(format!(
            "KILN_LOG_FORMAT = {other:?}: expected \"json\" or \"text\""
        )),
    }
}

/// `line` (one JSON object) with the replica id as its first field.
pub fn with_replica(line: &[u8], replica: &str) -> Vec<u8> {
    match line.strip_prefix(b"{") {
        Some(rest) => {
            let mut out = Vec::with_capacity(line.len() + replica.len() + 16);
            out.extend_from_slice(b"{\"replica\":");
            out.extend_from_slice(
                serde_json::to_string(replica)
                    .expect("a string serializes")
                    .as_bytes(),
            );
            if rest.first() != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(rest);
            out
        }
        None => line.to_vec(),
    }
}

/// Standard error, with the replica id put into each line.
pub struct ReplicaStderr;

impl<'a> MakeWriter<'a> for ReplicaStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter
    }
}

pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        match REPLICA.get() {
            Some(id) => err.write_all(&with_replica(buf, id))?,
            None => err.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_id_is_the_first_field_of_each_line() {
        let line = br#"{"timestamp":"t","level":"INFO","fields":{"message":"hi"}}
"#;
        let out = with_replica(line, "kiln-0 \"a\"");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["replica"], "kiln-0 \"a\"");
        assert_eq!(v["fields"]["message"], "hi");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&with_replica(b"{}", "r")).unwrap()["replica"],
            "r"
        );
        assert_eq!(with_replica(b"not json", "r"), b"not json");
    }

    #[test]
    fn the_log_format_is_json_or_text() {
        assert_eq!(json_requested(None), Ok(false));
        assert_eq!(json_requested(Some("text")), Ok(false));
        assert_eq!(json_requested(Some("json")), Ok(true));
        assert!(
            json_requested(Some("yaml"))
                .unwrap_err()
                .contains("KILN_LOG_FORMAT")
        );
    }
}
