//! The planner: what to do with one resource, given what it should be and
//! what the driver sees. Pure, so it is tested as a table.

use crate::driver::Observed;
use crate::model::{Desired, ResourceStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create what is missing and start it.
    Ensure,
    /// Stop, keeping data.
    Stop,
    /// Remove everything.
    Delete,
    /// Running as wanted, but its environment is behind.
    SyncEnv,
    /// Already where it should be: record the settled status.
    Settle,
    /// On its way (the back end is working): look again soon.
    Wait,
    /// It is gone and was meant to go: remove the row.
    Forget,
    /// The back end reports it cannot get there on its own.
    Fail(String),
    /// In ERROR: nothing until the user retries.
    Nothing,
}

/// What the planner needs to know about a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanInput {
    pub desired: Desired,
    pub status: ResourceStatus,
    pub env_drift: bool,
}

pub fn plan(row: PlanInput, observed: &Observed) -> Action {
    use Observed as O;
    if row.status == ResourceStatus::Error {
        return Action::Nothing;
    }
    match (row.desired, observed) {
        (Desired::Running, O::Absent | O::Stopped | O::Stopping) => Action::Ensure,
        (Desired::Running, O::Starting | O::Blocked(_)) => Action::Wait,
        (Desired::Running, O::Running) if row.env_drift => Action::SyncEnv,
        (Desired::Running, O::Running) => Action::Settle,
        (Desired::Running, O::Failed(reason) | O::PrepareFailed(_, reason)) => {
            Action::Fail(reason.clone())
        }
        // Stopping a failed resource is the user's way out of the failure.
        (
            Desired::Stopped,
            O::Running | O::Starting | O::Blocked(_) | O::Failed(_) | O::PrepareFailed(..),
        ) => Action::Stop,
        (Desired::Stopped, O::Stopping) => Action::Wait,
        (Desired::Stopped, O::Stopped | O::Absent) => Action::Settle,
        (Desired::Terminated, O::Absent) => Action::Forget,
        (Desired::Terminated, _) => Action::Delete,
    }
}

/// What a row's resource is known to be without asking the back end, if
/// anything: a row being created that no replica has worked yet (see
/// `Leased::never_worked`) has nothing there, or a pooled resource the
/// pool keeper's health check has just passed; either way the plan is
/// `Ensure`, which converges whatever is there. So the first pass of a
/// create skips the batch observation and goes straight to the driver;
/// the row is observed from its next pass on.
pub fn known(row: PlanInput, attempts: i32, never_worked: bool) -> Option<Observed> {
    let fresh = never_worked
        && attempts == 0
        && row.desired == Desired::Running
        && row.status == ResourceStatus::Creating;
    fresh.then_some(Observed::Absent)
}

