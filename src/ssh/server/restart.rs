//! Telling a connection's open sessions that this replica is going away,
//! before the connection is closed: a line on their screen rather than a
//! connection dropped without a word. Their sandboxes' sessions live in
//! tmux or the pod, so they keep running and a reconnect finds them.

use std::sync::{Arc, Mutex};

use russh::ChannelId;
use russh::server::Handle;

/// What users read when the replica serving them stops.
pub const RESTART_LINE: &str = "Kiln is restarting: this server is shutting down. Reconnect to \
     continue; your sandboxes and their sessions keep running.";

/// How a channel is used, which decides how the line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Interactive {
    /// Full-screen: leave the alternate screen first, so the line stays.
    Dashboard,
    /// An exec command: on its stderr.
    Exec,
    /// A raw attached terminal: on its own line.
    Attach,
}

/// The interactive channels of one connection, shared between the
/// connection's handler (which opens and closes them) and the task that
/// closes the connection at shutdown.
#[derive(Clone, Default)]
pub(super) struct OpenChannels(Arc<Mutex<Vec<(ChannelId, Interactive)>>>);

impl OpenChannels {
    pub(super) fn add(&self, channel: ChannelId, how: Interactive) {
        self.0.lock().expect("open channels").push((channel, how));
    }

    pub(super) fn remove(&self, channel: ChannelId) {
        self.0
            .lock()
            .expect("open channels")
            .retain(|(c, _)| *c != channel);
    }

    /// Writes the restart line to every open channel.
    pub(super) async fn announce(&self, handle: &Handle) {
        let open = self.0.lock().expect("open channels").clone();
        for (channel, how) in open {
            let line = format!("\r\n{RESTART_LINE}\r\n").into_bytes();
            let _ = match how {
                Interactive::Dashboard => {
                    let mut bytes = crate::ssh::session::LEAVE_SCREEN.to_vec();
                    bytes.extend(line);
                    handle.data(channel, bytes).await
                }
                Interactive::Exec => handle.extended_data(channel, 1, line).await,
                Interactive::Attach => handle.data(channel, line).await,
            };
        }
    }
}
