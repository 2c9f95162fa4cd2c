//! What a user may ask of a project, and what each request does to its
//! resources. A request records an intent (`desired` plus a transition
//! status); the reconcile loop does the work.

use std::fmt;

use super::status::{Desired, ProjectStatus, ResourceStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    Start,
    Stop,
    Delete,
    /// Try again toward the stored `desired` state after an ERROR.
    Retry,
}

impl Intent {
    pub const ALL: &'static [Intent] =
        &[Intent::Start, Intent::Stop, Intent::Delete, Intent::Retry];

    pub fn verb(self) -> &'static str {
        match self {
            Intent::Start => "start",
            Intent::Stop => "stop",
            Intent::Delete => "delete",
            Intent::Retry => "retry",
        }
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// Why an intent is not allowed now; shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {intent} a project that is {status}: {reason}")]
pub struct IntentRefused {
    pub intent: Intent,
    pub status: ProjectStatus,
    pub reason: &'static str,
}

/// The intents table: which action is allowed from which project status.
/// The console greys a key out with `reason` when this refuses.
pub fn check(intent: Intent, status: ProjectStatus) -> Result<(), IntentRefused> {
    use ProjectStatus as P;
    let refuse = |reason| {
        Err(IntentRefused {
            intent,
            status,
            reason,
        })
    };
    match (intent, status) {
        (_, P::Terminating | P::Terminated) => refuse("it is being deleted"),
        (Intent::Start, P::Running) => refuse("it is already running"),
        (Intent::Start, P::Starting | P::Creating) => refuse("it is already starting"),
        (Intent::Stop, P::Stopped) => refuse("it is already stopped"),
        (Intent::Stop, P::Stopping) => refuse("it is already stopping"),
        (Intent::Retry, s) if s != P::Error => refuse("only a project in ERROR can be retried"),
        _ => Ok(()),
    }
}

/// One resource's recorded intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceIntent {
    pub desired: Desired,
    pub status: ResourceStatus,
}

/// What `intent` does to one resource: `None` when the resource needs no
/// change (it is already where the intent points).
pub fn apply(intent: Intent, current: ResourceIntent) -> Option<ResourceIntent> {
    use ResourceStatus as R;
    let toward = |desired: Desired| {
        let status = match (current.status, desired) {
            // A resource still being created keeps saying so until it runs.
            (R::Creating, Desired::Running) => R::Creating,
            (s, d) if s == R::settled_at(d) => s,
            (_, d) => R::moving_toward(d),
        };
        let next = ResourceIntent { desired, status };
        (next != current).then_some(next)
    };
    match intent {
        Intent::Start => toward(Desired::Running),
        Intent::Stop => toward(Desired::Stopped),
        Intent::Delete => toward(Desired::Terminated),
        Intent::Retry if current.status == R::Error => Some(ResourceIntent {
            desired: current.desired,
            status: R::moving_toward(current.desired),
        }),
        Intent::Retry => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProjectStatus as P;
    use ResourceStatus as R;

    #[test]
    fn the_intents_table() {
        // (intent, status, allowed)
        let table = [
            (Intent::Start, P::Stopped, true),
            (Intent::Start, P::Stopping, true),
            (Intent::Start, P::Partial, true),
            (Intent::Start, P::Error, true),
            (Intent::Start, P::Running, false),
            (Intent::Start, P::Starting, false),
            (Intent::Start, P::Creating, false),
            (Intent::Stop, P::Running, true),
            (Intent::Stop, P::Starting, true),
            (Intent::Stop, P::Creating, true),
            (Intent::Stop, P::Partial, true),
            (Intent::Stop, P::Error, true),
            (Intent::Stop, P::Stopped, false),
            (Intent::Stop, P::Stopping, false),
            (Intent::Delete, P::Running, true),
            (Intent::Delete, P::Error, true),
            (Intent::Delete, P::Stopped, true),
            (Intent::Delete, P::Creating, true),
            (Intent::Retry, P::Error, true),
            (Intent::Retry, P::Running, false),
            (Intent::Retry, P::Partial, false),
        ];
        for (intent, status, allowed) in table {
            assert_eq!(
                check(intent, status).is_ok(),
                allowed,
                "{intent} from {status}"
            );
        }
        for &i in Intent::ALL {
            assert!(check(i, P::Terminating).is_err());
            assert!(check(i, P::Terminated).is_err());
        }
        let msg = check(Intent::Start, P::Running).unwrap_err().to_string();
        assert_eq!(
            msg,
            "cannot start a project that is RUNNING: it is already running"
        );
    }

    fn ri(desired: Desired, status: R) -> ResourceIntent {
        ResourceIntent { desired, status }
    }

    #[test]
    fn intents_move_resources_into_the_matching_transition() {
        use Desired as D;
        assert_eq!(
            apply(Intent::Stop, ri(D::Running, R::Starting)),
            Some(ri(D::Stopped, R::Stopping))
        );
        assert_eq!(
            apply(Intent::Start, ri(D::Stopped, R::Stopped)),
            Some(ri(D::Running, R::Starting))
        );
        assert_eq!(
            apply(Intent::Delete, ri(D::Running, R::Running)),
            Some(ri(D::Terminated, R::Terminating))
        );
        // Already there: nothing to record.
        assert_eq!(apply(Intent::Start, ri(D::Running, R::Running)), None);
        assert_eq!(apply(Intent::Stop, ri(D::Stopped, R::Stopped)), None);
        // A stopped resource in a partially running project flips only desired.
        assert_eq!(
            apply(Intent::Stop, ri(D::Running, R::Stopped)),
            Some(ri(D::Stopped, R::Stopped))
        );
        // Creating stays creating while heading for running.
        assert_eq!(apply(Intent::Start, ri(D::Running, R::Creating)), None);
        // Retry only touches resources in ERROR, toward what they wanted.
        assert_eq!(
            apply(Intent::Retry, ri(D::Running, R::Error)),
            Some(ri(D::Running, R::Starting))
        );
        assert_eq!(apply(Intent::Retry, ri(D::Running, R::Running)), None);
        // Stop on a resource in ERROR leaves ERROR behind.
        assert_eq!(
            apply(Intent::Stop, ri(D::Running, R::Error)),
            Some(ri(D::Stopped, R::Stopping))
        );
    }
}
