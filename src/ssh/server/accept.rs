//! Accepting connections: each one waits for sign-in under caps (per
//! address and in total) and a deadline, so a flood of connections that
//! never sign in cannot hold the server's memory. Whether one more fits is
//! `ratelimit::admit`; this module only counts and enforces.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::Disconnect;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Conn;
use crate::ssh::ratelimit::{PreauthCaps, admit};

/// A connection that has not signed in by then is closed.
const SIGN_IN_DEADLINE: Duration = Duration::from_secs(120);

/// At shutdown, how long the connections get to be told and closed before
/// the accept loop returns anyway.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// Connections waiting for sign-in, per address and in all.
pub(super) struct Waiting {
    caps: PreauthCaps,
    counts: Mutex<(HashMap<IpAddr, usize>, usize)>,
}

/// A connection's place among those waiting; given back when dropped.
struct Slot {
    waiting: Arc<Waiting>,
    ip: IpAddr,
}

/// Held by a connection until it signs in.
pub(super) struct WaitingForSignIn {
    _slot: Slot,
    pub(super) signed_in: oneshot::Sender<()>,
}

impl Waiting {
    pub(super) fn new(caps: PreauthCaps) -> Arc<Waiting> {
        Arc::new(Waiting {
            caps,
            counts: Mutex::new((HashMap::new(), 0)),
        })
    }

    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut counts = self.counts.lock().expect("waiting lock");
        let (by_ip, total) = &mut *counts;
        let from_ip = by_ip.get(&ip).copied().unwrap_or(0);
        if !admit(from_ip, *total, self.caps) {
            return None;
        }
        by_ip.insert(ip, from_ip + 1);
        *total += 1;
        Some(Slot {
            waiting: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.waiting.counts.lock().expect("waiting lock");
        let (by_ip, total) = &mut *counts;
        *total = total.saturating_sub(1);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Accepts until `shutdown`; `new_conn` makes the handler for a peer.
pub(super) async fn accept_loop(
    listener: &TcpListener,
    config: Arc<russh::server::Config>,
    waiting: Arc<Waiting>,
    mut new_conn: impl FnMut(std::net::SocketAddr) -> Conn,
    shutdown: CancellationToken,
) {
    // Every connection task holds a clone; when all are dropped, every
    // connection has been told and closed.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => {
                drop(alive);
                let _ = tokio::time::timeout(CLOSE_DEADLINE, all_closed.recv()).await;
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("accepting an SSH connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = waiting.take(peer.ip()) else {
            tracing::info!(
                target: "kiln::audit",
                event = "connection_refused",
                peer = %peer.ip(),
                reason = "too many connections waiting for sign-in",
            );
            drop(socket);
            continue;
        };
        let (signed_in, deadline) = oneshot::channel();
        let mut conn = new_conn(peer);
        conn.waiting = Some(WaitingForSignIn {
            _slot: slot,
            signed_in,
        });
        let open = conn.open.clone();
        let alive = alive.clone();
        let shutdown = shutdown.clone();
        let config = config.clone();
        tokio::spawn(async move {
            serve(config, socket, conn, open, deadline, shutdown).await;
            drop(alive);
        });
    }
}

async fn serve(
    config: Arc<russh::server::Config>,
    socket: TcpStream,
    conn: Conn,
    open: super::restart::OpenChannels,
    signed_in: oneshot::Receiver<()>,
    shutdown: CancellationToken,
) {
    if config.nodelay
        && let Err(e) = socket.set_nodelay(true)
    {
        tracing::debug!("set_nodelay failed: {e}");
    }
    // Fires only if the connection is still waiting when time is up: a
    // sign-in (or the connection ending) disarms it.
    let deadline = async {
        match tokio::time::timeout(SIGN_IN_DEADLINE, signed_in).await {
            Err(_elapsed) => {}
            Ok(_) => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let session = tokio::select! {
        s = russh::server::run_stream(config, socket, conn) => match s {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("SSH connection setup failed: {e}");
                return;
            }
        },
        _ = &mut deadline => return,
        _ = shutdown.cancelled() => return,
    };
    let handle = session.handle();
    let reason = tokio::select! {
        r = session => {
            if let Err(e) = r {
                tracing::debug!("SSH connection ended: {e}");
            }
            return;
        }
        _ = &mut deadline => "Sign-in took too long",
        _ = shutdown.cancelled() => {
            open.announce(&handle).await;
            "Kiln is restarting"
        }
    };
    let _ = handle
        .disconnect(Disconnect::ByApplication, reason.into(), String::new())
        .await;
}
