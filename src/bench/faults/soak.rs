//! Scenario 4: idle dashboards plus many projects churning for minutes.
//! The SSH front end and the replicas run as their own processes, so their
//! resident sets are sampled alone; errors of every kind are counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::replica::rss_kib;
use super::{Bench, FaultOptions, Figures, churn, stage, stop_all};
use crate::bench::console::Session;

pub async fn run(admin_url: &str, opts: &FaultOptions) -> anyhow::Result<Figures> {
    let bench = Bench::create(admin_url, opts).await?;
    let r = scenario(&bench, opts).await;
    bench.drop_all().await?;
    r
}

async fn scenario(bench: &Bench, opts: &FaultOptions) -> anyhow::Result<Figures> {
    let mut f = Figures::new("soak");
    let mut live = vec![bench.spawner.spawn(0, 0)?, bench.spawner.spawn(1, 0)?];
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut front = bench.spawner.spawn_front(&listen)?;
    let key = bench.sign_in_key().await?;
    let (mut expected, mut names) = bench
        .bring_up(opts.soak_projects, opts, &mut live, &mut f, "the soak")
        .await?;
    stage("soak", "projects up; opening dashboards");
    let addr: std::net::SocketAddr = listen.parse()?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base_rss = front.pid().and_then(rss_kib).unwrap_or(0);
    let mut screens = Vec::new();
    let mut open_errors = 0;
    for _ in 0..opts.soak_sessions {
        match Session::open_as(addr, &key, "faults").await {
            Ok(s) => screens.push(s),
            Err(_) => open_errors += 1,
        }
    }
    f.put(
        "dashboards",
        format!("{} open, {open_errors} failed to open", screens.len()),
    );
    stage("soak", "dashboards open; churning");

    let done = AtomicBool::new(false);
    let churning = churn(bench, &mut names, &mut expected, &done);
    let mut samples: Vec<(u64, Vec<u64>)> = Vec::new();
    let sampling = async {
        let t = Instant::now();
        while t.elapsed() < opts.soak {
            let front_rss = front.pid().and_then(rss_kib).unwrap_or(0);
            let replicas: Vec<u64> = live
                .iter()
                .map(|r| r.pid().and_then(rss_kib).unwrap_or(0))
                .collect();
            samples.push((front_rss, replicas));
            tokio::time::sleep(Duration::from_secs(10).min(opts.soak)).await;
        }
        done.store(true, Ordering::Relaxed);
    };
    let (churned, ()) = tokio::join!(churning, sampling);
    stage("soak", "churn over");
    f.put("soak", format!("{:.0} s", opts.soak.as_secs_f64()));
    f.put("intents", churned.intents);
    f.put("intents refused", churned.refused);
    f.put("intents failed", churned.failed);
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    f.put(
        "front RSS MiB",
        format!(
            "before dashboards {}; every 10 s: {}",
            mib(base_rss),
            samples
                .iter()
                .map(|(s, _)| mib(*s))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    f.put(
        "replica RSS MiB",
        samples
            .iter()
            .map(|(_, r)| r.iter().map(|k| mib(*k)).collect::<Vec<_>>().join("/"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let front_max = samples.iter().map(|(s, _)| *s).max().unwrap_or(0);
    f.put("rss", format!("{} MiB front max", mib(front_max)));

    // Still live: every dashboard counts a project created now (the row
    // itself may be scrolled out of view). Deletes still in flight would
    // change the count after it is read: settle first.
    if bench
        .converge(opts.converge_timeout, &mut live)
        .await
        .is_none()
    {
        f.fail("the churn did not settle");
    }
    bench.create_project("probe").await?;
    expected.insert("probe".into(), vec!["RUNNING"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM projects")
        .fetch_one(bench.pool())
        .await?;
    let title = format!("Projects ({count})");
    let waits = screens
        .iter()
        .map(|s| s.wait(|t| t.contains(&title), Duration::from_secs(30)));
    let drawn = futures::future::join_all(waits)
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count();
    if drawn < screens.len()
        && let Some(s) = screens.first()
    {
        stage("soak", &format!("a dashboard at the end:\n{}", s.text()));
    }
    f.put(
        "dashboards live at end",
        format!("{drawn}/{}", screens.len()),
    );
    if drawn < screens.len() || open_errors > 0 {
        f.fail(format!(
            "{} dashboards failed to open, {} stopped drawing",
            open_errors,
            screens.len() - drawn
        ));
    }
    if let Some(status) = front.exited() {
        f.fail(format!("the SSH front end exited: {status}"));
    }
    let died = live.iter_mut().filter_map(|r| r.exited()).count();
    f.put(
        "replicas survived",
        format!("{}/{}", live.len() - died, live.len()),
    );
    if died > 0 {
        f.fail(format!("{died} replicas died"));
    }
    let warnings = (0..2)
        .map(|slot| {
            super::replica::log_tail(&bench.log_dir, slot, 0)
                .lines()
                .count()
        })
        .sum::<usize>();
    f.put("replica log lines (last 20 each)", warnings);
    bench
        .record_convergence(&mut f, opts.converge_timeout, &mut live)
        .await;
    bench.check_intents_and_world(&mut f, &expected).await?;
    bench.errors(&mut f).await?;
    drop(screens);
    bench
        .delete_everything(&mut f, opts.converge_timeout, &mut live)
        .await?;
    bench.ledger(&mut f).await?;
    front.stop().await?;
    stop_all(live).await?;
    Ok(f)
}
