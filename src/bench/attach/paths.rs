//! The ways into the bench session, and timing them: connecting and
//! opening each path, one key's echo, and a `cat` of the payload.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

use super::super::console::BenchClient;
use super::cpu::ms_per_mib;
use super::report::Run;
use super::{COLS, ECHO_QUIET, ROWS};

pub(super) type Conn = (
    ChannelReadHalf,
    ChannelWriteHalf<client::Msg>,
    client::Handle<BenchClient>,
);

/// A connection to `addr`, logged in as `user` with `key`.
pub(super) async fn connect_as(
    addr: std::net::SocketAddr,
    user: &str,
    key: &Arc<PrivateKey>,
) -> anyhow::Result<client::Handle<BenchClient>> {
    let mut h = client::connect(Arc::new(client::Config::default()), addr, BenchClient).await?;
    auth(&mut h, user, key).await?;
    Ok(h)
}

async fn auth(
    h: &mut client::Handle<BenchClient>,
    user: &str,
    key: &Arc<PrivateKey>,
) -> anyhow::Result<()> {
    let r = h
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), None))
        .await?;
    if !r.success() {
        bail!("key authentication as {user} failed");
    }
    Ok(())
}

/// Runs `command` with a PTY; the handle travels with the channel so the
/// connection lives as long as the measurement.
pub(super) async fn open_exec(
    h: client::Handle<BenchClient>,
    command: &str,
) -> anyhow::Result<Conn> {
    let ch = h.channel_open_session().await?;
    ch.request_pty(true, "xterm-256color", COLS, ROWS, 0, 0, &[])
        .await?;
    ch.exec(true, command).await?;
    let (read, write) = ch.split();
    Ok((read, write, h))
}

async fn open_shell(
    h: &client::Handle<BenchClient>,
) -> anyhow::Result<(ChannelReadHalf, ChannelWriteHalf<client::Msg>)> {
    let ch = h.channel_open_session().await?;
    ch.request_pty(true, "xterm-256color", COLS, ROWS, 0, 0, &[])
        .await?;
    ch.request_shell(true).await?;
    Ok(ch.split())
}

/// The dashboard with the bench project's pane open (`a` on the list).
pub(super) async fn open_pane(h: client::Handle<BenchClient>) -> anyhow::Result<Conn> {
    let (mut read, write) = open_shell(&h).await?;
    settle(&mut read, Duration::from_millis(500)).await;
    write.data_bytes(b"a".to_vec()).await?;
    wait_for(&mut read, b"detach", Duration::from_secs(10))
        .await
        .context("opening Kiln's dashboard pane")?;
    Ok((read, write, h))
}

/// Reads and discards output until the stream is quiet for `quiet`.
pub(super) async fn settle(read: &mut ChannelReadHalf, quiet: Duration) {
    while let Ok(Some(_)) = tokio::time::timeout(quiet, read.wait()).await {}
}

/// Reads until `needle` has been seen. Each byte is looked at about once:
/// the client shares the machine with the servers it measures, and
/// rescanning what it already saw would take CPU from them.
async fn wait_for(
    read: &mut ChannelReadHalf,
    needle: &[u8],
    limit: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + limit;
    let mut total = 0u64;
    // The last bytes seen, in case the needle is split across messages.
    let mut window: Vec<u8> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read.wait()).await {
            Ok(Some(ChannelMsg::Data { data })) => {
                total += data.len() as u64;
                window.extend_from_slice(&data);
                if window.windows(needle.len()).any(|w| w == needle) {
                    return Ok(total);
                }
                let keep = (needle.len() - 1).min(window.len());
                window.drain(..window.len() - keep);
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the channel closed"),
            Err(_) => bail!(
                "timed out waiting for {:?}",
                String::from_utf8_lossy(needle)
            ),
        }
    }
}

/// One way into a session, and its echo times.
pub(super) struct EchoPath {
    pub(super) name: &'static str,
    pub(super) conn: Conn,
    pub(super) cpu_root: u32,
    pub(super) samples: Vec<Duration>,
}

/// Sends one byte and waits for its echo: for a printable byte, the first
/// output that contains it; for any other, the first output.
pub(super) async fn echo(conn: &mut Conn, byte: u8) -> anyhow::Result<Duration> {
    let (read, write, _) = conn;
    let t = Instant::now();
    write.data_bytes(vec![byte]).await?;
    let took = loop {
        match tokio::time::timeout(Duration::from_secs(5), read.wait()).await {
            Ok(Some(ChannelMsg::Data { data }))
                if !byte.is_ascii_graphic() || data.contains(&byte) =>
            {
                break t.elapsed();
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the channel closed during the echo test"),
            Err(_) => bail!("no echo within 5 s"),
        }
    };
    // Let the rest of this keystroke's output arrive before the next key:
    // quiet for longer than Kiln's frame gap, so a frame that follows an
    // echo is never taken for the next key's echo.
    settle(read, ECHO_QUIET).await;
    Ok(took)
}

/// `cat` of the payload through the session until a marker that only the
/// command's output (not its echo) contains: bytes per second and CPU
/// milliseconds per MiB of the processes below the server.
pub(super) async fn throughput(
    conn: &mut Conn,
    payload: &Path,
    bytes: f64,
    detach: &[u8],
    cpu_ticks: impl Fn() -> [u64; 2],
) -> anyhow::Result<Run> {
    let (read, write, _) = conn;
    let cpu_before = cpu_ticks();
    let t = Instant::now();
    // A fresh marker per run: the session (and its screen) is shared by the
    // runs, and a reattach shows the previous run's last screen.
    let tag = {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).expect("random");
        u32::from_le_bytes(b) % 1_000_000
    };
    // Ctrl-U first: nothing left on the command line may change the command.
    let cmd = format!(
        "\x15cat {}; echo BENCH-$(({tag}+1))-DONE\r",
        payload.display()
    );
    write.data_bytes(cmd.into_bytes()).await?;
    let marker = format!("BENCH-{}-DONE", tag + 1);
    let received = wait_for(read, marker.as_bytes(), Duration::from_secs(600)).await?;
    let elapsed = t.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks();
    // Detach politely, with the path's own keys: another path's would be
    // typed into the shell.
    let _ = write.data_bytes(detach.to_vec()).await;
    Ok(Run {
        bytes_per_sec: bytes / elapsed,
        cpu_ms_per_mib: ms_per_mib(cpu_before, cpu_after, bytes),
        received_mib: received as f64 / (1 << 20) as f64,
    })
}
