//! `kiln bench faults`: the fault suite (issue 18 §5). Each scenario runs
//! replicas as real processes against a scratch database on the configured
//! server, with the counting driver of `world` (its own scratch database),
//! injects its fault, waits for the loop to converge and checks the
//! invariants: every project where its intent says, no resource created
//! twice, nothing left behind once everything is deleted. It prints its
//! figures and fails when an invariant does.
//!
//! Connections are few on purpose (about 30 for a scenario: the suite 8,
//! each replica 10; the soak's SSH front end 21 more): the server is often
//! shared.

mod harness;
mod kill;
mod pg_restart;
mod replica;
mod soak;
mod two_replicas;
pub mod world;

use std::path::PathBuf;
use std::time::Duration;

use harness::{Bench, Expected, churn, pick, stage, stop_all};
pub use replica::{ReplicaArgs, run_front, run_replica};

/// What to run and how hard.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    /// The `kiln` binary replicas are started from.
    pub exe: PathBuf,
    /// Projects in flight (each has a sandbox and a database).
    pub projects: usize,
    /// SIGKILLs in the kill scenario.
    pub kills: usize,
    /// Replica processes in the kill scenario.
    pub replicas: usize,
    /// Each driver call takes this long (half before its effect, half after).
    pub latency: Duration,
    /// The replicas' lease: a killed replica's rows are taken over after it.
    pub lease: Duration,
    /// Longest wait for convergence before the run counts as failed.
    pub converge_timeout: Duration,
    /// Which scenarios: `kill`, `two-replicas`, `pg-restart`.
    pub scenarios: Vec<String>,
    /// Dashboards open during the PostgreSQL restarts.
    pub dashboards: usize,
    /// How long PostgreSQL stays stopped in the second outage.
    pub pg_outage: Duration,
    /// The soak: projects churning, idle dashboards, how long.
    pub soak_projects: usize,
    pub soak_sessions: usize,
    pub soak: Duration,
}

impl FaultOptions {
    pub fn new(exe: PathBuf) -> Self {
        Self {
            exe,
            projects: 200,
            kills: 10,
            replicas: 2,
            latency: Duration::from_millis(20),
            lease: Duration::from_secs(2),
            converge_timeout: Duration::from_secs(120),
            scenarios: vec!["kill".into(), "two-replicas".into(), "pg-restart".into()],
            dashboards: 4,
            pg_outage: Duration::from_secs(10),
            soak_projects: 500,
            soak_sessions: 200,
            soak: Duration::from_secs(180),
        }
    }
}

/// One scenario's figures and the invariants it found broken.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub scenario: String,
    pub figures: Vec<(String, String)>,
    pub failures: Vec<String>,
    /// Behaviour the issue asks for that Kiln does not have yet: printed,
    /// not counted as a failure.
    pub gaps: Vec<String>,
}

impl Figures {
    fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.into(),
            ..Self::default()
        }
    }

    fn put(&mut self, name: &str, value: impl ToString) {
        self.figures.push((name.into(), value.to_string()));
    }

    fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }

    fn get(&self, name: &str) -> &str {
        self.figures
            .iter()
            .find(|(n, _)| n == name)
            .map_or("-", |(_, v)| v.as_str())
    }
}

/// Every scenario's figures, in order.
#[derive(Debug, Default)]
pub struct Report {
    pub scenarios: Vec<Figures>,
}

impl Report {
    pub fn failures(&self) -> Vec<String> {
        self.scenarios
            .iter()
            .flat_map(|s| s.failures.iter().map(|f| format!("{}: {f}", s.scenario)))
            .collect()
    }

    /// The common figures of every scenario side by side.
    pub fn table(&self) -> String {
        const COLS: [&str; 11] = [
            "projects",
            "replicas",
            "kills",
            "intents",
            "converge",
            "recover",
            "delete-all",
            "duplicates",
            "orphans",
            "errors",
            "rss",
        ];
        let mut rows = vec![
            std::iter::once("scenario".to_string())
                .chain(COLS.iter().map(|c| c.to_string()))
                .chain(std::iter::once("result".to_string()))
                .collect::<Vec<_>>(),
        ];
        for s in &self.scenarios {
            let mut row = vec![s.scenario.clone()];
            row.extend(COLS.iter().map(|c| s.get(c).to_string()));
            row.push(
                if s.failures.is_empty() {
                    "ok"
                } else {
                    "FAILED"
                }
                .into(),
            );
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        rows.iter()
            .map(|r| {
                r.iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs the chosen scenarios, printing each one's figures as it ends.
pub async fn faults(admin_url: &str, opts: &FaultOptions) -> anyhow::Result<Report> {
    let mut report = Report::default();
    println!(
        "fault suite: replicas are `{} bench faults-replica` processes; driver = counting driver \
         (every create/start/stop/delete logged in a table shared by all replicas), {} ms per call, lease {} ms",
        opts.exe.display(),
        opts.latency.as_millis(),
        opts.lease.as_millis()
    );
    for name in &opts.scenarios {
        let figures = match name.as_str() {
            "kill" => kill::run(admin_url, opts).await?,
            "two-replicas" => two_replicas::run(admin_url, opts).await?,
            "pg-restart" => pg_restart::run(admin_url, opts).await?,
            "soak" => soak::run(admin_url, opts).await?,
            other => {
                anyhow::bail!("unknown scenario {other:?} (kill, two-replicas, pg-restart, soak)")
            }
        };
        println!("{}:", figures.scenario);
        for (k, v) in &figures.figures {
            println!("  {k:<22} {v}");
        }
        for f in &figures.failures {
            println!("  INVARIANT FAILED: {f}");
        }
        for g in &figures.gaps {
            println!("  KNOWN GAP: {g}");
        }
        report.scenarios.push(figures);
    }
    println!("\n{}", report.table());
    Ok(report)
}
