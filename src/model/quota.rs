//! Quotas: how many projects an owner (a user or a team) may have, and how
//! many of their sandboxes may run at once. The decision is this pure
//! function; the store calls it inside the transaction that would pass the
//! limit, under a per-owner lock, so concurrent requests cannot all pass.

use std::fmt;

/// An owner's limits; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub projects: Option<i64>,
    pub running: Option<i64>,
}

/// What an owner has now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Projects that exist and are not being deleted.
    pub projects: i64,
    /// Sandboxes asked to run (`desired = RUNNING`), whatever their status.
    pub running: i64,
}

/// What would add to the usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// A new project, which starts at once: one more project, one more running.
    Create,
    /// A stopped project started: one more running.
    Start,
}

/// Whose quota it is, as the refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    You,
    Team(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct QuotaExceeded {
    pub holder: Holder,
    pub what: Counted,
    pub used: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Projects,
    Running,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (used, limit) = (self.used, self.limit);
        match (&self.holder, self.what) {
            (Holder::You, Counted::Projects) => write!(
                f,
                "you have {used} of {limit} projects: delete one or ask an admin"
            ),
            (Holder::Team(t), Counted::Projects) => write!(
                f,
                "team {t} has {used} of {limit} projects: delete one or ask an admin"
            ),
            (Holder::You, Counted::Running) => write!(
                f,
                "you run {used} of {limit} sandboxes: stop one or ask an admin"
            ),
            (Holder::Team(t), Counted::Running) => write!(
                f,
                "team {t} runs {used} of {limit} sandboxes: stop one or ask an admin"
            ),
        }
    }
}

/// May `ask` proceed with `usage` under `limits`?
pub fn check(ask: Ask, limits: Limits, usage: Usage, holder: &Holder) -> Result<(), QuotaExceeded> {
    let refuse = |what, used, limit| {
        Err(QuotaExceeded {
            holder: holder.clone(),
            what,
            used,
            limit,
        })
    };
    if ask == Ask::Create
        && let Some(limit) = limits.projects
        && usage.projects >= limit
    {
        return refuse(Counted::Projects, usage.projects, limit);
    }
    if let Some(limit) = limits.running
        && usage.running >= limit
    {
        return refuse(Counted::Running, usage.running, limit);
    }
    Ok(())
}

/// "2 of 3 projects · 1 of 2 running"; a count without a limit stands alone.
pub fn summary(limits: Limits, usage: Usage) -> String {
    let part = |used: i64, limit: Option<i64>, what: &str| match limit {
        Some(l) => format!("{used} of {l} {what}"),
        None => format!("{used} {what} (no limit)"),
    };
    format!(
        "{} · {}",
        part(usage.projects, limits.projects, "projects"),
        part(usage.running, limits.running, "running")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(projects: Option<i64>, running: Option<i64>) -> Limits {
        Limits { projects, running }
    }

    fn usage(projects: i64, running: i64) -> Usage {
        Usage { projects, running }
    }

    #[test]
    fn the_quota_table() {
        use Ask::*;
        // (ask, limits, usage, allowed)
        let table = [
            (Create, limits(None, None), usage(100, 100), true),
            (Create, limits(Some(3), None), usage(2, 2), true),
            (Create, limits(Some(3), None), usage(3, 0), false),
            (Create, limits(Some(3), Some(1)), usage(1, 1), false),
            (Create, limits(Some(0), None), usage(0, 0), false),
            (Start, limits(Some(3), None), usage(9, 0), true),
            (Start, limits(None, Some(2)), usage(5, 1), true),
            (Start, limits(None, Some(2)), usage(5, 2), false),
            (Start, limits(None, Some(0)), usage(1, 0), false),
        ];
        for (ask, l, u, allowed) in table {
            assert_eq!(
                check(ask, l, u, &Holder::You).is_ok(),
                allowed,
                "{ask:?} {l:?} {u:?}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_limit_and_the_usage() {
        let team = Holder::Team("acme".into());
        let e = check(Ask::Start, limits(None, Some(5)), usage(7, 5), &team).unwrap_err();
        assert_eq!(
            e.to_string(),
            "team acme runs 5 of 5 sandboxes: stop one or ask an admin"
        );
        let e = check(
            Ask::Create,
            limits(Some(3), None),
            usage(3, 0),
            &Holder::You,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "you have 3 of 3 projects: delete one or ask an admin"
        );
        assert_eq!(
            summary(limits(Some(3), None), usage(2, 1)),
            "2 of 3 projects · 1 running (no limit)"
        );
    }
}
