//! Marking resources due when a cluster watch saw their objects change.

use std::time::Duration;

use crate::store::Store;

/// Turns watch reports into due rows: names are gathered for a moment (a
/// pod restart touches the pod and its StatefulSet several times) and
/// marked in one statement.
pub fn spawn_drift_marker(
    store: Store,
    mut names: tokio::sync::mpsc::Receiver<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(first) = names.recv().await {
            let mut batch = vec![first];
            let gather = tokio::time::sleep(Duration::from_millis(200));
            tokio::pin!(gather);
            loop {
                tokio::select! {
                    _ = &mut gather => break,
                    more = names.recv() => match more {
                        Some(n) => batch.push(n),
                        None => break,
                    },
                }
            }
            batch.sort();
            batch.dedup();
            if let Err(e) = store.mark_due(&batch).await {
                tracing::warn!("marking {} watched resources due: {e}", batch.len());
            }
        }
    })
}
