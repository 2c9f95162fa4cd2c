//! Project status from the statuses of its resources (DESIGN §4).

use super::status::{ProjectStatus, ResourceStatus};

/// The first rule that matches wins:
/// 1. any ERROR → ERROR; 2. any CREATING → CREATING; 3. all equal → that;
/// 4. all in {RUNNING, STARTING} → STARTING, all in {STOPPED, STOPPING} → STOPPING,
///    all in {TERMINATED, TERMINATING} → TERMINATING; 5. otherwise PARTIAL.
///
/// A project without resources has nothing left running: TERMINATED.
pub fn aggregate(statuses: &[ResourceStatus]) -> ProjectStatus {
    use ResourceStatus as R;
    let Some(&first) = statuses.first() else {
        return ProjectStatus::Terminated;
    };
    let any = |s: R| statuses.contains(&s);
    let all_in = |set: &[R]| statuses.iter().all(|s| set.contains(s));
    if any(R::Error) {
        ProjectStatus::Error
    } else if any(R::Creating) {
        ProjectStatus::Creating
    } else if statuses.iter().all(|&s| s == first) {
        first.into()
    } else if all_in(&[R::Running, R::Starting]) {
        ProjectStatus::Starting
    } else if all_in(&[R::Stopped, R::Stopping]) {
        ProjectStatus::Stopping
    } else if all_in(&[R::Terminated, R::Terminating]) {
        ProjectStatus::Terminating
    } else {
        ProjectStatus::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResourceStatus as R;

    /// An independent oracle: counts instead of short-circuit rules, written
    /// from the prose of DESIGN §4 rather than from the function above.
    fn oracle(xs: &[R]) -> ProjectStatus {
        if xs.is_empty() {
            return ProjectStatus::Terminated;
        }
        let count = |pred: &dyn Fn(R) -> bool| xs.iter().filter(|&&s| pred(s)).count();
        let n = xs.len();
        if count(&|s| s == R::Error) > 0 {
            return ProjectStatus::Error;
        }
        if count(&|s| s == R::Creating) > 0 {
            return ProjectStatus::Creating;
        }
        for &s in R::ALL {
            if count(&|x| x == s) == n {
                return s.into();
            }
        }
        if count(&|s| matches!(s, R::Running | R::Starting)) == n {
            return ProjectStatus::Starting;
        }
        if count(&|s| matches!(s, R::Stopped | R::Stopping)) == n {
            return ProjectStatus::Stopping;
        }
        if count(&|s| matches!(s, R::Terminated | R::Terminating)) == n {
            return ProjectStatus::Terminating;
        }
        ProjectStatus::Partial
    }

    fn all_combinations(max_len: usize) -> Vec<Vec<R>> {
        let mut out = vec![vec![]];
        let mut frontier = vec![vec![]];
        for _ in 0..max_len {
            let mut next = Vec::new();
            for prefix in &frontier {
                for &s in R::ALL {
                    let mut v: Vec<R> = prefix.clone();
                    v.push(s);
                    next.push(v);
                }
            }
            out.extend(next.iter().cloned());
            frontier = next;
        }
        out
    }

    #[test]
    fn matches_the_oracle_for_every_combination_of_up_to_three_resources() {
        let combos = all_combinations(3);
        assert_eq!(combos.len(), 1 + 8 + 64 + 512);
        for c in combos {
            assert_eq!(aggregate(&c), oracle(&c), "statuses {c:?}");
        }
    }

    #[test]
    fn the_seed_examples_hold() {
        assert_eq!(
            aggregate(&[R::Running, R::Starting]),
            ProjectStatus::Starting
        );
        assert_eq!(
            aggregate(&[R::Stopping, R::Starting]),
            ProjectStatus::Partial
        );
        assert_eq!(aggregate(&[R::Running, R::Error]), ProjectStatus::Error);
    }

    #[test]
    fn rule_order_is_respected() {
        assert_eq!(aggregate(&[]), ProjectStatus::Terminated);
        assert_eq!(aggregate(&[R::Creating, R::Error]), ProjectStatus::Error);
        assert_eq!(
            aggregate(&[R::Creating, R::Running]),
            ProjectStatus::Creating
        );
        assert_eq!(aggregate(&[R::Stopped, R::Stopped]), ProjectStatus::Stopped);
        assert_eq!(
            aggregate(&[R::Stopped, R::Stopping]),
            ProjectStatus::Stopping
        );
        assert_eq!(
            aggregate(&[R::Terminated, R::Terminating]),
            ProjectStatus::Terminating
        );
        assert_eq!(aggregate(&[R::Running, R::Stopped]), ProjectStatus::Partial);
    }
}
