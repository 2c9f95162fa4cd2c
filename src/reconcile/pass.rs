//! One reconcile pass: lease a batch of each kind, observe each batch in one
//! driver call, plan every row, give back the rows with nothing to do, and
//! work the rest concurrently. Leasing is its own step so that the loop can
//! lease the next batch while this one's outcomes are still being written.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;

use chrono::{DateTime, Utc};

use super::act::SpecInputs;
use super::plan::{Action, known, plan};
use super::trace::{self, PassTrace};
use super::{CycleStats, Reconciler, backoff, earliest, plan_input, resource_ref};
use crate::driver::{DriverError, Observed, ResourceRef};
use crate::store::StoreResult;
use crate::store::resources::{Leased, Outcome, ResourceKind, WriteResult};

/// Most outcomes written in one transaction.
const WRITE_BATCH: usize = 256;

/// The plan for a row and what the batch observation saw, or why observing failed.
pub(super) type Decision = Result<(Action, Observed), DriverError>;

/// A leased batch of each kind, not yet worked.
pub(super) struct Leases {
    sandboxes: Vec<Leased>,
    databases: Vec<Leased>,
    /// The lease's own counts (its statements and their time).
    stats: CycleStats,
    /// A batch came back full: more work is likely waiting.
    pub(super) full: bool,
    started: Instant,
    /// When a notification woke the loop for this lease, and when the
    /// lease was sent (see `trace`).
    woken: Option<DateTime<Utc>>,
    leased_at: DateTime<Utc>,
    /// Counts the rows in the leases-held gauge until the pass is over.
    held: HeldLeases,
}

/// A pass's leased rows, counted in `kiln_reconcile_leases_held` from the
/// lease until the pass is over, however it ends. Counted here rather than
/// read from the tables at scrape time: no index names a lease's owner
/// (migration 0016), and a scan per scrape would cost more than the gauge
/// is worth.
struct HeldLeases(i64);

impl HeldLeases {
    fn hold(rows: usize) -> Self {
        let rows = rows as i64;
        crate::ops::metrics::metrics()
            .reconcile_leases_held
            .add(rows);
        HeldLeases(rows)
    }
}

impl Drop for HeldLeases {
    fn drop(&mut self) {
        crate::ops::metrics::metrics()
            .reconcile_leases_held
            .sub(self.0);
    }
}

impl Leases {
    pub(super) fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.databases.is_empty()
    }

    /// What leasing an empty batch cost, for a pass that ends there.
    pub(super) fn into_stats(self) -> CycleStats {
        self.stats
    }
}

impl Reconciler {
    /// One pass: lease a batch of each kind, observe, plan, act, write.
    /// Returns the stats, the soonest retry it scheduled, and whether a
    /// batch came back full (more work is likely waiting).
    pub async fn pass(&self) -> StoreResult<(CycleStats, Option<Instant>, bool)> {
        let leases = self.lease(None).await?;
        let full = leases.full;
        if leases.is_empty() {
            return Ok((leases.into_stats(), None, false));
        }
        let (stats, soonest) = self.work_leases(leases, || {}).await?;
        Ok((stats, soonest, full))
    }

    /// Leases a batch of each kind, side by side. `woken`: when a change
    /// notification woke the loop for it.
    pub(super) async fn lease(&self, woken: Option<DateTime<Utc>>) -> StoreResult<Leases> {
        let started = Instant::now();
        let leased_at = Utc::now();
        let mut stats = CycleStats::default();
        let (sandboxes, databases) = tokio::try_join!(
            self.store.lease_batch(
                ResourceKind::Sandbox,
                &self.replica,
                self.cfg.lease,
                self.cfg.batch_size
            ),
            self.store.lease_batch(
                ResourceKind::Database,
                &self.replica,
                self.cfg.lease,
                self.cfg.batch_size
            ),
        )?;
        stats.queries += 2;
        stats.lease_time = started.elapsed();
        stats.leased = sandboxes.len() + databases.len();
        let full = sandboxes.len() as i64 >= self.cfg.batch_size
            || databases.len() as i64 >= self.cfg.batch_size;
        let held = HeldLeases::hold(stats.leased);
        Ok(Leases {
            sandboxes,
            databases,
            stats,
            full,
            started,
            woken,
            leased_at,
            held,
        })
    }

    /// Gives back leases that will not be worked (the pass before them
    /// failed), fenced by their token, so they need not wait for expiry.
    pub(super) async fn give_back(&self, leases: &Leases) -> StoreResult<()> {
        for rows in [&leases.sandboxes, &leases.databases] {
            let rows: Vec<&Leased> = rows.iter().collect();
            self.store.give_back_leases(&rows).await?;
        }
        Ok(())
    }

