//! `kiln bench create`: create → RUNNING on the local driver (a child
//! `kiln serve` with a real reconcile loop), with the warm pools (databases
//! and sandboxes) off and on, side by side: a plain project, and a project from a template
//! that clones a small repository (a `git daemon` on loopback) and runs a
//! setup script. Creates run one after another; each project is deleted
//! before the next, and with the pool on, the pool is full before the first
//! and, in a second run, before each.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::console::{ChildServer, ms};
use super::{Scratch, quantile};
use crate::console::{Console, Front, NewProject, RepoPolicy};
use crate::model::ProjectStatus;
use crate::store::{SecretKey, Store};

/// Pooled databases and sandboxes kept in the "pool on" runs.
const POOL: u32 = 4;

pub async fn create(admin_url: &str, creates: usize) -> anyhow::Result<()> {
    let scratch = Scratch::create(admin_url).await?;
    let repo = GitRepo::serve().await?;
    let result = run(&scratch.url, &repo, creates).await;
    repo.stop();
    scratch.drop_database().await?;
    result
}

/// One run's figures.
struct Figures {
    samples: Vec<Duration>,
    /// The create calls themselves (their transaction committed).
    calls: Vec<Duration>,
    /// Where the loop's time went (see `reconcile::trace`), per kind.
    stages: Stages,
    /// Creates that claimed a pooled database, a pooled sandbox.
    claimed: usize,
    claimed_sandboxes: usize,
    /// From the create to each resource's RUNNING write: sandbox, database.
    sandbox: Vec<Duration>,
    database: Vec<Duration>,
    /// Each create's figures in order (create → RUNNING, the call, the
    /// sandbox, the database), to show where the slowest ones went.
    each: Vec<[Duration; 4]>,
}

impl Figures {
    fn line(&self) -> String {
        format!(
            "p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  (from the pools: {} databases, \
             {} sandboxes of {}; p50 sandbox {:.1} ms, database {:.1} ms)",
            ms(quantile(&self.samples, 0.5)),
            ms(quantile(&self.samples, 0.99)),
            ms(self.samples.last().copied().unwrap_or_default()),
            self.claimed,
            self.claimed_sandboxes,
            self.samples.len(),
            ms(quantile(&self.sandbox, 0.5)),
            ms(quantile(&self.database, 0.5)),
        )
    }

    /// Where a create's time went: the create call, then each resource's
    /// stages in the loop (means over the run, from the server's
    /// `kiln_create_stage_seconds`).
    fn breakdown(&self) -> Vec<String> {
        let mean_call = self.calls.iter().sum::<Duration>() / self.calls.len().max(1) as u32;
        let mut lines = vec![format!(
            "create call (committed) mean {:.1} ms, p50 {:.1} ms; then, mean ms per resource \
             (notify: created → the loop woken; queued: created → lease sent):",
            ms(mean_call),
            ms(quantile(&self.calls, 0.5)),
        )];
        for kind in ["sandbox", "database"] {
            let parts: Vec<String> = crate::reconcile::trace::STAGES
                .iter()
                .filter_map(|stage| {
                    let mean = self.stages.mean(kind, stage)?;
                    Some(format!("{stage} {:.1}", ms(mean)))
                })
                .collect();
            lines.push(format!("  {kind:<8}  {}", parts.join(", ")));
        }
        let mut slowest = self.each.clone();
        slowest.sort_by_key(|e| std::cmp::Reverse(e[0]));
        let parts: Vec<String> = slowest
            .iter()
            .take(3)
            .map(|[total, call, sandbox, database]| {
                format!(
                    "{:.0} (call {:.0}, sandbox {:.0}, database {:.0})",
                    ms(*total),
                    ms(*call),
                    ms(*sandbox),
                    ms(*database)
                )
            })
            .collect();
        lines.push(format!("  slowest ms: {}", parts.join("; ")));
        lines
    }
}

/// Sums and counts of `kiln_create_stage_seconds`, by (kind, stage).
#[derive(Default)]
struct Stages {
    sums: std::collections::HashMap<(String, String), (f64, f64)>,
}

