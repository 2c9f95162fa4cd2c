//! Liveness and readiness. A replica is ready when the database answers,
//! its schema is current, its change feed delivers, its SSH listener
//! accepts, and it is not shutting down; each check says why when it
//! fails. Deciding from the results is pure ([`verdict`], [`migrations`]);
//! running the checks is I/O, each bounded by a timeout so a hanging
//! database makes readiness fail, not hang.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::store::notify::ChangeFeed;

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One check's name and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub result: Result<(), String>,
}

/// The HTTP status and plain-text body for a set of checks: 200 when all
/// pass, else 503; one line per check either way.
pub fn verdict(checks: &[Check]) -> (u16, String) {
    let mut body = String::new();
    for c in checks {
        match &c.result {
            Ok(()) => body.push_str(&format!("ok {}\n", c.name)),
            Err(why) => body.push_str(&format!("fail {}: {}\n", c.name, one_line(why))),
        }
    }
    let status = if checks.iter().all(|c| c.result.is_ok()) {
        200
    } else {
        503
    };
    (status, body)
}

/// A reason on one line (a driver's message may hold newlines).
fn one_line(why: &str) -> String {
    why.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether the schema suits this binary. A database ahead of it is fine (a
/// newer replica of a rolling upgrade migrated it; migrations only add);
/// one behind it is not.
pub fn migrations(applied: Option<i64>, expected: i64) -> Result<(), String> {
    match applied {
        None => Err("no migration has been applied".into()),
        Some(v) if v < expected => Err(format!(
            "the database is at migration {v}, this binary needs {expected}"
        )),
        Some(_) => Ok(()),
    }
}

/// What readiness looks at.
pub struct Health {
    pub store: Store,
    pub feed: Arc<ChangeFeed>,
    /// Where the SSH listener accepts (a wildcard address is probed on loopback).
    pub ssh: SocketAddr,
    /// Cancelled on SIGTERM: a replica going away is not ready for new users.
    pub shutdown: CancellationToken,
}

impl Health {
    /// Runs every check at once.
    pub async fn checks(&self) -> Vec<Check> {
        let (database, schema, feed, ssh) = tokio::join!(
            bounded(async {
                sqlx::query("SELECT 1")
                    .execute(self.store.pool())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
            bounded(async {
                let (applied, expected) = self
                    .store
                    .migration_versions()
                    .await
                    .map_err(|e| e.to_string())?;
                migrations(applied, expected)
            }),
            async {
                self.feed
                    .probe(&self.store, CHECK_TIMEOUT)
                    .await
                    .map(|_| ())
            },
            bounded(ssh_answers(self.ssh)),
        );
        let serving = if self.shutdown.is_cancelled() {
            Err("shutting down".to_string())
        } else {
            Ok(())
        };
        vec![
            Check {
                name: "database",
                result: database,
            },
            Check {
                name: "migrations",
                result: schema,
            },
            Check {
                name: "change_feed",
                result: feed,
            },
            Check {
                name: "ssh",
                result: ssh,
            },
            Check {
                name: "serving",
                result: serving,
            },
        ]
    }

    /// Refreshes the gauges read at scrape time; a database that does not
    /// answer leaves their last values (readiness reports the database).
    pub async fn refresh_gauges(&self) {
        let m = super::metrics::metrics();
        // The leases held are counted by the loop itself as it leases.
        let depth = tokio::time::timeout(CHECK_TIMEOUT, self.store.queue_depth()).await;
        if let Ok(Ok(n)) = depth {
            m.reconcile_queue_depth.set(n);
        }
    }
}

async fn bounded(check: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs_f64())))
}

/// The SSH listener accepts and speaks SSH (its version banner).
async fn ssh_answers(mut addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let mut banner = [0u8; 8];
    socket
        .read_exact(&mut banner)
        .await
        .map_err(|e| format!("reading the banner from {addr}: {e}"))?;
    if &banner == b"SSH-2.0-" {
        Ok(())
    } else {
        Err(format!("{addr} does not answer with an SSH banner"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &'static str, result: Result<(), &str>) -> Check {
        Check {
            name,
            result: result.map_err(str::to_string),
        }
    }

    #[test]
    fn ready_only_when_every_check_passes_with_one_line_each() {
        let (status, body) = verdict(&[check("database", Ok(())), check("ssh", Ok(()))]);
        assert_eq!((status, body.as_str()), (200, "ok database\nok ssh\n"));
        let (status, body) = verdict(&[
            check("database", Err("connection refused\n(os error 111)")),
            check("ssh", Ok(())),
        ]);
        assert_eq!(status, 503);
        assert_eq!(
            body,
            "fail database: connection refused (os error 111)\nok ssh\n"
        );
    }

    #[test]
    fn a_schema_behind_the_binary_is_not_ready_one_ahead_is() {
        assert!(migrations(Some(7), 7).is_ok());
        assert!(migrations(Some(8), 7).is_ok());
        let e = migrations(Some(4), 7).unwrap_err();
        assert!(e.contains("at migration 4") && e.contains("needs 7"), "{e}");
        assert!(migrations(None, 7).is_err());
    }
}
