//! Scenario 3: Kiln's PostgreSQL restarted (fast) and then stopped for a
//! while, under churn, with dashboards open. Kiln's database is a private
//! cluster the suite starts (the embedded-cluster code, in a temporary
//! directory; never the shared server), the counting driver's world stays
//! on the configured server. The replicas must survive, every accepted
//! intent must be carried out, and the time to recover is printed: from
//! PostgreSQL accepting connections again to a new project RUNNING.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use russh::keys::{Algorithm, PrivateKey};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use super::{Bench, FaultOptions, Figures, churn, stage, stop_all};
use crate::bench::console::Session;
use crate::embedded_pg::EmbeddedPostgres;

/// Words a screen could use to say the database is away.
const DOWN_WORDS: [&str; 7] = [
    "unavailable",
    "reconnect",
    "database",
    "offline",
    "lost",
    "error",
    "cannot",
];

/// The lines a screen shows now and did not before that mention the
/// database being away.
fn down_lines(before: &str, now: &str) -> Vec<String> {
    let old: std::collections::HashSet<&str> = before.lines().map(str::trim).collect();
    now.lines()
        .map(str::trim)
        .filter(|l| !old.contains(l))
        .filter(|l| {
            let l = l.to_lowercase();
            DOWN_WORDS.iter().any(|w| l.contains(w))
        })
        .map(str::to_string)
        .collect()
}