impl Stages {
    /// Reads them from a Prometheus text exposition.
    fn parse(text: &str) -> Stages {
        let mut sums = std::collections::HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("kiln_create_stage_seconds_") else {
                continue;
            };
            let (is_sum, rest) = match rest {
                r if r.starts_with("sum{") => (true, &r[4..]),
                r if r.starts_with("count{") => (false, &r[6..]),
                _ => continue,
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let label = |name: &str| {
                labels.split(',').find_map(|kv| {
                    let v = kv.strip_prefix(name)?.strip_prefix("=\"")?;
                    Some(v.trim_end_matches('"').to_string())
                })
            };
            let (Some(kind), Some(stage)) = (label("kind"), label("stage")) else {
                continue;
            };
            let e: &mut (f64, f64) = sums.entry((kind, stage)).or_default();
            if is_sum {
                e.0 = value;
            } else {
                e.1 = value;
            }
        }
        Stages { sums }
    }

    /// What was added since `earlier` (a scrape of the same server).
    fn since(&self, earlier: &Stages) -> Stages {
        let sums = self
            .sums
            .iter()
            .map(|(k, (sum, count))| {
                let (s0, c0) = earlier.sums.get(k).copied().unwrap_or_default();
                (k.clone(), (sum - s0, count - c0))
            })
            .collect();
        Stages { sums }
    }

    fn mean(&self, kind: &str, stage: &str) -> Option<Duration> {
        let (sum, count) = self.sums.get(&(kind.to_string(), stage.to_string()))?;
        (*count > 0.0).then(|| Duration::from_secs_f64(sum / count))
    }
}

/// The server's `/metrics` text (plain HTTP/1.0 on loopback).
async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}

async fn run(url: &str, repo: &GitRepo, creates: usize) -> anyhow::Result<()> {
    let key_hex: String = {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("random");
        b.iter().map(|x| format!("{x:02x}")).collect()
    };
    let store = Store::connect(url, SecretKey::from_hex(&key_hex)?, 4).await?;
    store.migrate().await?;
    let user = store.create_user("bench", None, false).await?;
    let console = Console::new(store.clone(), None, None).with_repos(RepoPolicy {
        allow_private_hosts: true,
    });
    console
        .operator()
        .add_template(&format!(
            "name = \"bench\"\ndescription = \"bench\"\ncommand = \"sh\"\n\
             setup = \"echo ready > .ready\"\n[repo]\nurl = \"{}\"\nbranch = \"main\"\n\
             [env]\nBENCH = \"1\"\n",
            repo.url
        ))
        .await?;
    let mut table = Vec::new();
    for template in [false, true] {
        let mut row = Vec::new();
        // Pool on first: the run with it off drains it, so the bench
        // leaves no pooled database or sandbox behind.
        for (pool, paces) in [
            (POOL, &[Pace::BackToBack, Pace::Refilled][..]),
            (0, &[Pace::BackToBack][..]),
        ] {
            let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let config = format!(
                "[local]\nsandbox_command = \"sh\"\n[git]\nallow_private_hosts = true\n\
                 [pool]\ndatabases = {pool}\nsandboxes = {pool}\n[http]\nlisten = \"{http}\"\n"
            );
            let server = ChildServer::start_with_config(url, &key_hex, &config).await?;
            let figures = async {
                pool_settles(&store, pool).await?;
                // The bench learns of RUNNING as a dashboard does, from the
                // change feed, rather than by polling: reads every few
                // milliseconds would take CPU from the work it measures.
                let feed = store.listen().await?;
                let mut changes = feed.subscribe();
                let new = NewProject {
                    template: template.then(|| "bench".into()),
                    ..NewProject::default()
                };
                // Creates claim in their own transaction, as `kiln serve`'s
                // console does with a pool configured.
                let claims = store
                    .clone()
                    .with_pool_claims(pool > 0)
                    .with_sandbox_pool_claims(pool > 0);
                let console = Console::new(claims, None, None).with_repos(RepoPolicy {
                    allow_private_hosts: true,
                });
                let as_user = console.as_user(user.clone(), Front::Cli);
                // The server's stage sums so far: each pace's are the
                // difference.
                let mut stages_before = Stages::default();
                let mut runs = Vec::new();
                for &pace in paces {
                    let mut f = Figures {
                        samples: Vec::with_capacity(creates),
                        calls: Vec::with_capacity(creates),
                        stages: Stages::default(),
                        claimed: 0,
                        claimed_sandboxes: 0,
                        sandbox: Vec::with_capacity(creates),
                        database: Vec::with_capacity(creates),
                        each: Vec::with_capacity(creates),
                    };
                    for i in 0..creates {
                        let name = format!("bench{i}");
                        if pace == Pace::Refilled {
                            pool_settles(&store, pool).await?;
                        }
                        let started = Instant::now();
                        as_user
                            .create_from(&name, &new)
                            .await
                            .with_context(|| format!("create {name}"))?;
                        let call = started.elapsed();
                        f.calls.push(call);
                        running(&store, user.id, &name, &mut changes).await?;
                        let total = started.elapsed();
                        f.samples.push(total);
                        let r = resources(&store, user.id, &name).await?;
                        let (pooled, pooled_sandbox, sandbox, database) = r;
                        f.claimed += usize::from(pooled);
                        f.claimed_sandboxes += usize::from(pooled_sandbox);
                        f.each.push([total, call, sandbox, database]);
                        f.sandbox.push(sandbox);
                        f.database.push(database);
                        delete(&store, user.id, &name).await?;
                    }
                    let stages = Stages::parse(&scrape(http).await.context("scraping /metrics")?);
                    f.stages = stages.since(&stages_before);
                    stages_before = stages;
                    f.samples.sort();
                    f.calls.sort();
                    f.sandbox.sort();
                    f.database.sort();
                    runs.push(f);
                }
                anyhow::Ok(runs)
            }
            .await;
            server.stop().await;
            row.extend(figures?);
        }
        table.push((template, row));
    }
    println!(
        "create → RUNNING, local driver, {creates} creates one after another \
         (each deleted before the next), warm pools of databases and sandboxes off and on \
         ({POOL} each); with the pools on, each create either follows the last one's delete \
         at once (back to back: the pools refill meanwhile) or waits until they are full \
         again:"
    );
    for (template, row) in &table {
        let what = if *template {
            "template (clone of a small repository over git://, a setup script, a database)"
        } else {
            "plain project (a sandbox and a database)"
        };
        println!("  {what}");
        // In the order run: pool on back to back, refilled; pool off.
        for (label, f) in [
            ("pool off", &row[2]),
            ("pool on, back to back", &row[0]),
            ("pool on, refilled before each", &row[1]),
        ] {
            println!("    {label}");
            println!("                 {}", f.line());
            for line in f.breakdown() {
                println!("                 {line}");
            }
        }
    }
    Ok(())
}

