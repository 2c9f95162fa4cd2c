//! Following a sandbox pod's log as `kubectl logs -f` does, but across pod
//! restarts: when the stream ends (the pod was replaced, the node went away)
//! the follower says so, waits for the pod, and picks up where it left off.

use std::time::Duration;

use async_trait::async_trait;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use tokio::sync::mpsc;

use super::cluster::{K8sCluster, classify, is_not_found};
use super::objects::{self, CONTAINER};
use crate::driver::{DriverResult, LogEvent, ResourceRef, SandboxLogs};

/// Splits `2024-01-01T00:00:00.123456789Z message` into its timestamp and
/// message; a line without one (an API server that ignores `timestamps`)
/// is all message.
pub fn split_timestamp(line: &str) -> (Option<&str>, &str) {
    match line.split_once(' ') {
        Some((ts, rest))
            if ts.len() >= 20
                && ts.ends_with('Z')
                && ts.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                && ts.as_bytes().get(10) == Some(&b'T') =>
        {
            (Some(ts), rest)
        }
        _ => (None, line),
    }
}

/// Whether a line with timestamp `ts` was already shown before a reconnect.
/// RFC 3339 timestamps in one format order as strings.
fn already_seen(ts: Option<&str>, last: Option<&str>) -> bool {
    matches!((ts, last), (Some(ts), Some(last)) if ts <= last)
}

const WAIT_FOR_POD: Duration = Duration::from_secs(3);
const RECONNECT: Duration = Duration::from_secs(2);

#[async_trait]
impl SandboxLogs for K8sCluster {
    async fn logs(
        &self,
        r: &ResourceRef,
        tail: Option<i64>,
        follow: bool,
    ) -> DriverResult<mpsc::Receiver<LogEvent>> {
        let r = self.scoped(r);
        let pod = objects::pod_name(&r);
        let pods = self.api::<Pod>();
        // The first read reports errors to the caller (forbidden, bad
        // namespace); later ones become notices while following.
        let what = format!("reading the log of pod {pod}");
        let first = match self.bounded(&what, pods.get_opt(&pod)).await {
            Ok(p) => p.is_some(),
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(classify(e, &what)),
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut present = first;
            loop {
                if !present {
                    if !follow {
                        let _ = tx
                            .send(LogEvent::Notice(format!(
                                "pod {pod} does not exist (is the sandbox running?)"
                            )))
                            .await;
                        return;
                    }
                    if tx
                        .send(LogEvent::Notice(format!("waiting for pod {pod}…")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(WAIT_FOR_POD).await;
                    present = matches!(pods.get_opt(&pod).await, Ok(Some(_)));
                    continue;
                }
                let lp = LogParams {
                    container: Some(CONTAINER.into()),
                    follow,
                    timestamps: true,
                    // After a reconnect, everything since the last line seen.
                    tail_lines: if last.is_some() { None } else { tail },
                    ..LogParams::default()
                };
                match pods.log_stream(&pod, &lp).await {
                    Ok(stream) => {
                        let mut lines = stream.lines();
                        // A read error ends this stream like its end does: reconnect.
                        while let Ok(Some(line)) = lines.try_next().await {
                            let (ts, message) = split_timestamp(&line);
                            if already_seen(ts, last.as_deref()) {
                                continue;
                            }
                            if let Some(ts) = ts {
                                last = Some(ts.to_string());
                            }
                            if tx.send(LogEvent::Line(message.to_string())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        if !follow {
                            let _ = tx
                                .send(LogEvent::Notice(format!("cannot read the log: {e}")))
                                .await;
                            return;
                        }
                    }
                }
                if !follow {
                    return;
                }
                if tx
                    .send(LogEvent::Notice("log stream ended; reconnecting…".into()))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(RECONNECT).await;
                present = matches!(pods.get_opt(&pod).await, Ok(Some(_)));
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_split_off_only_when_they_are_timestamps() {
        assert_eq!(
            split_timestamp("2026-11-24T10:00:00.123456789Z hello world"),
            (Some("2026-11-24T10:00:00.123456789Z"), "hello world")
        );
        assert_eq!(split_timestamp("hello world"), (None, "hello world"));
        assert_eq!(split_timestamp("2026 is a year"), (None, "2026 is a year"));
        assert_eq!(split_timestamp(""), (None, ""));
    }

    #[test]
    fn lines_up_to_the_last_seen_are_skipped_after_a_reconnect() {
        let last = Some("2026-11-24T10:00:01.000000000Z");
        assert!(already_seen(Some("2026-11-24T10:00:00.500000000Z"), last));
        assert!(already_seen(Some("2026-11-24T10:00:01.000000000Z"), last));
        assert!(!already_seen(Some("2026-11-24T10:00:01.000000001Z"), last));
        assert!(!already_seen(None, last));
        assert!(!already_seen(Some("2026-11-24T10:00:00Z"), None));
    }
}
