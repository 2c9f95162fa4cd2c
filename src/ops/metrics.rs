//! The process's metrics, in one registry, encoded by the `prometheus`
//! crate's text encoder.
//!
//! Labels are bounded on purpose: back end, resource kind, operation,
//! error class, sign-in method and result, session kind. Nothing a user
//! types (a project or user name) ever becomes a label value, so one
//! tenant cannot blow up the series count or read another's names here.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric Kiln exports.
pub struct Metrics {
    registry: Registry,
    pub reconcile_pass_seconds: Histogram,
    pub reconcile_transitions: IntCounterVec,
    pub reconcile_queue_depth: IntGauge,
    pub reconcile_leases_held: IntGauge,
    pub driver_call_seconds: HistogramVec,
    pub driver_errors: IntCounterVec,
    pub create_to_running_seconds: HistogramVec,
    pub create_stage_seconds: HistogramVec,
    pub ssh_sessions_open: IntGaugeVec,
    pub signin_attempts: IntCounterVec,
    pub change_feed_lag_seconds: Histogram,
    pub console_actions: IntCounterVec,
    pub pool_ready: IntGaugeVec,
}

/// Buckets from 1 ms to about a minute: a local tmux session takes ~10 ms,
/// a pod on a cluster tens of seconds.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.5, 14).expect("valid buckets")
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            reconcile_pass_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "kiln_reconcile_pass_duration_seconds",
                    "Time one reconcile pass took (lease, observe, act, write), passes that leased rows only",
                )
                .buckets(latency_buckets()),
            )
            .expect("metric"),
            reconcile_transitions: IntCounterVec::new(
                Opts::new(
                    "kiln_reconcile_transitions_total",
                    "Rows worked by the reconcile loop, by what the fenced write did",
                ),
                &["result"],
            )
            .expect("metric"),
            reconcile_queue_depth: IntGauge::new(
                "kiln_reconcile_queue_depth",
                "Resources due for reconciliation and not leased (read at scrape time)",
            )
            .expect("metric"),
            reconcile_leases_held: IntGauge::new(
                "kiln_reconcile_leases_held",
                "Resources this process's reconcile loop has leased and is working",
            )
            .expect("metric"),
            driver_call_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "kiln_driver_call_duration_seconds",
                    "Duration of driver calls, by back end, resource kind and operation",
                )
                .buckets(latency_buckets()),
                &["backend", "kind", "op"],
            )
            .expect("metric"),
            driver_errors: IntCounterVec::new(
                Opts::new(
                    "kiln_driver_errors_total",
                    "Failed driver calls, by back end, resource kind, operation and class",
                ),
                &["backend", "kind", "op", "class"],
            )
            .expect("metric"),
            create_to_running_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "kiln_create_to_running_seconds",
                    "From a resource's creation to its first RUNNING, by back end",
                )
                .buckets(latency_buckets()),
                &["backend"],
            )
            .expect("metric"),
            create_stage_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "kiln_create_stage_seconds",
                    "Where a resource's way to its first RUNNING went, by resource kind and \
                     stage: queued (created to its pass's lease), notify (created to the change \
                     notification that woke the loop), lease, observe, reads, act (driver \
                     calls), write (driver done to outcome committed)",
                )
                .buckets(prometheus::exponential_buckets(0.0002, 2.0, 16).expect("valid buckets")),
                &["kind", "stage"],
            )
            .expect("metric"),
            ssh_sessions_open: IntGaugeVec::new(
                Opts::new(
                    "kiln_ssh_sessions_open",
                    "Open SSH sessions, by kind (dashboard, exec, attach)",
                ),
                &["kind"],
            )
            .expect("metric"),
            signin_attempts: IntCounterVec::new(
                Opts::new(
                    "kiln_signin_attempts_total",
                    "SSH sign-in attempts, by method and result",
                ),
                &["method", "result"],
            )
            .expect("metric"),
            change_feed_lag_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "kiln_change_feed_lag_seconds",
                    "From a notification's commit to its delivery to this replica's subscribers \
                     (measured with probe notifications)",
                )
                .buckets(latency_buckets()),
            )
            .expect("metric"),
            pool_ready: IntGaugeVec::new(
                Opts::new(
                    "kiln_pool_ready",
                    "Pre-made resources ready to be claimed, by kind (as this replica's pool \
                     keeper last checked them)",
                ),
                &["kind"],
            )
            .expect("metric"),
            console_actions: IntCounterVec::new(
                Opts::new(
                    "kiln_console_actions_total",
                    "User actions through the console, by action, front end and result",
                ),
                &["action", "front", "result"],
            )
            .expect("metric"),
            registry,
        };
        let r = &m.registry;
        let all: [Box<dyn prometheus::core::Collector>; 13] = [
            Box::new(m.reconcile_pass_seconds.clone()),
            Box::new(m.reconcile_transitions.clone()),
            Box::new(m.reconcile_queue_depth.clone()),
            Box::new(m.reconcile_leases_held.clone()),
            Box::new(m.driver_call_seconds.clone()),
            Box::new(m.driver_errors.clone()),
            Box::new(m.create_to_running_seconds.clone()),
            Box::new(m.create_stage_seconds.clone()),
            Box::new(m.ssh_sessions_open.clone()),
            Box::new(m.signin_attempts.clone()),
            Box::new(m.change_feed_lag_seconds.clone()),
            Box::new(m.console_actions.clone()),
            Box::new(m.pool_ready.clone()),
        ];
        for c in all {
            r.register(c).expect("metric names are unique");
        }
        // Series that exist from the start, so a dashboard shows 0 rather
        // than nothing before the first event.
        for kind in SessionKind::ALL {
            m.ssh_sessions_open.with_label_values(&[kind.label()]);
        }
        m
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text encoder writes to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The kinds of SSH session counted in `kiln_ssh_sessions_open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Dashboard,
    Exec,
    Attach,
}

impl SessionKind {
    pub const ALL: [SessionKind; 3] = [Self::Dashboard, Self::Exec, Self::Attach];

    pub fn label(self) -> &'static str {
        match self {
            Self::Dashboard => "dashboard",
            Self::Exec => "exec",
            Self::Attach => "attach",
        }
    }
}

/// Counts one open session for as long as it lives.
pub struct OpenSession(SessionKind);

impl OpenSession {
    pub fn open(kind: SessionKind) -> OpenSession {
        metrics()
            .ssh_sessions_open
            .with_label_values(&[kind.label()])
            .inc();
        OpenSession(kind)
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        metrics()
            .ssh_sessions_open
            .with_label_values(&[self.0.label()])
            .dec();
    }
}

/// One driver call's duration and, when it failed, its error class.
pub fn driver_call<T>(
    backend: &'static str,
    kind: &'static str,
    op: &'static str,
    took: Duration,
    result: &crate::driver::DriverResult<T>,
) {
    let m = metrics();
    m.driver_call_seconds
        .with_label_values(&[backend, kind, op])
        .observe(took.as_secs_f64());
    if let Err(e) = result {
        let class = if e.is_transient() {
            "transient"
        } else {
            "permanent"
        };
        m.driver_errors
            .with_label_values(&[backend, kind, op, class])
            .inc();
    }
}

/// One user action through the console; `result` is `ok` or the error's kind.
pub fn console_action(action: &'static str, front: &'static str, result: &'static str) {
    metrics()
        .console_actions
        .with_label_values(&[action, front, result])
        .inc();
}

/// One sign-in attempt; `method` is `password`, `publickey` or
/// `keyboard-interactive`, `result` is `success`, `failure` or `refused`
/// (turned away by a limit before any check).
pub fn signin(method: &'static str, result: &'static str) {
    metrics()
        .signin_attempts
        .with_label_values(&[method, result])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_follows_the_naming_conventions() {
        let m = metrics();
        signin("password", "failure");
        driver_call::<()>(
            "local",
            "sandbox",
            "ensure",
            Duration::from_millis(3),
            &Err(crate::driver::DriverError::transient("x")),
        );
        for family in m.registry.gather() {
            let name = family.name();
            assert!(name.starts_with("kiln_"), "{name}");
            let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            assert_eq!(counter, name.ends_with("_total"), "{name}");
            if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                assert!(name.ends_with("_seconds"), "{name}");
            }
        }
        let text = m.encode();
        assert!(
            text.contains("kiln_ssh_sessions_open{kind=\"attach\"} 0"),
            "{text}"
        );
    }
}
