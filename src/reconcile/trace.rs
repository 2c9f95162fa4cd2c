//! Where the time of a create goes, resource by resource: from the row's
//! creation to its pass's lease, the lease, the batch observation, the
//! reads before the work, the driver calls, and the outcome write that
//! makes it RUNNING. Recorded in `kiln_create_stage_seconds{kind,stage}`
//! for each resource's first RUNNING; `kiln bench create` prints it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::resources::Leased;

/// The stages, in the order they happen (the labels of the metric).
pub const STAGES: [&str; 7] = [
    "notify", "queued", "lease", "observe", "reads", "act", "write",
];

/// What one pass shares among its rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct PassTrace {
    /// When a change notification woke the loop for this pass (`None`: a
    /// timer did, or the pass follows another in a drain).
    pub(super) woken: Option<DateTime<Utc>>,
    /// When the lease statements were sent.
    pub(super) leased_at: DateTime<Utc>,
    pub(super) lease: Duration,
    pub(super) observe: Duration,
    pub(super) reads: Duration,
}

/// One row's stages: `act` its driver calls, `write` from their end to its
/// outcome's commit. Clock differences (the row's creation is Postgres'
/// clock, the rest this host's) never make a stage negative.
pub(super) fn stages(
    pass: &PassTrace,
    row: &Leased,
    act: Duration,
    write: Duration,
) -> Vec<(&'static str, Duration)> {
    let since = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).to_std().unwrap_or_default();
    let mut out = Vec::with_capacity(STAGES.len());
    // Only a notification that came after the row's creation can be its.
    if let Some(woken) = pass.woken.filter(|w| *w >= row.created_at) {
        out.push(("notify", since(row.created_at, woken)));
    }
    out.extend([
        ("queued", since(row.created_at, pass.leased_at)),
        ("lease", pass.lease),
        ("observe", pass.observe),
        ("reads", pass.reads),
        ("act", act),
        ("write", write),
    ]);
    out
}

/// Records a row's stages in the metric.
pub(super) fn record(pass: &PassTrace, row: &Leased, act: Duration, write: Duration) {
    let m = crate::ops::metrics::metrics();
    for (stage, d) in stages(pass, row, act, write) {
        m.create_stage_seconds
            .with_label_values(&[row.kind.as_str(), stage])
            .observe(d.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Desired, ResourceStatus};
    use crate::store::resources::ResourceKind;

    fn row(created_at: DateTime<Utc>) -> Leased {
        Leased {
            kind: ResourceKind::Sandbox,
            id: uuid::Uuid::nil(),
            project_id: uuid::Uuid::nil(),
            user_id: uuid::Uuid::nil(),
            resource_name: "s".into(),
            namespace: String::new(),
            project_slug: "p".into(),
            project_name: "p".into(),
            desired: Desired::Running,
            status: ResourceStatus::Creating,
            intent_seq: 0,
            attempts: 0,
            last_error: None,
            env_version: 0,
            applied_env_version: 0,
            password_enc: None,
            pooled_from: None,
            lease_token: uuid::Uuid::nil(),
            never_worked: true,
            created_at,
        }
    }

    #[test]
    fn stages_run_from_the_creation_and_a_notification_before_it_is_not_its() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap();
        let ms = |n: i64| t0 + chrono::Duration::milliseconds(n);
        let d = Duration::from_millis;
        let mut pass = PassTrace {
            woken: Some(ms(3)),
            leased_at: ms(4),
            lease: d(2),
            observe: d(0),
            reads: d(1),
        };
        let got = stages(&pass, &row(t0), d(20), d(5));
        assert_eq!(
            got,
            vec![
                ("notify", d(3)),
                ("queued", d(4)),
                ("lease", d(2)),
                ("observe", d(0)),
                ("reads", d(1)),
                ("act", d(20)),
                ("write", d(5)),
            ]
        );
        // Woken by something older: no notify stage; a clock skew that puts
        // the lease before the creation counts as nothing, not as negative.
        pass.woken = Some(ms(-10));
        pass.leased_at = ms(-1);
        let got = stages(&pass, &row(t0), d(20), d(5));
        assert_eq!(got[0], ("queued", d(0)));
        assert!(got.iter().all(|(s, _)| *s != "notify"));
    }
}
