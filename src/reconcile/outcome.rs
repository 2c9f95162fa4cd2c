//! Turning the result of a driver call into what gets written. Pure.

use std::time::Duration;

use super::plan::{PlanInput, status_after};
use crate::driver::{DriverError, Observed};
use crate::model::ResourceStatus;
use crate::store::resources::Outcome;

/// The timing knobs the outcome depends on.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// How long a settled row waits before it is observed again.
    pub observe_interval: Duration,
    /// How long a row still in transition waits before it is looked at again.
    pub poll_interval: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

/// `result` is what the resource looked like after the action, or why the
/// action failed. `jitter` is a uniform sample in [0, 1).
pub fn outcome(
    row: PlanInput,
    attempts: i32,
    result: &Result<Observed, DriverError>,
    schedule: &Schedule,
    jitter: f64,
) -> Outcome {
    match result {
        Ok(observed) => {
            let status = status_after(row, observed);
            let settled = status == ResourceStatus::settled_at(row.desired);
            let (last_error, message) = match observed {
                Observed::Failed(reason) | Observed::PrepareFailed(_, reason) => {
                    (Some(reason.clone()), reason.clone())
                }
                Observed::Blocked(reason) => (Some(reason.clone()), format!("waiting: {reason}")),
                _ => (None, format!("{} observed", describe(observed))),
            };
            Outcome {
                status,
                attempts: 0,
                last_error,
                failure_kind: match observed {
                    Observed::PrepareFailed(step, _) => Some(step.notice()),
                    _ => None,
                },
                next_attempt_in: match status {
                    ResourceStatus::Error => None,
                    // Spread observations so 10,000 rows created together do
                    // not come due in the same second forever after.
                    _ if settled => Some(schedule.observe_interval.mul_f64(0.9 + 0.2 * jitter)),
                    _ => Some(schedule.poll_interval),
                },
                applied_env_version: None,
                connection: None,
                applied_database: None,
                message,
            }
        }
        Err(DriverError::Transient(msg)) => {
            let attempts = attempts.saturating_add(1);
            let wait = super::backoff::delay(
                attempts as u32,
                schedule.backoff_base,
                schedule.backoff_cap,
                jitter,
            );
            Outcome {
                status: row.status,
                attempts,
                last_error: Some(msg.clone()),
                failure_kind: None,
                next_attempt_in: Some(wait),
                applied_env_version: None,
                connection: None,
                applied_database: None,
                message: format!("attempt {attempts} failed, retrying in {wait:.1?}: {msg}"),
            }
        }
        Err(e @ (DriverError::Permanent(_) | DriverError::Prepare { .. })) => {
            let msg = e.to_string();
            Outcome {
                status: ResourceStatus::Error,
                attempts: attempts.saturating_add(1),
                last_error: Some(msg.clone()),
                failure_kind: match e {
                    DriverError::Prepare { step, .. } => Some(step.notice()),
                    _ => None,
                },
                next_attempt_in: None,
                applied_env_version: None,
                connection: None,
                applied_database: None,
                message: msg,
            }
        }
    }
}

