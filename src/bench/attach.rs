//! `kiln bench attach`: Kiln's direct attach and dashboard pane side by side
//! with the anchor a user would otherwise use — OpenSSH's sshd plus
//! `tmux attach` to an equivalent session (same tmux config, same program,
//! same size). Prints ratios; asserts nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use russh::client;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use uuid::Uuid;

use super::console::{BenchClient, ChildServer, ms, ticks_per_second};
use super::{Scratch, quantile};
use crate::store::{SecretKey, Store};

const COLS: u32 = 100;
const ROWS: u32 = 30;
/// Quiet time after each echo (more than the console's 8 ms frame gap).
const ECHO_QUIET: Duration = Duration::from_millis(12);
/// Throughput runs per path, taken in turns (with tmux alone first in each
/// round); the median is reported.
const THROUGHPUT_ROUNDS: usize = 7;

pub async fn attach(admin_url: &str, keys: usize, megabytes: usize) -> anyhow::Result<()> {
    if !Path::new("/usr/sbin/sshd").exists() {
        bail!("the anchor needs OpenSSH's server: install it (apt install openssh-server)");
    }
    let scratch = Scratch::create(admin_url).await?;
    let result = run(&scratch.url, keys, megabytes).await;
    scratch.drop_database().await?;
    result
}

struct Numbers {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    bytes_per_sec: f64,
    cpu_ms_per_mb: f64,
    /// CPU of the tmux server behind the path, per MiB.
    tmux_ms_per_mb: f64,
    /// MiB that reached the client in one run.
    received_mib: f64,
}

/// One throughput run of one path.
#[derive(Clone)]
struct Run {
    bytes_per_sec: f64,
    /// CPU milliseconds per MiB of the relay (and what runs below it), and
    /// of the tmux server.
    cpu_ms_per_mib: [f64; 2],
    /// MiB that reached the client.
    received_mib: f64,
}

