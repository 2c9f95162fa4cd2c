//! `kiln bench reconcile`: numbers for the reconcile loop, printed, never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::fake_driver::FakeDriver;
use crate::reconcile::{CycleStats, ReconcileConfig, Reconciler};
use crate::store::{SecretKey, Store};

pub async fn reconcile(
    admin_url: &str,
    projects: usize,
    idle_projects: usize,
) -> anyhow::Result<()> {
    let scratch = super::Scratch::create(admin_url).await?;
    let result = run_all(&scratch.url, projects, idle_projects).await;
    scratch.drop_database().await?;
    let rates = result?;
    // The reference, against the same server in the same run.
    match pgbench_tps(admin_url).await {
        Ok(Some(tps)) => {
            println!(
                "reference: pgbench -N -c 16 -j 2 -T 10 on the same server: {tps:.0} transactions/s"
            );
            for (label, rate) in rates {
                println!("  {label}: {:.2}x pgbench's transactions/s", rate / tps);
            }
        }
        Ok(None) => println!("reference: pgbench is not on PATH; no comparison"),
        Err(e) => println!("reference: pgbench failed: {e:#}"),
    }
    Ok(())
}

/// pgbench's simple-update load (`-N`) on a scratch database of the same
/// server: the commit-bound ceiling the loop is compared with. `None`
/// when pgbench is not installed.
async fn pgbench_tps(admin_url: &str) -> anyhow::Result<Option<f64>> {
    use anyhow::Context;
    let Ok(pgbench) = which::which("pgbench") else {
        return Ok(None);
    };
    let scratch = super::Scratch::create(admin_url).await?;
    let run = async {
        let init = tokio::process::Command::new(&pgbench)
            .args(["-i", "-s", "1", "-q", &scratch.url])
            .output()
            .await
            .context("pgbench -i")?;
        anyhow::ensure!(
            init.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        );
        let out = tokio::process::Command::new(&pgbench)
            .args(["-N", "-c", "16", "-j", "2", "-T", "10", &scratch.url])
            .output()
            .await
            .context("pgbench")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("tps = ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<f64>().ok())
            })
            .with_context(|| format!("no tps in pgbench's output: {text}"))
    };
    let tps = run.await;
    scratch.drop_database().await?;
    tps.map(Some)
}

/// Projects per owner in the throughput runs.
const PROJECTS_PER_OWNER: usize = 100;

