//! The fault suite (`kiln bench faults`) at a small scale: real replica
//! processes killed with SIGKILL mid-reconcile, and two replicas on one
//! database doing every transition once. The invariants are the suite's;
//! its timings are printed, never asserted.

use std::path::PathBuf;
use std::time::Duration;

use kiln::bench::faults::{FaultOptions, faults};

use crate::support::admin_url;

fn options(scenario: &str) -> FaultOptions {
    let mut o = FaultOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_kiln")));
    o.projects = 20;
    o.kills = 2;
    o.latency = Duration::from_millis(10);
    o.lease = Duration::from_secs(2);
    // A bound so a bug cannot hang the suite, not a timing assertion.
    o.converge_timeout = Duration::from_secs(60);
    o.scenarios = vec![scenario.into()];
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_reconcile_loses_nothing_and_duplicates_nothing() {
    let report = faults(&admin_url().await, &options("kill")).await.unwrap();
    let s = &report.scenarios[0];
    assert_eq!(s.failures, Vec::<String>::new(), "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_do_every_transition_exactly_once() {
    let report = faults(&admin_url().await, &options("two-replicas"))
        .await
        .unwrap();
    let s = &report.scenarios[0];
    assert_eq!(s.failures, Vec::<String>::new(), "{}", report.table());
}

/// PostgreSQL restarted fast, then stopped for a few seconds, with
/// dashboards open: the replicas survive, the screens say the database is
/// away while it is, and show the next change once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_and_stopped_under_churn_loses_nothing() {
    let mut o = options("pg-restart");
    o.dashboards = 3;
    o.pg_outage = Duration::from_secs(3);
    let report = faults(&admin_url().await, &o).await.unwrap();
    let s = &report.scenarios[0];
    assert_eq!(s.failures, Vec::<String>::new(), "{}", report.table());
}

/// Many dashboards of one user while projects churn: every one of them is
/// still drawing at the end (one list load per change for all of them,
/// failed loads retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_dashboards_keep_drawing_while_projects_churn() {
    let mut o = options("soak");
    o.soak_projects = 60;
    o.soak_sessions = 40;
    o.soak = Duration::from_secs(15);
    let report = faults(&admin_url().await, &o).await.unwrap();
    let s = &report.scenarios[0];
    assert_eq!(s.failures, Vec::<String>::new(), "{}", report.table());
}
