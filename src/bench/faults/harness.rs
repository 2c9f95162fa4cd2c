//! What every scenario of the fault suite shares: its scratch databases and
//! replica launcher (`Bench`), the churn of intents, and the checks of the
//! invariants against Kiln's tables and the counting driver's world.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use super::replica::{self, Replica, ReplicaArgs, Spawner};
use super::world::{self, Ledger};
use super::{FaultOptions, Figures};
use crate::bench::Scratch;
use crate::model::intent::Intent;
use crate::store::{SecretKey, Store};

/// What each project may be found as once the run is over: the last intent
/// accepted, plus any sent after it whose answer was lost (a database going
/// away mid-commit). `GONE`: deleted, or never created.
pub(super) type Expected = HashMap<String, Vec<&'static str>>;
pub(super) const GONE: &str = "GONE";

/// What a churn did.
#[derive(Debug, Default)]
pub(super) struct ChurnStats {
    pub(super) intents: usize,
    /// Refused by the intents table (a project already stopping, …).
    pub(super) refused: usize,
    /// Failed: the database was away.
    pub(super) failed: usize,
    pub(super) created: usize,
}

/// Issues intents on random projects until `done`, one every 10 ms: stop a
/// running one, start a stopped one, and one time in ten delete one and
/// create another in its place. `expected` follows every answer.
pub(super) async fn churn(
    bench: &Bench,
    names: &mut Vec<String>,
    expected: &mut Expected,
    done: &std::sync::atomic::AtomicBool,
) -> ChurnStats {
    use std::sync::atomic::Ordering;
    let mut stats = ChurnStats::default();
    let mut next = names.len();
    while !done.load(Ordering::Relaxed) && !names.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let i = pick(names.len());
        let name = names[i].clone();
        let (intent, want) = if crate::reconcile::backoff::unit_random() < 0.1 {
            (Intent::Delete, GONE)
        } else if expected[&name].first() == Some(&"RUNNING") {
            (Intent::Stop, "STOPPED")
        } else {
            (Intent::Start, "RUNNING")
        };
        stats.intents += 1;
        match bench
            .store
            .record_intent(bench.user, &name, intent, "faults")
            .await
        {
            Ok(_) => {
                expected.insert(name.clone(), vec![want]);
            }
            Err(crate::store::StoreError::Db(_)) => {
                // The answer is lost, not necessarily the intent.
                expected.entry(name.clone()).or_default().push(want);
                stats.failed += 1;
                continue;
            }
            Err(_) => {
                stats.refused += 1;
                continue;
            }
        }
        if want == GONE {
            let new = format!("p{next}");
            next += 1;
            stats.intents += 1;
            match bench.create_project(&new).await {
                Ok(()) => {
                    stats.created += 1;
                    expected.insert(new.clone(), vec!["RUNNING"]);
                    names[i] = new;
                }
                Err(_) => {
                    stats.failed += 1;
                    expected.insert(new, vec!["RUNNING", GONE]);
                    names.swap_remove(i);
                }
            }
        }
    }
    stats
}

/// One scenario's databases, store and replica launcher; dropped at the end.
pub(super) struct Bench {
    kiln: Scratch,
    world_db: Scratch,
    pub(super) store: Store,
    pub(super) world: PgPool,
    pub(super) spawner: Spawner,
    pub(super) user: Uuid,
    pub(super) log_dir: PathBuf,
}

impl Bench {
    pub(super) async fn create(admin_url: &str, opts: &FaultOptions) -> anyhow::Result<Bench> {
        Self::create_on(admin_url, admin_url, opts).await
    }