/// Returns the transitions per second of each run, labelled.
async fn run_all(
    url: &str,
    projects: usize,
    idle_projects: usize,
) -> anyhow::Result<Vec<(String, f64)>> {
    let mut rates = Vec::new();
    let store = Store::connect(url, SecretKey::generate(), 40).await?;
    store.migrate().await?;
    println!(
        "reconcile throughput: fake driver with zero latency, {projects} new projects = {} resource transitions",
        projects * 2
    );
    // The same run with the operator HTTP listener off, then on and
    // scraped: metrics are recorded either way (they cost a few atomic
    // adds); what the listener adds is serving and refreshing them.
    for http in [false, true] {
        let listener = if http {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let health = Arc::new(crate::ops::health::Health {
                store: store.clone(),
                feed: Arc::new(store.listen().await?),
                // No SSH here, and /readyz is not asked: only /metrics is scraped.
                ssh: addr,
                shutdown: tokio_util::sync::CancellationToken::new(),
            });
            let stop = tokio_util::sync::CancellationToken::new();
            tokio::spawn(crate::ops::http::run(listener, health, stop.clone()));
            println!(
                "  operator HTTP listener on, /metrics scraped every {:?}:",
                super::scrape::EVERY
            );
            Some((stop, super::scrape::Scraper::start(addr)))
        } else {
            println!("  operator HTTP listener off:");
            None
        };
        for replicas in [1usize, 2] {
            // Owners of a hundred projects each: a create counts its
            // owner's projects against the quota, so one owner of them all
            // would make the setup quadratic.
            let run = format!("bench{}{replicas}", if http { "h" } else { "" });
            let mut users = Vec::new();
            for u in 0..projects.div_ceil(PROJECTS_PER_OWNER) {
                users.push(
                    store
                        .create_user(&format!("{run}-{u}"), None, false)
                        .await?
                        .id,
                );
            }
            // Made through the create path, a few at a time (the setup is
            // not measured; one at a time it took longer than the runs).
            futures::stream::iter(0..projects)
                .map(|i| {
                    let (store, owner) = (&store, users[i / PROJECTS_PER_OWNER]);
                    async move {
                        store
                            .create_project(owner, &format!("p{i}"), "", "bench")
                            .await
                    }
                })
                .buffer_unordered(8)
                .try_collect::<Vec<_>>()
                .await?;
            let fake = Arc::new(FakeDriver::new());
            let started = Instant::now();
            let mut tasks = Vec::new();
            for r in 0..replicas {
                let rec = Reconciler::new(
                    store.clone(),
                    fake.clone(),
                    fake.clone(),
                    ReconcileConfig::default(),
                    format!("bench-{replicas}-{r}"),
                );
                tasks.push(tokio::spawn(async move {
                    let mut total = CycleStats::default();
                    loop {
                        let (stats, _) = rec.drain().await?;
                        total.add(&stats);
                        if stats.leased == 0 {
                            return anyhow::Ok(total);
                        }
                    }
                }));
            }
            let mut total = CycleStats::default();
            for t in tasks {
                total.add(&t.await??);
            }
            let secs = started.elapsed().as_secs_f64();
            let transitions = total.transitions;
            let rate = transitions as f64 / secs;
            println!(
                "    replicas={replicas}: {transitions} transitions in {secs:.2} s = {rate:.0} transitions/s \
                 ({:.1} outcomes per write transaction)",
                transitions as f64 / total.write_batches.max(1) as f64
            );
            print_breakdown(&total, ReconcileConfig::default().write_lanes);
            // Counted after the clock stopped: the loop's work is checked,
            // not assumed (every project RUNNING, each ensure made once).
            let running: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM projects WHERE user_id = ANY($1) AND status = 'RUNNING'",
            )
            .bind(&users)
            .fetch_one(store.pool())
            .await?;
            let ensures = [
                crate::fake_driver::Kind::Sandbox,
                crate::fake_driver::Kind::Database,
            ]
            .map(|k| fake.call_counts(k, crate::fake_driver::Op::Ensure));
            let once = ensures
                .iter()
                .all(|c| c.len() == projects && c.values().all(|&n| n == 1));
            println!(
                "      {running} of {projects} projects RUNNING; every resource ensured exactly once: {}",
                if once { "yes" } else { "NO" }
            );
            // This run's rows would come due for observation (after
            // `observe_interval`) during a later run, whose fresh fake driver
            // does not know them: it would re-create them on its clock.
            // Parked an hour ahead, each run measures its own projects only.
            for table in ["sandboxes", "databases"] {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {table} SET next_attempt_at = now() + interval '1 hour' WHERE user_id = ANY($1)"
                )))
                .bind(&users)
                .execute(store.pool())
                .await?;
            }
            rates.push((
                format!(
                    "replicas={replicas}, listener {}",
                    if http { "on" } else { "off" }
                ),
                rate,
            ));
        }
        if let Some((stop, scraper)) = listener {
            let scrapes = scraper.stop().await;
            stop.cancel();
            println!("    ({scrapes} scrapes answered meanwhile)");
        }
    }

    println!(
        "idle resync: {idle_projects} RUNNING projects ({} resources), none due",
        idle_projects * 2
    );
    let user = store.create_user("benchidle", None, false).await?;
    seed_running(&store, user.id, idle_projects).await?;
    let fake = Arc::new(FakeDriver::new());
    let rec = Reconciler::new(
        store.clone(),
        fake.clone(),
        fake.clone(),
        ReconcileConfig::default(),
        "bench-idle",
    );
    let mut times = Vec::new();
    let mut queries = 0;
    let mut calls = 0;
    let passes = 200;
    for _ in 0..passes {
        let t = Instant::now();
        let (stats, _, _) = rec.pass().await?;
        times.push(t.elapsed());
        queries += stats.queries;
        calls += stats.driver_calls;
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    println!(
        "  {passes} passes: p50 {:.2} ms, p99 {:.2} ms; {} queries and {} driver calls per pass",
        ms(pct(0.5)),
        ms(pct(0.99)),
        queries as f64 / passes as f64,
        calls as f64 / passes as f64
    );
    idle_sweep(&store, &rec, idle_projects).await?;
    store.pool().close().await;
    Ok(rates)
}