fn describe(o: &Observed) -> &'static str {
    match o {
        Observed::Absent => "absent",
        Observed::Starting => "starting",
        Observed::Running => "running",
        Observed::Stopping => "stopping",
        Observed::Stopped => "stopped",
        Observed::Failed(_) | Observed::PrepareFailed(..) => "failed",
        Observed::Blocked(_) => "blocked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Desired;

    const S: Schedule = Schedule {
        observe_interval: Duration::from_secs(60),
        poll_interval: Duration::from_secs(1),
        backoff_base: Duration::from_millis(500),
        backoff_cap: Duration::from_secs(60),
    };

    fn row(desired: Desired, status: ResourceStatus) -> PlanInput {
        PlanInput {
            desired,
            status,
            env_drift: false,
        }
    }

    #[test]
    fn success_settles_and_schedules_an_observation() {
        let o = outcome(
            row(Desired::Running, ResourceStatus::Creating),
            3,
            &Ok(Observed::Running),
            &S,
            0.5,
        );
        assert_eq!(o.status, ResourceStatus::Running);
        assert_eq!(o.attempts, 0);
        assert_eq!(o.last_error, None);
        assert_eq!(o.next_attempt_in, Some(Duration::from_secs(60)));
    }

    #[test]
    fn still_moving_polls_soon() {
        let o = outcome(
            row(Desired::Running, ResourceStatus::Starting),
            0,
            &Ok(Observed::Starting),
            &S,
            0.5,
        );
        assert_eq!(o.status, ResourceStatus::Starting);
        assert_eq!(o.next_attempt_in, Some(Duration::from_secs(1)));
    }

    #[test]
    fn transient_failure_keeps_status_counts_and_backs_off() {
        let o = outcome(
            row(Desired::Running, ResourceStatus::Starting),
            2,
            &Err(DriverError::transient("connection refused")),
            &S,
            0.0,
        );
        assert_eq!(o.status, ResourceStatus::Starting);
        assert_eq!(o.attempts, 3);
        assert_eq!(o.last_error.as_deref(), Some("connection refused"));
        assert_eq!(o.next_attempt_in, Some(Duration::from_secs(1)));
    }

    #[test]
    fn permanent_failure_is_error_until_retried() {
        let o = outcome(
            row(Desired::Running, ResourceStatus::Creating),
            0,
            &Err(DriverError::permanent("forbidden")),
            &S,
            0.0,
        );
        assert_eq!(o.status, ResourceStatus::Error);
        assert_eq!(o.last_error.as_deref(), Some("forbidden"));
        assert_eq!(o.next_attempt_in, None);
    }

    #[test]
    fn a_failed_clone_or_setup_is_an_error_told_by_its_own_kind() {
        use crate::driver::PrepareStep;
        use crate::model::notice::NoticeKind;
        for (step, kind) in [
            (PrepareStep::Clone, NoticeKind::CloneFailed),
            (PrepareStep::Setup, NoticeKind::SetupFailed),
        ] {
            let o = outcome(
                row(Desired::Running, ResourceStatus::Creating),
                0,
                &Err(DriverError::prepare(step, "fatal: no such repository")),
                &S,
                0.0,
            );
            assert_eq!(o.status, ResourceStatus::Error);
            assert_eq!(o.last_error.as_deref(), Some("fatal: no such repository"));
            assert_eq!(o.failure_kind, Some(kind));
            assert_eq!(o.next_attempt_in, None);
        }
        let plain = outcome(
            row(Desired::Running, ResourceStatus::Creating),
            0,
            &Err(DriverError::permanent("forbidden")),
            &S,
            0.0,
        );
        assert_eq!(plain.failure_kind, None);
        // Observed so (a Kubernetes init container that failed): the same.
        let observed = outcome(
            row(Desired::Running, ResourceStatus::Creating),
            0,
            &Ok(Observed::PrepareFailed(
                PrepareStep::Clone,
                "git clone failed: fatal".into(),
            )),
            &S,
            0.0,
        );
        assert_eq!(observed.status, ResourceStatus::Error);
        assert_eq!(observed.failure_kind, Some(NoticeKind::CloneFailed));
        assert_eq!(
            observed.last_error.as_deref(),
            Some("git clone failed: fatal")
        );
    }

    #[test]
    fn a_blocked_resource_keeps_moving_and_says_why() {
        let o = outcome(
            row(Desired::Running, ResourceStatus::Starting),
            2,
            &Ok(Observed::Blocked("ImagePullBackOff: no such image".into())),
            &S,
            0.0,
        );
        assert_eq!(o.status, ResourceStatus::Starting);
        assert_eq!(
            o.last_error.as_deref(),
            Some("ImagePullBackOff: no such image")
        );
        assert_eq!(o.next_attempt_in, Some(S.poll_interval));
    }

    #[test]
    fn a_failed_resource_reports_why() {
        let o = outcome(
            row(Desired::Running, ResourceStatus::Starting),
            0,
            &Ok(Observed::Failed("CrashLoopBackOff".into())),
            &S,
            0.0,
        );
        assert_eq!(o.status, ResourceStatus::Error);
        assert_eq!(o.last_error.as_deref(), Some("CrashLoopBackOff"));
    }
}
