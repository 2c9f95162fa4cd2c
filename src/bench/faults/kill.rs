//! Scenario 1: SIGKILL a replica at random moments while projects are
//! created, started, stopped and deleted; restart it; repeat. Then every
//! project must reach its intent, nothing may have been created twice, and
//! deleting everything must leave nothing behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Bench, Expected, FaultOptions, Figures, churn, pick, stop_all};
use crate::reconcile::backoff::unit_random;

pub async fn run(admin_url: &str, opts: &FaultOptions) -> anyhow::Result<Figures> {
    let bench = Bench::create(admin_url, opts).await?;
    let r = scenario(&bench, opts).await;
    bench.drop_all().await?;
    r
}

async fn scenario(bench: &Bench, opts: &FaultOptions) -> anyhow::Result<Figures> {
    let mut f = Figures::new("kill -9");
    let replicas = opts.replicas.max(1);
    let mut live = Vec::new();
    for slot in 0..replicas {
        live.push(bench.spawner.spawn(slot, 0)?);
    }
    let mut expected: Expected = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    for i in 0..opts.projects {
        let name = format!("p{i}");
        bench.create_project(&name).await?;
        expected.insert(name.clone(), vec!["RUNNING"]);
        names.push(name);
    }

    // Churn and kills at once; the churn stops when the kills are done.
    let done = AtomicBool::new(false);
    let churning = churn(bench, &mut names, &mut expected, &done);
    let mut leases_at_kill = 0i64;
    let mut victims: Vec<String> = Vec::new();
    let kills = async {
        for _ in 0..opts.kills {
            let wait = Duration::from_millis(300 + (unit_random() * 1200.0) as u64);
            tokio::time::sleep(wait).await;
            let victim = live.swap_remove(pick(live.len()));
            let (slot, generation) = (victim.slot, victim.generation);
            victim.kill9().await?;
            let held: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM sandboxes WHERE lease_owner = $1 AND lease_until > now())
                      + (SELECT count(*) FROM databases WHERE lease_owner = $1 AND lease_until > now())",
            )
            .bind(format!("r{slot}.g{generation}"))
            .fetch_one(bench.pool())
            .await?;
            leases_at_kill += held;
            victims.push(format!("r{slot}.g{generation}"));
            // A supervisor restarts it, under a new name.
            tokio::time::sleep(Duration::from_millis(100)).await;
            live.push(bench.spawner.spawn(slot, generation + 1)?);
        }
        anyhow::Ok(())
    };
    // The churn stops when the kills are over, however they ended.
    let kills = async {
        let r = kills.await;
        done.store(true, Ordering::Relaxed);
        r
    };
    let churn_started = Instant::now();
    let (churned, killed) = tokio::join!(churning, kills);
    killed?;
    let churn_time = churn_started.elapsed();

    f.put("projects", opts.projects);
    f.put("projects created", opts.projects + churned.created);
    f.put("replicas", replicas);
    f.put("kills", opts.kills);
    f.put("leases held at kills", leases_at_kill);
    f.put(
        "cut-off effects",
        format!(
            "{} (done by a killed replica, its status write never made: another replica took over)",
            cut_off(bench, &victims).await?
        ),
    );
    f.put("intents", churned.intents);
    f.put("intents refused", churned.refused);
    f.put("intents failed", churned.failed);
    f.put("churn", format!("{:.1} s", churn_time.as_secs_f64()));

    bench
        .record_convergence(&mut f, opts.converge_timeout, &mut live)
        .await;
    bench.check_intents_and_world(&mut f, &expected).await?;
    let orphans = super::world::orphans(&bench.world, bench.pool()).await?;
    f.put("orphans before delete", orphans.len());
    if let Some((kind, name)) = orphans.first() {
        f.fail(format!(
            "{} objects with no row, e.g. {kind} {name}",
            orphans.len()
        ));
    }
    bench.errors(&mut f).await?;
    bench
        .delete_everything(&mut f, opts.converge_timeout, &mut live)
        .await?;
    let ledger = bench.ledger(&mut f).await?;
    f.put(
        "repeated calls",
        format!(
            "{} ensure, {} stop, {} delete found the world already there (idempotent retries)",
            ledger.count("ensure", "noop"),
            ledger.count("stop", "noop"),
            ledger.count("delete", "noop")
        ),
    );
    stop_all(live).await?;
    Ok(f)
}

/// Driver effects (create, start, stop, delete) a killed replica made but
/// never recorded itself: the kill fell between the driver call and the
/// fenced write (or an intent superseded the write).
async fn cut_off(bench: &Bench, killed: &[String]) -> anyhow::Result<i64> {
    let effects: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT replica, name, count(*) FROM world_calls
          WHERE replica = ANY($1) AND effect IN ('create', 'start', 'stop', 'delete')
          GROUP BY 1, 2",
    )
    .bind(killed)
    .fetch_all(&bench.world)
    .await?;
    let recorded: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT actor, resource, count(*) FROM events
          WHERE actor = ANY($1) AND kind <> 'project' GROUP BY 1, 2",
    )
    .bind(killed)
    .fetch_all(bench.pool())
    .await?;
    let recorded: HashMap<(String, String), i64> =
        recorded.into_iter().map(|(a, r, n)| ((a, r), n)).collect();
    Ok(effects
        .into_iter()
        .map(|(a, r, n)| (n - recorded.get(&(a, r)).copied().unwrap_or(0)).max(0))
        .sum())
}
