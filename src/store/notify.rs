//! Change notifications: one LISTEN connection per process, fanned out to
//! whoever subscribes (the reconcile loop, the consoles of a user).

use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Store, StoreResult};

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

/// The process's change feed. Dropping it stops the listener.
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
    task: tokio::task::JoinHandle<()>,
}

impl ChangeFeed {
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
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
        listener.listen(CHANNEL).await?;
        let (tx, _) = broadcast::channel(1024);
        let sender = tx.clone();
        let task = tokio::spawn(async move {
            // Everyone is told when the connection is lost, whichever way
            // sqlx reports it (and again at each failed retry): what they
            // show may be stale from then on, and their refresh says whether
            // the database is reachable.
            let everything = |op: &str| Change {
                table: "*".into(),
                op: op.into(),
                id: None,
                project_id: None,
                user_id: None,
            };
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => match serde_json::from_str::<Change>(n.payload()) {
                        // No subscribers is fine: nobody is interested yet.
                        Ok(change) => {
                            let _ = sender.send(change);
                        }
                        Err(e) => tracing::warn!("ignoring a malformed notification: {e}"),
                    },
                    // The connection dropped; the next call reconnects.
                    // Anything may change meanwhile: everyone refreshes.
                    Ok(None) => {
                        let _ = sender.send(everything("LOST"));
                    }
                    Err(e) => {
                        let _ = sender.send(everything("LOST"));
                        tracing::warn!("change listener failed: {e}; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(ChangeFeed { sender: tx, task })
    }
}