    /// Kiln's scratch database on one server, the world's on another.
    pub(super) async fn create_on(
        kiln_admin: &str,
        world_admin: &str,
        opts: &FaultOptions,
    ) -> anyhow::Result<Bench> {
        let kiln = Scratch::create(kiln_admin).await?;
        let world_db = Scratch::create(world_admin).await?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let store = Store::connect(&kiln.url, SecretKey::from_hex(&key_hex)?, 6).await?;
        store.migrate().await?;
        let world = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&world_db.url)
            .await?;
        world::create_schema(&world).await?;
        let user = store.create_user("faults", None, false).await?.id;
        let log_dir = std::env::temp_dir().join(format!("kiln-faults-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&log_dir)?;
        let spawner = Spawner {
            exe: opts.exe.clone(),
            args: ReplicaArgs {
                database_url: kiln.url.clone(),
                world_url: world_db.url.clone(),
                lease: opts.lease,
                latency: opts.latency,
            },
            key_hex,
            log_dir: log_dir.clone(),
        };
        Ok(Bench {
            kiln,
            world_db,
            store,
            world,
            spawner,
            user,
            log_dir,
        })
    }

    pub(super) async fn drop_all(self) -> anyhow::Result<()> {
        // Bounded: a connection held elsewhere would keep close waiting.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.store.pool().close()).await;
        self.world.close().await;
        let kiln = self.kiln.drop_database().await;
        let world = self.world_db.drop_database().await;
        let _ = std::fs::remove_dir_all(&self.log_dir);
        kiln.and(world)
    }

    /// A new pool for Kiln's database: after the server restarted, the old
    /// one hands out each dead connection once more before it notices.
    pub(super) async fn reconnect(&mut self) -> anyhow::Result<()> {
        let store = Store::connect(
            &self.kiln.url,
            SecretKey::from_hex(&self.spawner.key_hex)?,
            6,
        )
        .await?;
        // Not closed: the dashboards' front end still uses it (and closing
        // waits for every connection, its change listener's too).
        drop(std::mem::replace(&mut self.store, store));
        Ok(())
    }

    pub(super) fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    pub(super) async fn create_project(&self, name: &str) -> anyhow::Result<()> {
        self.store
            .create_project(self.user, name, "", "faults")
            .await?;
        Ok(())
    }

    /// Creates the projects `p0`…, each expected RUNNING, and waits for
    /// `live` to bring them up; not coming up in time is a failure `before`
    /// what the scenario does next.
    pub(super) async fn bring_up(
        &self,
        projects: usize,
        opts: &FaultOptions,
        live: &mut [Replica],
        f: &mut Figures,
        before: &str,
    ) -> anyhow::Result<(Expected, Vec<String>)> {
        let mut expected: Expected = HashMap::new();
        let mut names = Vec::new();
        for i in 0..projects {
            let name = format!("p{i}");
            self.create_project(&name).await?;
            expected.insert(name.clone(), vec!["RUNNING"]);
            names.push(name);
        }
        f.put("projects", projects);
        f.put("replicas", live.len());
        f.put("kills", 0);
        if self.converge(opts.converge_timeout, live).await.is_none() {
            f.fail(format!("the projects did not come up before {before}"));
        }
        Ok((expected, names))
    }

    /// A new key the scenario's user signs in with over SSH.
    pub(super) async fn sign_in_key(
        &self,
    ) -> anyhow::Result<std::sync::Arc<russh::keys::PrivateKey>> {
        let key = russh::keys::PrivateKey::random(
            &mut russh::keys::key::safe_rng(),
            russh::keys::Algorithm::Ed25519,
        )?;
        self.store
            .add_ssh_key(self.user, &key.public_key().to_openssh()?)
            .await?;
        Ok(std::sync::Arc::new(key))
    }

    pub(super) async fn intent(&self, name: &str, intent: Intent) -> anyhow::Result<()> {
        self.store
            .record_intent(self.user, name, intent, "faults")
            .await?;
        Ok(())
    }

    /// Waits until every resource is settled where its intent says and every
    /// deleted one is gone; the time it took, or `None` at the timeout.
    pub(super) async fn converge(
        &self,
        timeout: Duration,
        replicas: &mut [Replica],
    ) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(0) = unsettled(self.pool()).await {
                return Some(started.elapsed());
            }
            for r in replicas.iter_mut() {
                if let Some(status) = r.exited() {
                    eprintln!(
                        "replica r{}.g{} exited on its own ({status}):\n{}",
                        r.slot,
                        r.generation,
                        replica::log_tail(&self.log_dir, r.slot, r.generation)
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Resources not where their intent says: (kind, name, desired, world state).
    /// Waits for convergence and records how long it took (or fails).
    pub(super) async fn record_convergence(
        &self,
        f: &mut Figures,
        timeout: Duration,
        replicas: &mut [Replica],
    ) {
        match self.converge(timeout, replicas).await {
            Some(d) => f.put("converge", format!("{:.2} s", d.as_secs_f64())),
            None => {
                f.put("converge", "timeout");
                f.fail(format!("not converged within {timeout:?}"));
            }
        }
    }

    /// The invariants every scenario ends on: no accepted intent lost, and
    /// the driver's world as the database says it should be.
    pub(super) async fn check_intents_and_world(
        &self,
        f: &mut Figures,
        expected: &Expected,
    ) -> anyhow::Result<()> {
        let lost = self.lost_intents(expected).await?;
        f.put("intents lost", lost.len());
        if let Some(first) = lost.first() {
            f.fail(format!("{} intents lost, e.g. {first}", lost.len()));
        }
        let mismatched = self.world_mismatches().await?;
        f.put("desired != observed", mismatched.len());
        if let Some(first) = mismatched.first() {
            f.fail(format!(
                "{} resources not as desired, e.g. {first}",
                mismatched.len()
            ));
        }
        Ok(())
    }

    pub(super) async fn world_mismatches(&self) -> anyhow::Result<Vec<String>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT 'sandbox', resource_name, desired FROM sandboxes
             UNION ALL SELECT 'database', resource_name, desired FROM databases",
        )
        .fetch_all(self.pool())
        .await?;
        let objects: Vec<(String, String, String)> =
            sqlx::query_as("SELECT kind, name, state FROM world_objects")
                .fetch_all(&self.world)
                .await?;
        let world: HashMap<(String, String), String> =
            objects.into_iter().map(|(k, n, s)| ((k, n), s)).collect();
        let mut bad = Vec::new();
        for (kind, name, desired) in rows {
            let state = world.get(&(kind.clone(), name.clone())).map(String::as_str);
            let fine = match desired.as_str() {
                "RUNNING" => state == Some("running"),
                "STOPPED" => state != Some("running"),
                _ => false,
            };
            if !fine {
                bad.push(format!(
                    "{kind} {name}: desired {desired}, world {}",
                    state.unwrap_or("absent")
                ));
            }
        }
        Ok(bad)
    }

    /// Projects whose stored intent is none of those the run may have left
    /// (an intent whose answer was lost may or may not have been recorded).
    pub(super) async fn lost_intents(&self, expected: &Expected) -> anyhow::Result<Vec<String>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT p.name, r.desired FROM projects p
               JOIN (SELECT project_id, desired FROM sandboxes
                     UNION ALL SELECT project_id, desired FROM databases) r ON r.project_id = p.id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut lost = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, desired) in rows {
            seen.insert(name.clone());
            match expected.get(&name) {
                Some(ok) if ok.iter().any(|w| *w == desired) => {}
                Some(ok) => lost.push(format!(
                    "{name}: wanted {}, stored {desired}",
                    ok.join(" or ")
                )),
                None => lost.push(format!("{name}: never asked for, stored {desired}")),
            }
        }
        for (name, ok) in expected {
            if !seen.contains(name) && !ok.contains(&GONE) {
                lost.push(format!(
                    "{name}: wanted {}, its resources are gone",
                    ok.join(" or ")
                ));
            }
        }
        Ok(lost)
    }