async fn run(url: &str, keys: usize, megabytes: usize) -> anyhow::Result<()> {
    let key_hex: String = {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("random");
        b.iter().map(|x| format!("{x:02x}")).collect()
    };
    let store = Store::connect(url, SecretKey::from_hex(&key_hex)?, 4).await?;
    store.migrate().await?;
    let user = store.create_user("bench", None, false).await?;
    let key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)?;
    let public = key.public_key().to_openssh()?;
    store.add_ssh_key(user.id, &public).await?;
    let key = Arc::new(key);

    let server =
        ChildServer::start_with_config(url, &key_hex, "[local]\nsandbox_command = \"sh\"\n")
            .await?;
    store.create_project(user.id, "bench", "", "bench").await?;
    let started = Instant::now();
    loop {
        let p = store.find_project(user.id, "bench").await?;
        if p.project.status == crate::model::ProjectStatus::Running {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the bench project did not reach RUNNING: {:?}",
                p.project.status
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The payload for the throughput run: text lines, `megabytes` MiB.
    let work =
        std::env::temp_dir().join(format!("kba-{}", &Uuid::new_v4().simple().to_string()[..8]));
    std::fs::create_dir_all(&work)?;
    let payload = work.join("payload.txt");
    {
        let line = b"the quick brown fox jumps over the lazy dog 0123456789 abcdefghij\n";
        let mut data = Vec::with_capacity(megabytes << 20);
        while data.len() < megabytes << 20 {
            data.extend_from_slice(line);
        }
        std::fs::write(&payload, data)?;
    }
    let bytes = (megabytes << 20) as f64;

    // The anchor: its own tmux server with Kiln's tmux config, and sshd.
    let anchor = Anchor::start(&work, &server.data_dir.join("tmux/tmux.conf"), &public).await?;

    let sshd_pid = anchor.sshd.id().context("sshd exited")?;
    let kiln_pid = server.pid()?;
    // The tmux servers run apart from the relays (a tmux server detaches
    // from whoever started it), so their CPU is counted on its own.
    let anchor_tmux = tmux_server_pid(&anchor.socket)?;
    let kiln_tmux = tmux_server_pid(&server.data_dir.join("tmux/kiln.sock"))?;
    let anchor_cmd = format!("tmux -S {} attach -t =bench", anchor.socket.display());
    let open = |which: usize| {
        let (key, anchor_cmd) = (key.clone(), anchor_cmd.clone());
        let (anchor_addr, kiln_addr) = (anchor.addr, server.addr);
        async move {
            match which {
                0 => open_exec(connect_as(anchor_addr, "root", &key).await?, &anchor_cmd).await,
                // Its own session of the same sandbox: keys timed on one
                // path must not echo on another.
                1 => {
                    let h = connect_as(kiln_addr, "bench", &key).await?;
                    open_exec(h, "attach bench --session direct").await
                }
                _ => open_pane(connect_as(kiln_addr, "bench", &key).await?).await,
            }
        }
    };
    let mut paths = [
        EchoPath {
            name: "OpenSSH sshd + tmux attach",
            conn: open(0).await?,
            cpu_root: sshd_pid,
            samples: Vec::with_capacity(keys),
        },
        EchoPath {
            name: "Kiln direct attach",
            conn: open(1).await?,
            cpu_root: kiln_pid,
            samples: Vec::with_capacity(keys),
        },
        EchoPath {
            name: "Kiln dashboard pane",
            conn: open(2).await?,
            cpu_root: kiln_pid,
            samples: Vec::with_capacity(keys),
        },
    ];
    for p in &mut paths {
        settle(&mut p.conn.0, Duration::from_millis(800)).await;
    }
    // Keystroke echo, interleaved: each round times one key on every path,
    // starting with a different one each time, so a busy moment on the
    // machine falls on all of them alike.
    for i in 0..keys {
        // Alternate a letter and a backspace so the line never grows.
        let byte = if i % 2 == 0 { b'x' } else { 0x7f };
        for k in 0..paths.len() {
            let p = &mut paths[(i + k) % 3];
            let took = echo(&mut p.conn, byte)
                .await
                .with_context(|| format!("echo on {}", p.name))?;
            p.samples.push(took);
        }
    }
    // Throughput one path at a time, each on a fresh connection with no
    // other viewer attached (the two Kiln paths share one session). The
    // paths take turns for several rounds and each reports its median: one
    // run of a few seconds is at the mercy of whatever else the machine is
    // doing at that moment.
    let names: Vec<&str> = paths.iter().map(|p| p.name).collect();
    let roots: Vec<u32> = paths.iter().map(|p| p.cpu_root).collect();
    let tmux_pids = [anchor_tmux, kiln_tmux, kiln_tmux];
    let mut echoes: Vec<Vec<Duration>> = Vec::new();
    for p in paths {
        drop(p.conn);
        let mut samples = p.samples;
        samples.sort();
        echoes.push(samples);
    }
    let mut rates: Vec<Vec<Run>> = vec![Vec::new(); names.len()];
    let mut alone: Vec<(f64, f64)> = Vec::new();
    for round in 0..THROUGHPUT_ROUNDS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        alone.push(
            anchor
                .throughput_alone(&payload, bytes, round, anchor_tmux)
                .await
                .context("throughput of tmux alone")?,
        );
        for which in turn_order(names.len(), round) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut conn = open(which).await?;
            settle(&mut conn.0, Duration::from_millis(800)).await;
            let (root, tmux_pid) = (roots[which], tmux_pids[which]);
            // tmux's own C-b d for the anchor, Kiln's prefix for Kiln.
            let detach: &[u8] = if which == 0 { b"\x02d" } else { b"\x1dd" };
            let measured = throughput(&mut conn, &payload, bytes, detach, || {
                [descendants_cpu(root), process_cpu(tmux_pid)]
            })
            .await
            .with_context(|| format!("throughput of {}", names[which]))?;
            drop(conn);
            rates[which].push(measured);
        }
    }
    let results: Vec<(&str, Numbers)> = names
        .iter()
        .zip(echoes.iter().zip(&rates))
        .map(|(name, (samples, rates))| {
            (
                *name,
                Numbers {
                    p50: quantile(samples, 0.5),
                    p90: quantile(samples, 0.9),
                    p99: quantile(samples, 0.99),
                    bytes_per_sec: median(rates.iter().map(|r| r.bytes_per_sec)),
                    cpu_ms_per_mb: median(rates.iter().map(|r| r.cpu_ms_per_mib[0])),
                    tmux_ms_per_mb: median(rates.iter().map(|r| r.cpu_ms_per_mib[1])),
                    received_mib: median(rates.iter().map(|r| r.received_mib)),
                },
            )
        })
        .collect();

    println!(
        "attach: {keys} keystrokes per path (interleaved) and `cat` of {megabytes} MiB (median of {THROUGHPUT_ROUNDS} rounds) in a {COLS}x{ROWS} tmux session running sh (clients on this machine)"
    );
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>11} {:>12} {:>12} {:>12}",
        "path",
        "echo p50",
        "echo p90",
        "echo p99",
        "MiB/s",
        "CPU ms/MiB",
        "tmux ms/MiB",
        "MiB to client"
    );
    for (name, n) in &results {
        println!(
            "  {:<28} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>11.1} {:>12.1} {:>12.1} {:>12.1}",
            name,
            ms(n.p50),
            ms(n.p90),
            ms(n.p99),
            n.bytes_per_sec / (1 << 20) as f64,
            n.cpu_ms_per_mb,
            n.tmux_ms_per_mb,
            n.received_mib
        );
    }
    let secs = |rate: f64| format!("{:.3}", bytes / rate.max(1e-9));
    let alone_secs: Vec<String> = alone.iter().map(|a| secs(a.0)).collect();
    let alone_tmux = median(alone.iter().map(|a| a.1));
    let alone = median(alone.iter().map(|a| a.0));
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>11.1} {:>12} {:>12.1} {:>12}",
        "tmux alone, no viewer",
        "-",
        "-",
        "-",
        alone / (1 << 20) as f64,
        "-",
        alone_tmux,
        "-"
    );
    // Each round's time, in the order run: a median hides whether a path
    // is steady or sometimes slow.
    for (name, runs) in names.iter().zip(&rates) {
        let each: Vec<String> = runs
            .iter()
            .map(|r| format!("{} ({:.1})", secs(r.bytes_per_sec), r.cpu_ms_per_mib[0]))
            .collect();
        println!(
            "  {name:<28} seconds (CPU ms/MiB) per round: {}",
            each.join(" ")
        );
    }
    println!(
        "  {:<28} seconds per round: {}",
        "tmux alone, no viewer",
        alone_secs.join(" ")
    );
    // Each round's ratio against the anchor's run in the same round, minutes
    // apart at most: slow spells of the machine fall on both sides of it.
    for (name, runs) in names.iter().zip(&rates).skip(1) {
        let ratios = paired_ratios(&rates[0], runs);
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}x")).collect();
        println!(
            "  {name:<28} throughput / anchor round by round: {} (median {:.2}x)",
            each.join(" "),
            median(ratios.iter().copied())
        );
    }
    let anchor_n = &results[0].1;
    for (name, n) in &results[1..] {
        println!(
            "  {name} / anchor: echo p50 {:.2}x, p90 {:.2}x, p99 {:.2}x (target <= 1.2x); throughput {:.2}x (target >= 1.0x); CPU/MiB {:.2}x",
            ms(n.p50) / ms(anchor_n.p50).max(1e-9),
            ms(n.p90) / ms(anchor_n.p90).max(1e-9),
            ms(n.p99) / ms(anchor_n.p99).max(1e-9),
            n.bytes_per_sec / anchor_n.bytes_per_sec.max(1e-9),
            n.cpu_ms_per_mb / anchor_n.cpu_ms_per_mb.max(1e-9),
        );
    }
    // Every path's output passes through a tmux server, which parses all of
    // it whoever is watching: its pace with nobody attached bounds them all.
    let shares: Vec<String> = results
        .iter()
        .map(|(name, n)| format!("{name} {:.2}", n.bytes_per_sec / alone.max(1e-9)))
        .collect();
    println!(
        "  throughput / tmux alone (the ceiling of every path): {}",
        shares.join(", ")
    );
    println!(
        "  CPU ms/MiB: the relay (sshd or Kiln) and every process below it, tmux clients included; tmux ms/MiB: the tmux server alone"
    );
    drop(anchor);
    // Delete the project as a user would, so that its database and role on
    // the server go with it (dropping the scratch database leaves them).
    store
        .record_intent(user.id, "bench", crate::model::Intent::Delete, "bench")
        .await?;
    let deleting = Instant::now();
    while store.find_project(user.id, "bench").await.is_ok() {
        if deleting.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "kiln bench: the bench project was not deleted within 30 s; its database may remain"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    store.pool().close().await;
    Ok(())
}

