//! `kiln bench attach`: Kiln's direct attach and dashboard pane side by side
//! with the anchor a user would otherwise use — OpenSSH's sshd plus
//! `tmux attach` to an equivalent session (same tmux config, same program,
//! same size). Prints ratios; asserts nothing.
//!
//! This module sets up and runs the measurement; `paths` opens and times
//! each way into the session, `anchor` is the sshd + tmux side, `cpu` reads
//! what the processes spent, and `report` turns the runs into the table.

mod anchor;
mod cpu;
mod paths;
mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use uuid::Uuid;

use super::console::ChildServer;
use super::{BenchUser, Scratch};
use anchor::Anchor;
use cpu::{descendants_cpu, process_cpu, tmux_server_pid};
use paths::{EchoPath, connect_as, echo, open_exec, open_pane, settle, throughput};
use report::{Measured, Run};

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
    // The whole run with the operator HTTP listener off, then on and
    // scraped, each on a scratch database of its own.
    for http in [false, true] {
        if http {
            println!(
                "== operator HTTP listener on, /metrics scraped every {:?} ==",
                crate::bench::scrape::EVERY
            );
        } else {
            println!("== operator HTTP listener off ==");
        }
        let scratch = Scratch::create(admin_url).await?;
        let result = run(&scratch.url, keys, megabytes, http).await;
        scratch.drop_database().await?;
        result?;
    }
    Ok(())
}

async fn run(url: &str, keys: usize, megabytes: usize, http: bool) -> anyhow::Result<()> {
    let BenchUser {
        store,
        key_hex,
        id: user_id,
        key,
    } = BenchUser::create(url).await?;
    let public = key.public_key().to_openssh()?;

    let mut config = "[local]\nsandbox_command = \"sh\"\n".to_string();
    let http_addr = if http {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        config.push_str(&format!("[http]\nlisten = \"{addr}\"\n"));
        Some(addr)
    } else {
        None
    };
    let server = ChildServer::start_with_config(url, &key_hex, &config).await?;
    let scraper = http_addr.map(crate::bench::scrape::Scraper::start);
    store.create_project(user_id, "bench", "", "bench").await?;
    let started = Instant::now();
    // Each sandbox has a tmux server of its own, under `{data}/run/{name}/`.
    let sandbox_run_dir = loop {
        let p = store.find_project(user_id, "bench").await?;
        if p.project.status == crate::model::ProjectStatus::Running {
            let sandbox = p
                .resources
                .iter()
                .find(|r| r.kind == crate::store::resources::ResourceKind::Sandbox)
                .context("the bench project has no sandbox")?;
            break server.data_dir.join("run").join(&sandbox.resource_name);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the bench project did not reach RUNNING: {:?}",
                p.project.status
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

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
    let anchor = Anchor::start(&work, &sandbox_run_dir.join("tmux.conf"), &public).await?;

    let sshd_pid = anchor.sshd.id().context("sshd exited")?;
    let kiln_pid = server.pid()?;
    // The tmux servers run apart from the relays (a tmux server detaches
    // from whoever started it), so their CPU is counted on its own.
    let anchor_tmux = tmux_server_pid(&anchor.socket)?;
    // The sandbox's tmux server admits only the sandbox's identity: ask
    // it the way an operator would.
    let kiln_tmux = {
        let resource = sandbox_run_dir
            .file_name()
            .context("sandbox run dir")?
            .to_string_lossy()
            .into_owned();
        let out = crate::local::LocalSandboxes::new(&server.data_dir, None)?
            .tmux_command(&resource)
            .args(["display-message", "-p", "#{pid}"])
            .stdin(std::process::Stdio::null())
            .output()
            .context("asking the sandbox's tmux for its pid")?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .with_context(|| {
                format!(
                    "no tmux server pid for sandbox {resource}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?
    };
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
    if let Some(scraper) = scraper {
        println!("({} scrapes answered during the run)", scraper.stop().await);
    }
    report::print(Measured {
        keys,
        megabytes,
        bytes,
        names,
        echoes,
        rates,
        alone,
    });
    drop(anchor);
    // Delete the project as a user would, so that its database and role on
    // the server go with it (dropping the scratch database leaves them).
    store
        .record_intent(user_id, "bench", crate::model::Intent::Delete, "bench")
        .await?;
    let deleting = Instant::now();
    while store.find_project(user_id, "bench").await.is_ok() {
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

#[cfg(test)]
mod tests {
    use super::turn_order;

    #[test]
    fn every_path_goes_first_once_in_as_many_rounds() {
        let rounds: Vec<Vec<usize>> = (0..3).map(|r| turn_order(3, r).collect()).collect();
        assert_eq!(rounds, [[0, 1, 2], [1, 2, 0], [2, 0, 1]]);
        assert_eq!(turn_order(3, 4).collect::<Vec<_>>(), [1, 2, 0]);
    }
}