    /// Deletes every project left, waits until nothing is left, and checks
    /// that the world is empty too.
    pub(super) async fn delete_everything(
        &self,
        f: &mut Figures,
        timeout: Duration,
        replicas: &mut [Replica],
    ) -> anyhow::Result<()> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM projects")
            .fetch_all(self.pool())
            .await?;
        for name in &names {
            // A project already being deleted refuses another delete.
            let _ = self.intent(name, Intent::Delete).await;
        }
        match self.converge(timeout, replicas).await {
            Some(d) => f.put("delete-all", format!("{:.2} s", d.as_secs_f64())),
            None => {
                f.put("delete-all", "timeout");
                f.fail(format!("not everything was deleted within {timeout:?}"));
            }
        }
        let (projects, rows): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM projects),
                    (SELECT count(*) FROM sandboxes) + (SELECT count(*) FROM databases)",
        )
        .fetch_one(self.pool())
        .await?;
        let objects: Vec<(String, String)> =
            sqlx::query_as("SELECT kind, name FROM world_objects ORDER BY 1, 2")
                .fetch_all(&self.world)
                .await?;
        f.put("orphans", objects.len());
        f.put(
            "left after delete-all",
            format!("{projects} projects, {rows} resource rows"),
        );
        if projects + rows > 0 {
            f.fail(format!(
                "{projects} projects and {rows} resource rows left after deleting everything"
            ));
        }
        if !objects.is_empty() {
            f.fail(format!(
                "{} driver-side objects orphaned, e.g. {} {}",
                objects.len(),
                objects[0].0,
                objects[0].1
            ));
        }
        Ok(())
    }

    /// Duplicate creates and the call counts, from the world's log.
    pub(super) async fn ledger(&self, f: &mut Figures) -> anyhow::Result<Ledger> {
        let ledger = Ledger::read(&self.world).await?;
        f.put("duplicates", ledger.duplicates.len());
        if let Some((kind, name, n)) = ledger.duplicates.first() {
            f.fail(format!(
                "{} resources created more than once, e.g. {kind} {name} {n} times",
                ledger.duplicates.len()
            ));
        }
        f.put("driver calls", ledger.summary());
        f.put(
            "calls per replica",
            ledger
                .by_replica
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        Ok(ledger)
    }

    pub(super) async fn errors(&self, f: &mut Figures) -> anyhow::Result<()> {
        let (errors, failing): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'ERROR'), count(*) FILTER (WHERE last_error IS NOT NULL)
               FROM (SELECT status, last_error FROM sandboxes
                     UNION ALL SELECT status, last_error FROM databases) r",
        )
        .fetch_one(self.pool())
        .await?;
        f.put("errors", errors);
        f.put("rows with last_error", failing);
        if errors > 0 {
            f.fail(format!("{errors} resources in ERROR"));
        }
        Ok(())
    }
}

/// Resources not yet settled where their intent says (deleted ones count
/// until their rows are gone).
async fn unsettled(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT desired, status FROM sandboxes
                              UNION ALL SELECT desired, status FROM databases) r
          WHERE desired = 'TERMINATED' OR status <> desired",
    )
    .fetch_one(pool)
    .await
}

/// Where a scenario is, on stderr (the figures go to stdout).
pub(super) fn stage(scenario: &str, what: &str) {
    eprintln!(
        "{} faults/{scenario}: {what}",
        chrono::Utc::now().format("%H:%M:%S%.3f")
    );
}

/// A uniformly random index below `n`.
pub(super) fn pick(n: usize) -> usize {
    ((crate::reconcile::backoff::unit_random() * n as f64) as usize).min(n.saturating_sub(1))
}

/// Stops every replica gracefully.
pub(super) async fn stop_all(replicas: Vec<Replica>) -> anyhow::Result<()> {
    for r in replicas {
        r.stop().await?;
    }
    Ok(())
}
