//! The idle stop policy (pure): when a running sandbox nobody uses is
//! warned about, when it is stopped, and what a user may set per project.
//!
//! A sandbox's idle clock runs from its last activity (typing or output in
//! an attached session, a program's output while nobody is attached, an
//! agent changing state, a start) or from the end of an extension,
//! whichever is later. A session whose agent is working or waiting for its
//! user is never idle. The stop always comes at least `warn_before` after
//! the warning, so nobody is stopped without having been told.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The server's idle settings (`[idle]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Stop after this long without activity; zero turns the policy off.
    pub stop_after: Duration,
    /// Warn this long before the stop.
    pub warn_before: Duration,
    /// The longest per-project `stop_after` a user may set.
    pub max_stop_after: Duration,
    /// What `extend` postpones by when the user names no duration; `None`:
    /// the project's own `stop_after`.
    pub extend_by: Option<Duration>,
    /// How often the reconcile loop looks for idle sandboxes.
    pub sweep_every: Duration,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy {
            stop_after: Duration::from_secs(24 * 3600),
            warn_before: Duration::from_secs(15 * 60),
            max_stop_after: Duration::from_secs(7 * 24 * 3600),
            extend_by: None,
            sweep_every: Duration::from_secs(30),
        }
    }
}

impl IdlePolicy {
    /// Whether the server stops idle sandboxes at all.
    pub fn enabled(&self) -> bool {
        !self.stop_after.is_zero()
    }

    /// The idle time after which a project with `setting` is stopped;
    /// `None` when it never is.
    pub fn effective(&self, setting: IdleSetting) -> Option<Duration> {
        if !self.enabled() {
            return None;
        }
        match setting {
            IdleSetting::Default => Some(self.stop_after),
            IdleSetting::Off => None,
            IdleSetting::After(d) => Some(d.min(self.max_stop_after)),
        }
    }

    /// Checks a per-project setting a user asks for.
    pub fn check(&self, setting: IdleSetting) -> Result<IdleSetting, IdleError> {
        if !self.enabled() {
            return Err(IdleError::PolicyOff);
        }
        match setting {
            IdleSetting::After(d) if d < MIN_STOP_AFTER => Err(IdleError::TooShort),
            IdleSetting::After(d) if d > self.max_stop_after => {
                Err(IdleError::TooLong(self.max_stop_after))
            }
            s => Ok(s),
        }
    }

    /// How long an `extend` postpones the stop by: what the user asked for
    /// (at most the server's maximum), else the default extension.
    pub fn extension(
        &self,
        setting: IdleSetting,
        asked: Option<Duration>,
    ) -> Result<Duration, IdleError> {
        let Some(after) = self.effective(setting) else {
            return Err(IdleError::NotStopped);
        };
        match asked {
            Some(d) if d < MIN_STOP_AFTER => Err(IdleError::TooShort),
            Some(d) if d > self.max_stop_after => Err(IdleError::TooLong(self.max_stop_after)),
            Some(d) => Ok(d),
            None => Ok(self.extend_by.unwrap_or(after)),
        }
    }
}

/// The shortest idle time a user may set or extend by.
pub const MIN_STOP_AFTER: Duration = Duration::from_secs(1);

/// A project's own idle setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleSetting {
    /// The server's `idle.stop_after`.
    Default,
    /// Never stopped for being idle.
    Off,
    /// Stopped after this long without activity.
    After(Duration),
}

impl IdleSetting {
    /// As stored: `NULL` the default, 0 off, else seconds.
    pub fn from_column(secs: Option<i32>) -> IdleSetting {
        match secs {
            None => IdleSetting::Default,
            Some(s) if s <= 0 => IdleSetting::Off,
            Some(s) => IdleSetting::After(Duration::from_secs(s as u64)),
        }
    }

    pub fn to_column(self) -> Option<i32> {
        match self {
            IdleSetting::Default => None,
            IdleSetting::Off => Some(0),
            IdleSetting::After(d) => Some(d.as_secs().min(i32::MAX as u64) as i32),
        }
    }

    /// Parses what a user types: `off`, `default`, or a duration (`90s`, `30m`, `8h`, `2d`).
    pub fn parse(s: &str) -> Option<IdleSetting> {
        match s.trim() {
            "off" | "never" => Some(IdleSetting::Off),
            "default" => Some(IdleSetting::Default),
            other => parse_duration(other).map(IdleSetting::After),
        }
    }
}

impl std::fmt::Display for IdleSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdleSetting::Default => f.write_str("default"),
            IdleSetting::Off => f.write_str("off"),
            IdleSetting::After(d) => f.write_str(&format_duration(*d)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdleError {
    #[error("the idle stop is off on this server (idle.stop_after = 0)")]
    PolicyOff,
    #[error("at least 1s")]
    TooShort,
    #[error("at most {} (the server's idle.max_stop_after)", format_duration(*.0))]
    TooLong(Duration),
    #[error("this project is never stopped for being idle: nothing to postpone")]
    NotStopped,
}

/// What the sweep knows of one running sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleFacts {
    pub setting: IdleSetting,
    pub last_active_at: DateTime<Utc>,
    pub extended_until: Option<DateTime<Utc>>,
    /// The warning of the current idle stretch and the stop it announced.
    pub warned: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// An agent of the sandbox is working or waits for its user.
    pub agent_busy: bool,
}