/// The order in which the paths take their turn in `round`: each goes
/// first in turn, so that whatever the machine does to the first (or last)
/// run of a round falls on every path alike.
fn turn_order(paths: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..paths).map(move |i| (i + round) % paths)
}

/// Throughput of `path` over that of `anchor`, round by round.
fn paired_ratios(anchor: &[Run], path: &[Run]) -> Vec<f64> {
    anchor
        .iter()
        .zip(path)
        .map(|(a, p)| p.bytes_per_sec / a.bytes_per_sec.max(1e-9))
        .collect()
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

type Conn = (
    ChannelReadHalf,
    ChannelWriteHalf<client::Msg>,
    client::Handle<BenchClient>,
);

/// A connection to `addr`, logged in as `user` with `key`.
async fn connect_as(
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
async fn open_exec(h: client::Handle<BenchClient>, command: &str) -> anyhow::Result<Conn> {
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
async fn open_pane(h: client::Handle<BenchClient>) -> anyhow::Result<Conn> {
    let (mut read, write) = open_shell(&h).await?;
    settle(&mut read, Duration::from_millis(500)).await;
    write.data_bytes(b"a".to_vec()).await?;
    wait_for(&mut read, b"detach", Duration::from_secs(10))
        .await
        .context("opening Kiln's dashboard pane")?;
    Ok((read, write, h))
}

/// Reads and discards output until the stream is quiet for `quiet`.
async fn settle(read: &mut ChannelReadHalf, quiet: Duration) {
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
struct EchoPath {
    name: &'static str,
    conn: Conn,
    cpu_root: u32,
    samples: Vec<Duration>,
}

/// Sends one byte and waits for its echo: for a printable byte, the first
/// output that contains it; for any other, the first output.
async fn echo(conn: &mut Conn, byte: u8) -> anyhow::Result<Duration> {
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
async fn throughput(
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

/// CPU milliseconds per MiB of output, for each counter read before and after.
fn ms_per_mib<const N: usize>(before: [u64; N], after: [u64; N], bytes: f64) -> [f64; N] {
    std::array::from_fn(|i| {
        let secs = after[i].saturating_sub(before[i]) as f64 / ticks_per_second();
        secs * 1000.0 / (bytes / (1 << 20) as f64)
    })
}

/// The pid of the tmux server listening on `socket`.
fn tmux_server_pid(socket: &Path) -> anyhow::Result<u32> {
    let out = std::process::Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["display-message", "-p", "#{pid}"])
        .stdin(Stdio::null())
        .output()
        .context("asking tmux for its server's pid")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| {
            format!(
                "no tmux server pid from {}: {}",
                socket.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

/// What `/proc/{pid}/stat` says of a process's CPU.
struct ProcStat {
    ppid: u32,
    /// Ticks of the process itself (user + system).
    own: u64,
    /// Ticks of its children that have exited and been waited for.
    reaped: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (in parentheses) may hold spaces: fields follow the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(ProcStat {
        ppid: f.get(1)?.parse().ok()?,
        own: field(11)? + field(12)?,
        reaped: field(13)? + field(14)?,
    })
}

/// CPU ticks of `pid` alone (0 once it has gone).
fn process_cpu(pid: u32) -> u64 {
    proc_stat(pid).map_or(0, |s| s.own)
}

/// CPU ticks of `root` and every process below it, including the children
/// that ran briefly and have been waited for (a relay's short helper
/// commands count too).
fn descendants_cpu(root: u32) -> u64 {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Some(s) = proc_stat(pid) else {
                continue;
            };
            parent.insert(pid, s.ppid);
            ticks.insert(pid, s.own + s.reaped);
        }
    }
    let is_below = |mut p: u32| {
        while p > 1 {
            if p == root {
                return true;
            }
            p = *parent.get(&p).unwrap_or(&0);
        }
        false
    };
    ticks
        .iter()
        .filter(|(p, _)| is_below(**p))
        .map(|(_, t)| t)
        .sum()
}

/// sshd on a loopback port plus a tmux session equivalent to Kiln's.
struct Anchor {
    sshd: tokio::process::Child,
    addr: std::net::SocketAddr,
    socket: PathBuf,
}

impl Anchor {
    async fn start(work: &Path, tmux_conf: &Path, public_key: &str) -> anyhow::Result<Anchor> {
        let socket = work.join("anchor.sock");
        let ok = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(tmux_conf)
            .args([
                "new-session",
                "-d",
                "-s",
                "bench",
                "-x",
                "100",
                "-y",
                "30",
                "sh",
            ])
            .status()?
            .success();
        if !ok {
            bail!("cannot start the anchor's tmux session");
        }
        let host_key = work.join("host_ed25519");
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", "ed25519", "-f"])
            .arg(&host_key)
            .status()
            .context("ssh-keygen")?;
        std::fs::write(work.join("authorized_keys"), format!("{public_key}\n"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = work.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nPidFile {}\n",
                host_key.display(),
                work.join("authorized_keys").display(),
                work.join("sshd.pid").display()
            ),
        )?;
        std::fs::create_dir_all("/run/sshd")?;
        let sshd = tokio::process::Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting sshd")?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let t = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("sshd did not start listening on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Anchor { sshd, addr, socket })
    }
}

impl Anchor {
    /// `cat` of the payload in the anchor's session with no client attached:
    /// the pace of the tmux server itself, which every path shares. The
    /// shell signals the end through `tmux wait-for`.
    async fn throughput_alone(
        &self,
        payload: &Path,
        bytes: f64,
        round: usize,
        tmux_pid: u32,
    ) -> anyhow::Result<(f64, f64)> {
        let channel = format!("kiln-bench-{round}");
        let tmux = |args: Vec<String>| {
            let socket = self.socket.clone();
            async move {
                let out = tokio::process::Command::new("tmux")
                    .arg("-S")
                    .arg(&socket)
                    .args(&args)
                    .stdin(Stdio::null())
                    .output()
                    .await?;
                if !out.status.success() {
                    bail!(
                        "tmux {}: {}",
                        args[0],
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Ok(())
            }
        };
        let line = format!(
            "cat {}; tmux -S {} wait-for -S {channel}",
            payload.display(),
            self.socket.display()
        );
        let cpu_before = [process_cpu(tmux_pid)];
        let t = Instant::now();
        // C-u first: nothing left on the command line may change the command.
        tmux(vec![
            "send-keys".into(),
            "-t".into(),
            "=bench:".into(),
            "C-u".into(),
            line,
            "Enter".into(),
        ])
        .await?;
        tokio::time::timeout(
            Duration::from_secs(600),
            tmux(vec!["wait-for".into(), channel]),
        )
        .await
        .context("the cat did not finish within 600 s")??;
        let elapsed = t.elapsed().as_secs_f64();
        let [tmux_ms] = ms_per_mib(cpu_before, [process_cpu(tmux_pid)], bytes);
        Ok((bytes / elapsed, tmux_ms))
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::{Run, median, paired_ratios, turn_order};

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 2.5);
        assert_eq!(median(std::iter::empty()), 0.0);
    }

    #[test]
    fn every_path_goes_first_once_in_as_many_rounds() {
        let rounds: Vec<Vec<usize>> = (0..3).map(|r| turn_order(3, r).collect()).collect();
        assert_eq!(rounds, [[0, 1, 2], [1, 2, 0], [2, 0, 1]]);
        assert_eq!(turn_order(3, 4).collect::<Vec<_>>(), [1, 2, 0]);
    }

    #[test]
    fn ratios_pair_each_round_with_the_anchors_same_round() {
        let run = |bytes_per_sec| Run {
            bytes_per_sec,
            cpu_ms_per_mib: [0.0; 2],
            received_mib: 0.0,
        };
        let anchor = [run(40.0), run(50.0)];
        let path = [run(44.0), run(45.0)];
        let ratios = paired_ratios(&anchor, &path);
        assert_eq!(ratios.len(), 2);
        assert!((ratios[0] - 1.1).abs() < 1e-12 && (ratios[1] - 0.9).abs() < 1e-12);
    }
}
