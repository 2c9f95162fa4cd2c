//! Change notifications: one LISTEN connection per process, fanned out to
//! whoever subscribes (the reconcile loop, the consoles of a user).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::reconcile::backoff;

pub const CHANNEL: &str = "kiln";

/// What the trigger says about a changed row.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Change {
    pub table: String,
    pub op: String,
    pub id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
}

/// A notification this process sent to itself to see the feed work.
#[derive(Deserialize)]
struct Probe {
    probe: Uuid,
}

/// Probes sent and not back yet: when each left, and who waits for it.
type Pending = Arc<Mutex<HashMap<Uuid, (Instant, oneshot::Sender<Duration>)>>>;

/// The listener's wait before its first attempt to get its connection
/// back, doubling (with jitter, see `reconcile::backoff`) up to
/// [`RECONNECT_MAX`] while the database stays away.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// The process's change feed. Dropping it stops the listener.
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
    task: tokio::task::JoinHandle<()>,
    pending: Pending,
}

impl ChangeFeed {
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Sends a probe through Postgres (`pg_notify` on the feed's channel,
    /// committed at once) and waits for this listener to receive it: the
    /// time taken is the feed's lag from commit to delivery, recorded in
    /// `kiln_change_feed_lag_seconds`. An error says why the feed is not
    /// working (readiness reports it).
    pub async fn probe(&self, store: &Store, within: Duration) -> Result<Duration, String> {
        let id = Uuid::new_v4();
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("probe lock")
            .insert(id, (Instant::now(), tx));
        let payload = serde_json::json!({ "probe": id }).to_string();
        let result = tokio::time::timeout(within, async {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&payload)
                .execute(store.pool())
                .await
                .map_err(|e| format!("sending a probe notification failed: {e}"))?;
            rx.await
                .map_err(|_| "the change listener stopped".to_string())
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "a probe notification did not come back within {}s",
                within.as_secs_f64()
            ))
        });
        self.pending.lock().expect("probe lock").remove(&id);
        result
    }
}

/// A probe came back: hand its lag to whoever waits. Another replica's
/// probe (same channel, same database) is not ours to time.
fn probe_returned(pending: &Pending, payload: &str) {
    let Ok(Probe { probe }) = serde_json::from_str(payload) else {
        return;
    };
    if let Some((sent, tx)) = pending.lock().expect("probe lock").remove(&probe) {
        let lag = sent.elapsed();
        crate::ops::metrics::metrics()
            .change_feed_lag_seconds
            .observe(lag.as_secs_f64());
        let _ = tx.send(lag);
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Store {
    /// Starts the process's listener. Subscribers get every change; a lagging
    /// subscriber sees `RecvError::Lagged` and should refresh everything.
    /// The listener reconnects (and re-LISTENs) by itself after a lost connection.
    pub async fn listen(&self) -> StoreResult<ChangeFeed> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        // The task below reconnects by itself, waiting between attempts:
        // sqlx's eager reconnect retries at once and without end while the
        // server resets connections instead of refusing them (sqlx 0.9.1
        // reads an EOF at the SSL request as an I/O error, which it
        // retries): a task that spun and starved everything on its thread.
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        let (tx, _) = broadcast::channel(1024);
        let sender = tx.clone();
        let pending = Pending::default();
        let probes = pending.clone();
        let task = tokio::spawn(async move {
            // Everyone is told when the connection is lost, whichever way
            // sqlx reports it, again at each failed retry and once more
            // when it is back: what they show may be stale from the loss
            // on, and their refresh says whether the database is reachable.
            let everything = |op: &str| Change {
                table: "*".into(),
                op: op.into(),
                id: None,
                project_id: None,
                user_id: None,
            };
            // Attempts since the connection was last got back.
            let mut attempt = 0u32;
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) if n.payload().starts_with("{\"probe\"") => {
                        probe_returned(&probes, n.payload())
                    }
                    Ok(Some(n)) => match serde_json::from_str::<Change>(n.payload()) {
                        // No subscribers is fine: nobody is interested yet.
                        Ok(change) => {
                            let _ = sender.send(change);
                        }
                        Err(e) => tracing::warn!("ignoring a malformed notification: {e}"),
                    },
                    // The connection dropped (`None`), or getting it back
                    // failed: wait, then reconnect. The listener LISTENs
                    // again on the new connection by itself; a failure here
                    // leaves it to the next `try_recv` to drop a dead one.
                    lost => {
                        if let Err(e) = lost {
                            tracing::warn!("change listener failed: {e}");
                        }
                        let _ = sender.send(everything("LOST"));
                        attempt += 1;
                        let wait = backoff::delay(
                            attempt,
                            RECONNECT_FIRST,
                            RECONNECT_MAX,
                            backoff::unit_random(),
                        );
                        tokio::time::sleep(wait).await;
                        match sqlx::query("SELECT 1").execute(&mut listener).await {
                            Ok(_) => {
                                attempt = 0;
                                // Whatever changed meanwhile went unheard.
                                let _ = sender.send(everything("LOST"));
                            }
                            Err(e) => tracing::warn!("change listener: reconnecting failed: {e}"),
                        }
                    }
                }
            }
        });
        Ok(ChangeFeed {
            sender: tx,
            task,
            pending,
        })
    }
}