/// The idle sweep over the same RUNNING projects: its one query per pass
/// when nothing is near its stop, its plan, and a pass that warns.
async fn idle_sweep(store: &Store, rec: &Reconciler, running: usize) -> anyhow::Result<()> {
    let policy = crate::model::idle::IdlePolicy::default();
    println!(
        "idle sweep: {running} RUNNING projects, policy stop_after {} warn_before {}",
        crate::model::idle::format_duration(policy.stop_after),
        crate::model::idle::format_duration(policy.warn_before)
    );
    let passes = 200;
    let mut times = Vec::with_capacity(passes);
    let (mut queries, mut candidates) = (0, 0);
    for _ in 0..passes {
        let t = Instant::now();
        let s = rec.idle_sweep(chrono::Utc::now()).await?;
        times.push(t.elapsed());
        queries += s.queries;
        candidates += s.candidates;
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    println!(
        "  none near their stop, {passes} passes: p50 {:.2} ms, p99 {:.2} ms; {} queries and {} rows per pass",
        ms(pct(0.5)),
        ms(pct(0.99)),
        queries as f64 / passes as f64,
        candidates as f64 / passes as f64
    );
    let warn = chrono::Duration::from_std(policy.warn_before)?;
    let plan = store
        .explain_idle_candidates(chrono::Utc::now() + warn, policy.stop_after)
        .await?;
    println!("  the sweep's query plan:");
    for line in plan.lines() {
        println!("    {line}");
    }
    // One in a hundred has sat unused for a day: the next pass warns them.
    let overdue = (running / 100).max(1) as i64;
    sqlx::query(
        "UPDATE sandboxes SET last_active_at = now() - interval '25 hours'
         WHERE id IN (SELECT id FROM sandboxes WHERE status = 'RUNNING'
                      AND resource_name LIKE '%-sbench' ORDER BY id LIMIT $1)",
    )
    .bind(overdue)
    .execute(store.pool())
    .await?;
    let t = Instant::now();
    let warned = rec.idle_sweep(chrono::Utc::now()).await?;
    let warned_ms = ms(t.elapsed());
    let t = Instant::now();
    let after = rec.idle_sweep(chrono::Utc::now()).await?;
    println!(
        "  {overdue} overdue: the pass that warns them {warned_ms:.2} ms, {} queries ({} warned); \
         the next pass {:.2} ms, {} query, {} rows, nothing to write",
        warned.queries,
        warned.warned,
        ms(t.elapsed()),
        after.queries,
        after.candidates
    );
    Ok(())
}

/// Where the replicas' passes spent their time, summed over replicas (so
/// with two the sum can exceed the wall time): the lease statements, the
/// reads and releases before the work, the outcome write transactions
/// (summed over a pass's write lanes, which run side by side, so they too
/// can exceed the pass), and the passes whole (from the lease, which
/// overlaps the previous pass's writes, to the last commit).
fn print_breakdown(s: &CycleStats, lanes: usize) {
    let passes = s.passes.max(1) as f64;
    let per_pass = |d: Duration| ms(d) / passes;
    println!(
        "      {} passes ({:.0} rows leased each), {} write transactions, {} queries \
         ({:.2} per transition); per pass: lease {:.2} ms, reads {:.2} ms, writes {:.2} ms \
         (summed over {lanes} lanes), whole {:.2} ms",
        s.passes,
        s.leased as f64 / passes,
        s.write_batches,
        s.queries,
        s.queries as f64 / s.transitions.max(1) as f64,
        per_pass(s.lease_time),
        per_pass(s.read_time),
        per_pass(s.write_time),
        per_pass(s.pass_time),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Inserts settled projects in bulk (creating 10,000 one by one would
/// measure the create path, not the resync).
async fn seed_running(store: &Store, user: Uuid, n: usize) -> anyhow::Result<()> {
    sqlx::query(
        "WITH p AS (
            INSERT INTO projects (user_id, name, slug, status)
            SELECT $1, 'idle' || g, 'idle' || g, 'RUNNING' FROM generate_series(1, $2) g
            RETURNING id, slug),
         s AS (
            INSERT INTO sandboxes (project_id, user_id, resource_name, status, next_attempt_at, applied_env_version)
            SELECT id, $1, slug || '-agentruntime-sbench', 'RUNNING', now() + interval '1 hour', 1 FROM p)
         INSERT INTO databases (project_id, user_id, resource_name, status, next_attempt_at, password_enc)
         SELECT id, $1, slug || '-agentruntime-dbench', 'RUNNING', now() + interval '1 hour', '\\x00' FROM p",
    )
    .bind(user)
    .bind(n as i32)
    .execute(store.pool())
    .await?;
    sqlx::query("ANALYZE").execute(store.pool()).await?;
    Ok(())
}