/// What the sweep does with one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleVerdict {
    /// Nothing to do now.
    Nothing,
    /// Tell the user it stops at this time unless used or extended.
    Warn { stop_at: DateTime<Utc> },
    /// A warning no longer holds (activity since, or an agent at work): withdraw it.
    Withdraw,
    /// Warned, not used since, and the time has come.
    Stop,
}

/// When the sandbox is due to stop if nothing happens: `None` when never.
pub fn deadline(policy: &IdlePolicy, f: &IdleFacts) -> Option<DateTime<Utc>> {
    let after = policy.effective(f.setting)?;
    let idle_end = f.last_active_at + chrono::Duration::from_std(after).ok()?;
    Some(match f.extended_until {
        Some(e) => idle_end.max(e),
        None => idle_end,
    })
}

/// The sweep's decision for one sandbox at `now`.
pub fn decide(policy: &IdlePolicy, f: &IdleFacts, now: DateTime<Utc>) -> IdleVerdict {
    let due = if f.agent_busy {
        None
    } else {
        deadline(policy, f)
    };
    // A warning holds while nothing happened after it and the stop it
    // announced is still due (an extension or a new setting moves it).
    let warning = f
        .warned
        .filter(|(at, stop_at)| *at >= f.last_active_at && due.is_some_and(|d| d <= *stop_at));
    let Some(due) = due else {
        return if f.warned.is_some() {
            IdleVerdict::Withdraw
        } else {
            IdleVerdict::Nothing
        };
    };
    match warning {
        Some((_, stop_at)) if now >= stop_at => IdleVerdict::Stop,
        Some(_) => IdleVerdict::Nothing,
        None => {
            let warn_before = chrono::Duration::from_std(policy.warn_before).unwrap_or_default();
            if now >= due - warn_before {
                IdleVerdict::Warn {
                    stop_at: due.max(now + warn_before),
                }
            } else if f.warned.is_some() {
                IdleVerdict::Withdraw
            } else {
                IdleVerdict::Nothing
            }
        }
    }
}

/// Parses a duration as an operator or user types it: `90` (seconds),
/// `90s`, `500ms`, `5m`, `2h`, `3d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms: u64 = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// A duration as people read it: `45s`, `15m`, `1h30m`, `2d`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let parts = [(days, "d"), (hours, "h"), (mins, "m"), (secs, "s")];
    let text: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if text.is_empty() { "0s".into() } else { text }
}