pub async fn run(admin_url: &str, opts: &FaultOptions) -> anyhow::Result<Figures> {
    // Short: the socket path must fit in 107 bytes.
    let dir = PathBuf::from(format!(
        "/tmp/kfpg-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let pg = EmbeddedPostgres::start(&dir)
        .await
        .context("starting a private PostgreSQL cluster")?;
    let pg_admin = pg.admin_url();
    let result = async {
        let mut bench = Bench::create_on(&pg_admin, admin_url, opts).await?;
        let r = scenario(&mut bench, &pg, opts).await;
        bench.drop_all().await?;
        r
    }
    .await;
    pg.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn scenario(
    bench: &mut Bench,
    pg: &EmbeddedPostgres,
    opts: &FaultOptions,
) -> anyhow::Result<Figures> {
    let mut f = Figures::new("postgres restart");
    let mut live = vec![bench.spawner.spawn(0, 0)?, bench.spawner.spawn(1, 0)?];
    let (mut expected, mut names) = bench
        .bring_up(opts.projects, opts, &mut live, &mut f, "the faults")
        .await?;
    stage("pg", "projects created");
    stage("pg", "converged; opening dashboards");
    // Dashboards: an SSH front end in this process on the private cluster.
    let key = bench.sign_in_key().await?;
    let shutdown = CancellationToken::new();
    let feed = Arc::new(bench.store.listen().await?);
    let listener = crate::ssh::server::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let host_key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)?;
    let config = crate::config::SshConfig {
        listen: "127.0.0.1:0".into(),
        ..crate::config::SshConfig::default()
    };
    let server = tokio::spawn(crate::ssh::server::run(
        bench.store.clone(),
        feed,
        None::<Arc<dyn crate::driver::SessionAttach>>,
        config,
        host_key,
        listener,
        String::new(),
        shutdown.clone(),
    ));
    let mut screens = Vec::new();
    for _ in 0..opts.dashboards {
        let s = Session::open_as(addr, &key, "faults").await?;
        s.wait(|t| t.contains("RUNNING"), Duration::from_secs(20))
            .await?;
        screens.push(s);
    }
    f.put("dashboards", screens.len());

    let done = AtomicBool::new(false);
    let churning = churn(bench, &mut names, &mut expected, &done);
    let mut outages = Vec::new();
    let faults = async {
        for (k, outage) in [None, Some(opts.pg_outage)].into_iter().enumerate() {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let what = match outage {
                None => "fast restart".to_string(),
                Some(d) => format!("stopped {} s", d.as_secs()),
            };
            stage("pg", &what);
            let began = Instant::now();
            let mut said_down = (0, String::new());
            match outage {
                None => pg_ctl(pg, &["restart", "-m", "fast", "-w", "-t", "60"]).await?,
                Some(d) => {
                    let before: Vec<String> = screens.iter().map(Session::text).collect();
                    pg_ctl(pg, &["stop", "-m", "fast", "-w"]).await?;
                    tokio::time::sleep(d / 2).await;
                    for (s, b) in screens.iter().zip(&before) {
                        let lines = down_lines(b, &s.text());
                        if let Some(first) = lines.first() {
                            said_down.0 += 1;
                            said_down.1 = first.clone();
                        }
                    }
                    tokio::time::sleep(d - d / 2).await;
                    pg_ctl(pg, &["start", "-w", "-t", "60"]).await?;
                }
            }
            let up = wait_accepting(&pg.admin_url()).await?;
            let down_for = up.duration_since(began);
            stage("pg", "accepting connections");
            // A new project: created as soon as Kiln's store answers, then
            // RUNNING once a replica has done a full pass on it.
            let probe = format!("probe{k}");
            let created = loop {
                match bench
                    .store
                    .create_project(bench.user, &probe, "", "faults")
                    .await
                {
                    // A conflict: an earlier try committed, its answer was lost.
                    Ok(_) | Err(crate::store::StoreError::Conflict(_)) => break Instant::now(),
                    Err(_) if up.elapsed() > Duration::from_secs(60) => {
                        anyhow::bail!("Kiln's store did not answer 60 s after PostgreSQL came back")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            stage("pg", "probe created");
            let running = loop {
                let n: Result<i64, _> = sqlx::query_scalar(
                    "SELECT count(*) FROM projects WHERE name = $1 AND status = 'RUNNING'",
                )
                .bind(&probe)
                .fetch_one(bench.pool())
                .await;
                if matches!(n, Ok(1)) {
                    break Instant::now();
                }
                if up.elapsed() > Duration::from_secs(120) {
                    anyhow::bail!("{probe} not RUNNING 120 s after PostgreSQL came back");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            stage("pg", "probe running");
            let mut redrawn = 0;
            let mut slowest = Duration::ZERO;
            for s in &screens {
                if s.wait(
                    |t| {
                        t.lines()
                            .any(|l| l.contains(&probe) && l.contains("RUNNING"))
                    },
                    Duration::from_secs(30),
                )
                .await
                .is_ok()
                {
                    redrawn += 1;
                    slowest = slowest.max(up.elapsed());
                }
            }
            outages.push((
                what,
                down_for,
                created - up,
                running - up,
                redrawn,
                slowest,
                said_down,
            ));
        }
        anyhow::Ok(())
    };
    // The churn stops when the faults are over, however they ended.
    let faults = async {
        let r = faults.await;
        done.store(true, Ordering::Relaxed);
        r
    };
    let (churned, faulted) = tokio::join!(churning, faults);
    faulted?;
    stage("pg", "faults over");
    bench.reconnect().await?;
    f.put("intents", churned.intents);
    f.put("intents refused", churned.refused);
    f.put("intents failed", churned.failed);
    let n = screens.len();
    let mut recovered = Vec::new();
    for (what, down, store_back, running, redrawn, slowest, said_down) in &outages {
        let said = if what.starts_with("stopped") {
            let (count, line) = said_down;
            if *count > 0 {
                format!(", {count}/{n} screens said so while down (\"{line}\")")
            } else {
                format!(", 0/{n} screens said so while down")
            }
        } else {
            String::new()
        };
        f.put(
            what,
            format!(
                "down {:.2} s; store answers +{:.2} s, new project RUNNING +{:.2} s; \
                 {redrawn}/{n} dashboards showed it (slowest +{:.2} s){said}",
                down.as_secs_f64(),
                store_back.as_secs_f64(),
                running.as_secs_f64(),
                slowest.as_secs_f64()
            ),
        );
        recovered.push(format!("{:.2} s", running.as_secs_f64()));
        if what.starts_with("stopped") && said_down.0 < n {
            f.fail(format!(
                "{} of {n} open dashboards did not say the database was away",
                n - said_down.0
            ));
        }
        if *redrawn < n {
            f.fail(format!(
                "{what}: {} dashboards did not show the change after recovery",
                n - redrawn
            ));
        }
    }
    f.put("recover", recovered.join(" / "));
    let died = live.iter_mut().filter_map(|r| r.exited()).count();
    let survived = live.len() - died;
    f.put("replicas survived", format!("{survived}/{}", live.len()));
    if survived < live.len() {
        f.fail(format!(
            "{} replicas died with the database",
            live.len() - survived
        ));
    }
    for p in ["probe0", "probe1"] {
        expected.insert(p.into(), vec!["RUNNING"]);
    }
    bench
        .record_convergence(&mut f, opts.converge_timeout, &mut live)
        .await;
    stage("pg", "converged after the faults");
    bench.check_intents_and_world(&mut f, &expected).await?;
    bench.errors(&mut f).await?;
    bench
        .delete_everything(&mut f, opts.converge_timeout, &mut live)
        .await?;
    stage("pg", "deleted everything");
    bench.ledger(&mut f).await?;
    drop(screens);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    stop_all(live).await?;
    Ok(f)
}

/// Runs `pg_ctl {args} -D {cluster}` on the private cluster, as the
/// `postgres` system user when we are root (as the embedded cluster does).
async fn pg_ctl(pg: &EmbeddedPostgres, args: &[&str]) -> anyhow::Result<()> {
    let bins = EmbeddedPostgres::locate_binaries()?;
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = tokio::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bins.pg_ctl);
        c
    } else {
        tokio::process::Command::new(&bins.pg_ctl)
    };
    cmd.args(args)
        .arg("-D")
        .arg(pg.cluster_dir())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, as the embedded cluster starts it.
        .process_group(0);
    if args[0] != "stop" {
        cmd.arg("-l").arg(pg.log_file());
    }
    let out = cmd.output().await?;
    if !out.status.success() {
        anyhow::bail!(
            "pg_ctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Polls until the server accepts a connection; when it did.
async fn wait_accepting(url: &str) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        if let Ok(c) = PgConnection::connect(url).await {
            let _ = c.close().await;
            return Ok(Instant::now());
        }
        if started.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("PostgreSQL did not come back within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