    /// Observes, plans and works a leased batch, writing the outcomes as
    /// they come. `worked` is called once every row's driver calls are done
    /// and only outcome writes remain (the next lease may start then).
    pub(super) async fn work_leases(
        &self,
        leases: Leases,
        worked: impl FnOnce(),
    ) -> StoreResult<(CycleStats, Option<Instant>)> {
        let Leases {
            sandboxes,
            databases,
            mut stats,
            started,
            woken,
            leased_at,
            // Held until the pass returns, whichever way.
            held: _held,
            ..
        } = leases;
        stats.passes = 1;

        // One observation per kind for the whole batch, of the rows whose
        // state is not known without it (see `plan::known`).
        let observe_started = Instant::now();
        let known_of = |row: &Leased| known(plan_input(row), row.attempts, row.never_worked);
        let to_observe = |rows: &[Leased]| -> Vec<ResourceRef> {
            rows.iter()
                .filter(|r| known_of(r).is_none())
                .map(resource_ref)
                .collect()
        };
        let sandbox_refs = to_observe(&sandboxes);
        let database_refs = to_observe(&databases);
        let (seen_sandboxes, seen_databases) = tokio::join!(
            async {
                if sandbox_refs.is_empty() {
                    Ok(HashMap::new())
                } else {
                    self.sandboxes.observe(&sandbox_refs).await
                }
            },
            async {
                if database_refs.is_empty() {
                    Ok(HashMap::new())
                } else {
                    self.databases.observe(&database_refs).await
                }
            },
        );
        stats.driver_calls +=
            usize::from(!sandbox_refs.is_empty()) + usize::from(!database_refs.is_empty());
        let observe_time = observe_started.elapsed();

        let mut unchanged: Vec<(&Leased, Duration)> = Vec::new();
        let mut work: Vec<(Leased, Decision)> = Vec::new();
        for (rows, seen) in [(&sandboxes, &seen_sandboxes), (&databases, &seen_databases)] {
            for row in rows.iter() {
                let input = plan_input(row);
                let decided = match (known_of(row), seen) {
                    (Some(observed), _) => Ok((plan(input, &observed), observed)),
                    (None, Ok(map)) => {
                        let observed = map
                            .get(&row.resource_name)
                            .cloned()
                            .unwrap_or(Observed::Absent);
                        Ok((plan(input, &observed), observed))
                    }
                    (None, Err(e)) => Err(e.clone()),
                };
                let quiet = match &decided {
                    Ok((Action::Nothing, _)) => true,
                    Ok((Action::Settle, _)) => {
                        row.status == crate::model::ResourceStatus::settled_at(row.desired)
                            && row.last_error.is_none()
                            && row.attempts == 0
                    }
                    _ => false,
                };
                if quiet {
                    let jitter = backoff::unit_random();
                    let interval = self.cfg.schedule.observe_interval;
                    unchanged.push((row, interval.mul_f64(0.9 + 0.2 * jitter)));
                } else {
                    work.push((row.clone(), decided));
                }
            }
        }

        // Rows with nothing to do go back; the sandboxes that get a spec
        // (ensure, env sync) have its inputs read for the whole batch at
        // once; both side by side.
        let reads_started = Instant::now();
        let needs_spec: Vec<&Leased> = work
            .iter()
            .filter(|(row, decided)| {
                row.kind == ResourceKind::Sandbox
                    && matches!(decided, Ok((Action::Ensure | Action::SyncEnv, _)))
            })
            .map(|(row, _)| row)
            .collect();
        let release = |kind: ResourceKind| {
            let (rows, delays): (Vec<&Leased>, Vec<Duration>) = unchanged
                .iter()
                .filter(|(r, _)| r.kind == kind)
                .cloned()
                .unzip();
            async move {
                if rows.is_empty() {
                    return Ok(0);
                }
                self.store.release_unchanged(kind, &rows, &delays).await?;
                StoreResult::Ok(1)
            }
        };
        let (released_sandboxes, released_databases, (specs, reads)) = tokio::try_join!(
            release(ResourceKind::Sandbox),
            release(ResourceKind::Database),
            SpecInputs::read(&self.store, &needs_spec)
        )?;
        stats.queries += released_sandboxes + released_databases + reads;
        stats.read_time = reads_started.elapsed();
        let specs = &specs;
        let pass_trace = PassTrace {
            woken,
            leased_at,
            lease: stats.lease_time,
            observe: observe_time,
            reads: stats.read_time,
        };

        // Rows are worked concurrently; their outcomes go to the writer of
        // their project's lane, which writes whatever has finished meanwhile
        // in one transaction (group commit): the first outcome alone, the
        // next ones batched while the previous batch commits. The lanes
        // lock disjoint projects and commit side by side.
        let lanes = self.cfg.write_lanes.max(1);
        let (lane_txs, lane_rxs): (Vec<_>, Vec<_>) = (0..lanes)
            .map(|_| mpsc::unbounded_channel::<Worked>())
            .unzip();
        let workers = async move {
            let results: Vec<StoreResult<CycleStats>> = futures::stream::iter(work)
                .map(|(row, decided)| {
                    let done = lane_txs[lane_of(row.project_id, lanes)].clone();
                    // Lines logged while working a row name its owner and project.
                    let span = tracing::info_span!(
                        "reconcile",
                        user_id = %row.user_id,
                        project_id = %row.project_id,
                        resource = %row.resource_name,
                    );
                    let work = async move {
                        let acting = Instant::now();
                        let (s, out, driver_ok) = self.work_row(&row, decided, specs).await?;
                        // The writer is gone only if it failed; the pass fails with it.
                        let _ = done.send(Worked {
                            row,
                            out,
                            driver_ok,
                            act: acting.elapsed(),
                            done_at: Instant::now(),
                        });
                        Ok(s)
                    };
                    tracing::Instrument::instrument(work, span)
                })
                .buffer_unordered(self.cfg.concurrency.max(1))
                .collect()
                .await;
            worked();
            results
        };
        let pass_trace = &pass_trace;
        let writers = futures::future::join_all(
            lane_rxs
                .into_iter()
                .map(|rx| self.write_lane(rx, pass_trace)),
        );
        let (results, written) = tokio::join!(workers, writers);
        for r in results {
            stats.add(&r?);
        }
        let mut soonest: Option<Duration> = None;
        for lane in written {
            let (w, s) = lane?;
            stats.add(&w);
            soonest = earliest(soonest, s);
        }
        stats.pass_time = started.elapsed();
        crate::ops::metrics::metrics()
            .reconcile_pass_seconds
            .observe(stats.pass_time.as_secs_f64());
        Ok((stats, soonest.map(|d| Instant::now() + d)))
    }
}