/// Time left until `at`, for a banner: `14m 05s`, `45s`, `now`.
pub fn time_left(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let s = (at - now).num_seconds();
    match s {
        ..=0 => "now".into(),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_000_000 + secs, 0).unwrap()
    }

    fn policy() -> IdlePolicy {
        IdlePolicy {
            stop_after: Duration::from_secs(100),
            warn_before: Duration::from_secs(10),
            max_stop_after: Duration::from_secs(1000),
            extend_by: None,
            sweep_every: Duration::from_secs(1),
        }
    }

    fn facts(last: i64) -> IdleFacts {
        IdleFacts {
            setting: IdleSetting::Default,
            last_active_at: t(last),
            extended_until: None,
            warned: None,
            agent_busy: false,
        }
    }

    #[test]
    fn warned_before_the_deadline_then_stopped_at_it() {
        let p = policy();
        let f = facts(0);
        assert_eq!(decide(&p, &f, t(50)), IdleVerdict::Nothing);
        assert_eq!(decide(&p, &f, t(89)), IdleVerdict::Nothing);
        assert_eq!(decide(&p, &f, t(90)), IdleVerdict::Warn { stop_at: t(100) });
        let warned = IdleFacts {
            warned: Some((t(90), t(100))),
            ..f
        };
        assert_eq!(decide(&p, &warned, t(95)), IdleVerdict::Nothing);
        assert_eq!(decide(&p, &warned, t(100)), IdleVerdict::Stop);
    }

    #[test]
    fn a_late_warning_still_gives_the_full_notice() {
        // The loop was away: the sandbox is long past its deadline, yet the
        // user gets warn_before to react.
        let p = policy();
        assert_eq!(
            decide(&p, &facts(0), t(500)),
            IdleVerdict::Warn { stop_at: t(510) }
        );
    }

    #[test]
    fn never_stopped_without_a_warning() {
        let p = policy();
        // No warning on record: warned first, whatever the time.
        for now in [100, 200, 10_000] {
            assert!(matches!(
                decide(&p, &facts(0), t(now)),
                IdleVerdict::Warn { .. }
            ));
        }
    }

    #[test]
    fn activity_after_the_warning_withdraws_it() {
        let p = policy();
        let f = IdleFacts {
            last_active_at: t(95),
            warned: Some((t(90), t(100))),
            ..facts(0)
        };
        assert_eq!(decide(&p, &f, t(100)), IdleVerdict::Withdraw);
        // Later, the new idle stretch is warned about afresh.
        assert_eq!(
            decide(&p, &f, t(185)),
            IdleVerdict::Warn { stop_at: t(195) }
        );
    }

    #[test]
    fn an_extension_postpones_and_withdraws() {
        let p = policy();
        let f = IdleFacts {
            extended_until: Some(t(300)),
            ..facts(0)
        };
        assert_eq!(decide(&p, &f, t(100)), IdleVerdict::Nothing);
        assert_eq!(
            decide(&p, &f, t(290)),
            IdleVerdict::Warn { stop_at: t(300) }
        );
        let warned_then_extended = IdleFacts {
            warned: Some((t(90), t(100))),
            extended_until: Some(t(300)),
            ..facts(0)
        };
        assert_eq!(
            decide(&p, &warned_then_extended, t(100)),
            IdleVerdict::Withdraw
        );
    }

    #[test]
    fn a_busy_agent_is_never_idle() {
        let p = policy();
        let busy = IdleFacts {
            agent_busy: true,
            ..facts(0)
        };
        assert_eq!(decide(&p, &busy, t(10_000)), IdleVerdict::Nothing);
        let warned = IdleFacts {
            warned: Some((t(90), t(100))),
            ..busy
        };
        assert_eq!(decide(&p, &warned, t(100)), IdleVerdict::Withdraw);
    }

    #[test]
    fn off_on_the_server_or_the_project_never_stops() {
        let off = IdlePolicy {
            stop_after: Duration::ZERO,
            ..policy()
        };
        assert_eq!(decide(&off, &facts(0), t(10_000)), IdleVerdict::Nothing);
        let project_off = IdleFacts {
            setting: IdleSetting::Off,
            ..facts(0)
        };
        assert_eq!(
            decide(&policy(), &project_off, t(10_000)),
            IdleVerdict::Nothing
        );
    }

    #[test]
    fn a_project_setting_within_the_maximum() {
        let p = policy();
        let short = IdleFacts {
            setting: IdleSetting::After(Duration::from_secs(20)),
            ..facts(0)
        };
        assert_eq!(
            decide(&p, &short, t(10)),
            IdleVerdict::Warn { stop_at: t(20) }
        );
        assert_eq!(
            p.check(IdleSetting::After(Duration::from_secs(1001))),
            Err(IdleError::TooLong(Duration::from_secs(1000)))
        );
        assert_eq!(
            p.check(IdleSetting::After(Duration::ZERO)),
            Err(IdleError::TooShort)
        );
        assert_eq!(p.check(IdleSetting::Off), Ok(IdleSetting::Off));
        let off = IdlePolicy {
            stop_after: Duration::ZERO,
            ..policy()
        };
        assert_eq!(off.check(IdleSetting::Off), Err(IdleError::PolicyOff));
    }

    #[test]
    fn extensions_default_to_the_projects_idle_time() {
        let p = policy();
        assert_eq!(
            p.extension(IdleSetting::Default, None),
            Ok(Duration::from_secs(100))
        );
        assert_eq!(
            p.extension(IdleSetting::After(Duration::from_secs(30)), None),
            Ok(Duration::from_secs(30))
        );
        let fixed = IdlePolicy {
            extend_by: Some(Duration::from_secs(60)),
            ..policy()
        };
        assert_eq!(
            fixed.extension(IdleSetting::Default, None),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            p.extension(IdleSetting::Default, Some(Duration::from_secs(5000))),
            Err(IdleError::TooLong(Duration::from_secs(1000)))
        );
        assert_eq!(
            p.extension(IdleSetting::Off, None),
            Err(IdleError::NotStopped)
        );
    }

    #[test]
    fn settings_as_typed_and_stored() {
        assert_eq!(IdleSetting::parse("off"), Some(IdleSetting::Off));
        assert_eq!(IdleSetting::parse("default"), Some(IdleSetting::Default));
        assert_eq!(
            IdleSetting::parse("2h"),
            Some(IdleSetting::After(Duration::from_secs(7200)))
        );
        assert_eq!(IdleSetting::parse("soon"), None);
        for s in [
            IdleSetting::Default,
            IdleSetting::Off,
            IdleSetting::After(Duration::from_secs(90)),
        ] {
            assert_eq!(IdleSetting::from_column(s.to_column()), s);
        }
    }

    #[test]
    fn durations_read_and_written() {
        assert_eq!(parse_duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("1.5h"), None);
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(time_left(t(0), t(845)), "14m 05s");
        assert_eq!(time_left(t(0), t(-5)), "now");
    }
}