/// How the creates of a run follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Each as soon as the one before is deleted: the pools refill (a
    /// `CREATE DATABASE`, a sandbox started) while the next create runs.
    BackToBack,
    /// Each once the pools are full again and nothing is being made: a
    /// create as one made now and then meets it.
    Refilled,
}

/// Waits until each pool holds `target` ready resources and nothing else
/// (what an earlier run left is dropped first).
async fn pool_settles(store: &Store, target: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    for kind in crate::model::pool::PoolKind::ALL {
        loop {
            let p = store.pool_status(kind).await?;
            if p.ready == i64::from(target)
                && p.creating == 0
                && p.discarding == 0
                && p.claimed_pending == 0
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the {} pool did not settle at {target} within 60 s: {p:?}",
                    kind.as_str()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Whether the project's database and sandbox were claimed from the pools,
/// and how long after the project's creation its sandbox and its database
/// were last written (their RUNNING).
async fn resources(
    store: &Store,
    owner: uuid::Uuid,
    name: &str,
) -> anyhow::Result<(bool, bool, Duration, Duration)> {
    let p = store.find_project(owner, name).await?;
    let (pooled, pooled_sandbox, sandbox, database): (Option<String>, bool, f64, f64) =
        sqlx::query_as(
            "SELECT d.pooled_from, s.pooled,
                extract(epoch FROM s.updated_at - p.created_at)::float8,
                extract(epoch FROM d.updated_at - p.created_at)::float8
           FROM projects p JOIN databases d ON d.project_id = p.id
           JOIN sandboxes s ON s.project_id = p.id
          WHERE p.id = $1",
        )
        .bind(p.project.id)
        .fetch_one(store.pool())
        .await?;
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    Ok((
        pooled.is_some(),
        pooled_sandbox,
        secs(sandbox),
        secs(database),
    ))
}

/// Waits for the project to be RUNNING: reads it again whenever the change
/// feed says its row changed (and every 50 ms, should a notification be
/// lost).
async fn running(
    store: &Store,
    owner: uuid::Uuid,
    name: &str,
    changes: &mut tokio::sync::broadcast::Receiver<crate::store::notify::Change>,
) -> anyhow::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    let started = Instant::now();
    loop {
        let p = store.find_project(owner, name).await?;
        match p.project.status {
            ProjectStatus::Running => return Ok(()),
            ProjectStatus::Error => bail!(
                "{name} failed: {:?}",
                p.resources.iter().find_map(|r| r.last_error.clone())
            ),
            _ if started.elapsed() > Duration::from_secs(120) => {
                bail!("{name} was not RUNNING within 120 s")
            }
            _ => {}
        }
        let id = p.project.id;
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            loop {
                match changes.recv().await {
                    Ok(c) if c.table == "projects" && c.id == Some(id) => return,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        })
        .await;
    }
}

async fn delete(store: &Store, owner: uuid::Uuid, name: &str) -> anyhow::Result<()> {
    store
        .record_intent(owner, name, crate::model::Intent::Delete, "bench")
        .await?;
    let started = Instant::now();
    while store.find_project(owner, name).await.is_ok() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{name} was not deleted within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A small repository (a README and 20 source files) behind `git daemon`.
struct GitRepo {
    dir: std::path::PathBuf,
    daemon: std::process::Child,
    url: String,
}

impl GitRepo {
    async fn serve() -> anyhow::Result<GitRepo> {
        let dir = std::env::temp_dir().join(format!(
            "kb-git-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let work = dir.join("work");
        std::fs::create_dir_all(&work)?;
        std::fs::write(work.join("README.md"), "bench\n")?;
        for i in 0..20 {
            std::fs::write(
                work.join(format!("file{i}.txt")),
                format!("{i}\n").repeat(50),
            )?;
        }
        let git = |args: &[&str], cwd: &std::path::Path| -> anyhow::Result<()> {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=b", "-c", "user.email=b@b"])
                .args(args)
                .current_dir(cwd)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .context("running git")?;
            if !out.status.success() {
                bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        git(&["init", "-q", "-b", "main"], &work)?;
        git(&["add", "."], &work)?;
        git(&["commit", "-q", "-m", "bench"], &work)?;
        git(&["clone", "-q", "--bare", "work", "app.git"], &dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let daemon = std::process::Command::new("git")
            .arg("daemon")
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", dir.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting git daemon")?;
        let repo = GitRepo {
            dir,
            daemon,
            url: format!("git://127.0.0.1:{port}/app.git"),
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("git daemon did not listen on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(repo)
    }

    fn stop(mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_means_come_from_the_sums_and_counts() {
        let text = "# HELP kiln_create_stage_seconds x\n\
            kiln_create_stage_seconds_bucket{kind=\"sandbox\",stage=\"act\",le=\"0.001\"} 0\n\
            kiln_create_stage_seconds_sum{kind=\"sandbox\",stage=\"act\"} 0.03\n\
            kiln_create_stage_seconds_count{kind=\"sandbox\",stage=\"act\"} 3\n\
            kiln_create_stage_seconds_sum{kind=\"database\",stage=\"write\"} 0\n\
            kiln_create_stage_seconds_count{kind=\"database\",stage=\"write\"} 0\n";
        let s = Stages::parse(text);
        assert_eq!(s.mean("sandbox", "act"), Some(Duration::from_millis(10)));
        assert_eq!(s.mean("database", "write"), None);
        assert_eq!(s.mean("sandbox", "lease"), None);
    }

    #[test]
    fn a_later_scrapes_stages_less_an_earlier_one_are_what_came_between() {
        let scrape = |sum: f64, count: u32| {
            Stages::parse(&format!(
                "kiln_create_stage_seconds_sum{{kind=\"sandbox\",stage=\"act\"}} {sum}\n\
                 kiln_create_stage_seconds_count{{kind=\"sandbox\",stage=\"act\"}} {count}\n"
            ))
        };
        let between = scrape(0.05, 4).since(&scrape(0.03, 3));
        let mean = between.mean("sandbox", "act").unwrap();
        assert!((mean.as_secs_f64() - 0.02).abs() < 1e-9, "{mean:?}");
        // Nothing earlier: everything is new.
        let all = scrape(0.03, 3).since(&Stages::default());
        assert_eq!(all.mean("sandbox", "act"), Some(Duration::from_millis(10)));
    }
}