/// The status a row shows after an action left the resource as `observed`.
/// `Terminated` means the row goes.
pub fn status_after(row: PlanInput, observed: &Observed) -> ResourceStatus {
    use Observed as O;
    match (row.desired, observed) {
        (_, O::Failed(_) | O::PrepareFailed(..)) => ResourceStatus::Error,
        (Desired::Running, O::Running) => ResourceStatus::Running,
        (Desired::Stopped, O::Stopped | O::Absent) => ResourceStatus::Stopped,
        (Desired::Terminated, O::Absent) => ResourceStatus::Terminated,
        // Still moving: a resource that never ran keeps saying CREATING.
        (Desired::Running, _) if row.status == ResourceStatus::Creating => ResourceStatus::Creating,
        (d, _) => ResourceStatus::moving_toward(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use Desired as D;
    use Observed as O;
    use ResourceStatus as R;

    fn input(desired: D, status: R, env_drift: bool) -> PlanInput {
        PlanInput {
            desired,
            status,
            env_drift,
        }
    }

    #[test]
    fn the_plan_table() {
        let failed = O::Failed("ImagePullBackOff".into());
        let clone_failed = O::PrepareFailed(
            crate::driver::PrepareStep::Clone,
            "git clone failed: fatal".into(),
        );
        let table: Vec<(PlanInput, Observed, Action)> = vec![
            (input(D::Running, R::Creating, false), O::Absent, A::Ensure),
            (input(D::Running, R::Starting, false), O::Stopped, A::Ensure),
            (
                input(D::Running, R::Starting, false),
                O::Stopping,
                A::Ensure,
            ),
            (input(D::Running, R::Starting, false), O::Starting, A::Wait),
            (input(D::Running, R::Starting, false), O::Running, A::Settle),
            (input(D::Running, R::Running, true), O::Running, A::SyncEnv),
            (input(D::Running, R::Running, false), O::Running, A::Settle),
            // Drift: it vanished while RUNNING; bring it back.
            (input(D::Running, R::Running, false), O::Absent, A::Ensure),
            (
                input(D::Running, R::Starting, false),
                failed.clone(),
                A::Fail("ImagePullBackOff".into()),
            ),
            (
                input(D::Running, R::Starting, false),
                clone_failed.clone(),
                A::Fail("git clone failed: fatal".into()),
            ),
            (
                input(D::Stopped, R::Stopping, false),
                clone_failed.clone(),
                A::Stop,
            ),
            (
                input(D::Running, R::Starting, false),
                O::Blocked("ImagePullBackOff".into()),
                A::Wait,
            ),
            (
                input(D::Stopped, R::Stopping, false),
                O::Blocked("Unschedulable".into()),
                A::Stop,
            ),
            (input(D::Stopped, R::Stopping, false), O::Running, A::Stop),
            (input(D::Stopped, R::Stopping, false), O::Starting, A::Stop),
            (
                input(D::Stopped, R::Stopping, false),
                failed.clone(),
                A::Stop,
            ),
            (input(D::Stopped, R::Stopping, false), O::Stopping, A::Wait),
            (input(D::Stopped, R::Stopping, false), O::Stopped, A::Settle),
            (input(D::Stopped, R::Stopping, false), O::Absent, A::Settle),
            (input(D::Stopped, R::Stopped, true), O::Stopped, A::Settle),
            (
                input(D::Terminated, R::Terminating, false),
                O::Running,
                A::Delete,
            ),
            (
                input(D::Terminated, R::Terminating, false),
                O::Stopped,
                A::Delete,
            ),
            (
                input(D::Terminated, R::Terminating, false),
                failed,
                A::Delete,
            ),
            (
                input(D::Terminated, R::Terminating, false),
                O::Absent,
                A::Forget,
            ),
            (input(D::Running, R::Error, false), O::Absent, A::Nothing),
        ];
        for (row, observed, want) in table {
            assert_eq!(plan(row, &observed), want, "{row:?} observed {observed:?}");
        }
    }

    #[test]
    fn only_a_create_nobody_worked_yet_skips_its_observation() {
        let creating = input(D::Running, R::Creating, false);
        assert_eq!(known(creating, 0, true), Some(O::Absent));
        assert_eq!(plan(creating, &O::Absent), A::Ensure);
        // Worked before (observed, written, or a lease left to expire by a
        // replica that died mid-work), retried, or no longer a create.
        assert_eq!(known(creating, 0, false), None);
        assert_eq!(known(creating, 1, true), None);
        for other in [
            input(D::Running, R::Starting, false),
            input(D::Running, R::Running, false),
            input(D::Running, R::Error, false),
            input(D::Stopped, R::Creating, false),
            input(D::Terminated, R::Creating, false),
        ] {
            assert_eq!(known(other, 0, true), None, "{other:?}");
        }
    }

    #[test]
    fn statuses_after_an_action() {
        let table = [
            (
                input(D::Running, R::Creating, false),
                O::Running,
                R::Running,
            ),
            (
                input(D::Running, R::Creating, false),
                O::Starting,
                R::Creating,
            ),
            (
                input(D::Running, R::Starting, false),
                O::Starting,
                R::Starting,
            ),
            (
                input(D::Running, R::Running, false),
                O::Starting,
                R::Starting,
            ),
            (
                input(D::Stopped, R::Stopping, false),
                O::Stopped,
                R::Stopped,
            ),
            (input(D::Stopped, R::Stopping, false), O::Absent, R::Stopped),
            (
                input(D::Stopped, R::Stopping, false),
                O::Stopping,
                R::Stopping,
            ),
            (
                input(D::Terminated, R::Terminating, false),
                O::Absent,
                R::Terminated,
            ),
            (
                input(D::Terminated, R::Terminating, false),
                O::Stopped,
                R::Terminating,
            ),
            (
                input(D::Running, R::Starting, false),
                O::Failed("x".into()),
                R::Error,
            ),
            (
                input(D::Running, R::Creating, false),
                O::PrepareFailed(crate::driver::PrepareStep::Clone, "x".into()),
                R::Error,
            ),
        ];
        for (row, observed, want) in table {
            assert_eq!(
                status_after(row, &observed),
                want,
                "{row:?} observed {observed:?}"
            );
        }
    }
}