impl Reconciler {
    /// Writes the outcomes that reach one lane, each batch in one
    /// transaction: whatever has arrived while the previous one committed.
    /// Its counts, and the soonest retry its rows asked for.
    async fn write_lane(
        &self,
        mut done_rx: mpsc::UnboundedReceiver<Worked>,
        pass_trace: &PassTrace,
    ) -> StoreResult<(CycleStats, Option<Duration>)> {
        let mut stats = CycleStats::default();
        let mut soonest: Option<Duration> = None;
        while let Some(first) = done_rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < WRITE_BATCH
                && let Ok(more) = done_rx.try_recv()
            {
                batch.push(more);
            }
            let pairs: Vec<(&Leased, &Outcome)> = batch.iter().map(|w| (&w.row, &w.out)).collect();
            let write_started = Instant::now();
            let written = self.store.record_outcomes(&pairs, &self.replica).await?;
            stats.write_time += write_started.elapsed();
            stats.queries += 1;
            stats.write_batches += 1;
            let committed = Instant::now();
            for (done, w) in batch.iter().zip(written) {
                let (row, out) = (&done.row, &done.out);
                self.count(row, done.driver_ok, &w, out.status);
                if first_running(row, &w, out) {
                    let write = committed.duration_since(done.done_at);
                    trace::record(pass_trace, row, done.act, write);
                }
                match w {
                    WriteResult::Written if out.status != row.status => stats.transitions += 1,
                    WriteResult::Written => {}
                    WriteResult::Superseded => stats.superseded += 1,
                    WriteResult::LeaseLost => stats.lease_lost += 1,
                }
                soonest = earliest(soonest, out.next_attempt_in);
            }
        }
        Ok((stats, soonest))
    }
}

/// The write lane of a project's rows: the same for all of them, so a
/// project is locked and re-aggregated by one transaction of a pass.
fn lane_of(project: uuid::Uuid, lanes: usize) -> usize {
    (project.as_u128() % lanes.max(1) as u128) as usize
}

/// A row whose driver calls are done, on its way to the writer.
struct Worked {
    row: Leased,
    out: Outcome,
    driver_ok: bool,
    /// How long its driver calls took, and when they ended.
    act: Duration,
    done_at: Instant,
}

/// The write made the row RUNNING for the first time (its create's end).
fn first_running(row: &Leased, written: &WriteResult, out: &Outcome) -> bool {
    matches!(written, WriteResult::Written)
        && row.status == crate::model::ResourceStatus::Creating
        && out.status == crate::model::ResourceStatus::Running
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projects_rows_share_a_lane_and_projects_spread_over_all_lanes() {
        for lanes in [1, 2, 3, 8] {
            let mut counts = vec![0usize; lanes];
            for _ in 0..4000 {
                let project = uuid::Uuid::new_v4();
                let lane = lane_of(project, lanes);
                assert_eq!(lane, lane_of(project, lanes));
                counts[lane] += 1;
            }
            // Random ids: each lane gets its share, give or take.
            let share = 4000 / lanes;
            assert!(
                counts.iter().all(|&n| n > share / 2 && n < share * 3 / 2),
                "{lanes} lanes: {counts:?}"
            );
        }
        // No lanes configured means one.
        assert_eq!(lane_of(uuid::Uuid::new_v4(), 0), 0);
    }
}
