//! Scenario 2: two replica processes on one database take every project
//! through create, stop, start and delete, one step at a time; each
//! transition must reach the driver exactly once.

use std::time::Instant;

use super::{Bench, FaultOptions, Figures, stop_all};
use crate::model::intent::Intent;

pub async fn run(admin_url: &str, opts: &FaultOptions) -> anyhow::Result<Figures> {
    let bench = Bench::create(admin_url, opts).await?;
    let r = scenario(&bench, opts).await;
    bench.drop_all().await?;
    r
}

async fn scenario(bench: &Bench, opts: &FaultOptions) -> anyhow::Result<Figures> {
    let mut f = Figures::new("two replicas");
    let mut live = vec![bench.spawner.spawn(0, 0)?, bench.spawner.spawn(1, 0)?];
    let names: Vec<String> = (0..opts.projects).map(|i| format!("t{i}")).collect();
    f.put("projects", opts.projects);
    f.put("replicas", 2);
    f.put("kills", 0);
    f.put("intents", opts.projects * 4);

    let started = Instant::now();
    let mut steps = Vec::new();
    for step in ["create", "stop", "start", "delete"] {
        let t = Instant::now();
        for name in &names {
            match step {
                "create" => bench.create_project(name).await?,
                "stop" => bench.intent(name, Intent::Stop).await?,
                "start" => bench.intent(name, Intent::Start).await?,
                _ => bench.intent(name, Intent::Delete).await?,
            }
        }
        match bench.converge(opts.converge_timeout, &mut live).await {
            Some(_) => steps.push(format!("{step} {:.2} s", t.elapsed().as_secs_f64())),
            None => {
                steps.push(format!("{step} timeout"));
                f.fail(format!(
                    "{step}: not converged within {:?}",
                    opts.converge_timeout
                ));
                break;
            }
        }
        if step != "delete" {
            let bad = bench.world_mismatches().await?;
            if let Some(first) = bad.first() {
                f.fail(format!(
                    "after {step}: {} resources not as desired, e.g. {first}",
                    bad.len()
                ));
            }
        }
    }
    f.put(
        "converge",
        format!("{:.2} s", started.elapsed().as_secs_f64()),
    );
    f.put("steps", steps.join(", "));
    bench.errors(&mut f).await?;
    f.put("delete-all", "step 4");
    let objects: i64 = sqlx::query_scalar("SELECT count(*) FROM world_objects")
        .fetch_one(&bench.world)
        .await?;
    f.put("orphans", objects);
    if objects > 0 {
        f.fail(format!(
            "{objects} driver-side objects left after deleting everything"
        ));
    }

    // Every resource: one create, one stop, one start, one delete, and no
    // call that found its work already done.
    let off: Vec<(String, String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT kind, name,
                count(*) FILTER (WHERE effect = 'create'),
                count(*) FILTER (WHERE effect = 'stop'),
                count(*) FILTER (WHERE effect = 'start'),
                count(*) FILTER (WHERE effect = 'delete'),
                count(*) FILTER (WHERE effect = 'noop')
           FROM world_calls WHERE op <> 'sync_env'
          GROUP BY 1, 2
         HAVING count(*) FILTER (WHERE effect = 'create') <> 1
             OR count(*) FILTER (WHERE effect = 'stop') <> 1
             OR count(*) FILTER (WHERE effect = 'start') <> 1
             OR count(*) FILTER (WHERE effect = 'delete') <> 1
             OR count(*) FILTER (WHERE effect = 'noop') <> 0",
    )
    .fetch_all(&bench.world)
    .await?;
    let touched: i64 = sqlx::query_scalar("SELECT count(DISTINCT (kind, name)) FROM world_calls")
        .fetch_one(&bench.world)
        .await?;
    f.put(
        "resources",
        format!("{touched} (expected {})", opts.projects * 2),
    );
    if touched != (opts.projects * 2) as i64 {
        f.fail(format!(
            "{touched} resources reached the driver, expected {}",
            opts.projects * 2
        ));
    }
    f.put("not exactly once", off.len());
    if let Some((kind, name, c, s, st, d, n)) = off.first() {
        f.fail(format!(
            "{} resources not transitioned exactly once, e.g. {kind} {name}: \
             create {c}, stop {s}, start {st}, delete {d}, repeated {n}",
            off.len()
        ));
    }
    bench.ledger(&mut f).await?;
    stop_all(live).await?;
    Ok(f)
}
