//! What one observe call asks a sandbox's tmux server about its sessions,
//! and how its answer is read: each session's latest output (activity) and
//! whether the program in its pane died without tmux noticing.
//!
//! That last case is a tmux bug, not a corner of ours: tmux built with
//! libutempter (Debian's is) removes a pane's utmp record when the pane's
//! terminal closes, and libutempter resets `SIGCHLD` to its default while
//! its helper runs. A program whose exit lands in that window is never
//! reaped: the pane reads dead, but without an exit status, and the
//! `pane-died` hook, which waits for the status, never runs (tmux issues
//! #311 and #4559). Kiln's agent states hear of a killed program only
//! through that hook, so observe nudges the server with the `SIGCHLD` it
//! missed; tmux then reaps the program and runs the hook as usual.

use chrono::{DateTime, Utc};

/// The `list-sessions` format of the observe call, per session (its active
/// pane): name, latest output, dead, exit status, exit signal.
pub(crate) const FORMAT: &str =
    "#{session_name}\t#{window_activity}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_dead_signal}";

/// The command that hands the server a `SIGCHLD` (run inside the sandbox,
/// where `#{pid}` is the server's own pid).
pub(crate) const NUDGE: &str = "kill -s CHLD #{pid}";

/// One session as the observe call saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionSeen<'a> {
    pub(crate) name: &'a str,
    /// When its window last printed anything.
    pub(crate) activity: Option<DateTime<Utc>>,
    /// Its program died but tmux has not reaped it (see the module's note).
    pub(crate) exit_missed: bool,
}

/// One line of the answer to [`FORMAT`]; a line from an older format (or
/// garbage) still names its session.
pub(crate) fn parse(line: &str) -> SessionSeen<'_> {
    let mut fields = line.split('\t');
    let name = fields.next().unwrap_or_default();
    let activity = fields
        .next()
        .and_then(|at| at.trim().parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0));
    let (dead, status, signal) = (fields.next(), fields.next(), fields.next());
    let exit_missed = dead == Some("1")
        && status.is_some_and(|s| s.trim().is_empty())
        && signal.is_some_and(|s| s.trim().is_empty());
    SessionSeen {
        name,
        activity,
        exit_missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_session_has_its_name_and_activity() {
        let s = parse("blog-a\t1764770000\t0\t\t");
        assert_eq!(s.name, "blog-a");
        assert_eq!(s.activity.map(|t| t.timestamp()), Some(1_764_770_000));
        assert!(!s.exit_missed);
    }

    #[test]
    fn a_program_tmux_reaped_is_not_a_missed_exit() {
        // Exited with 0, exited with 1, killed by a signal.
        for line in ["s\t1\t1\t0\t", "s\t1\t1\t1\t", "s\t1\t1\t\t9"] {
            assert!(!parse(line).exit_missed, "{line:?}");
        }
    }

    #[test]
    fn a_dead_pane_without_status_or_signal_is_a_missed_exit() {
        assert!(parse("s\t1\t1\t\t").exit_missed);
    }

    #[test]
    fn short_or_odd_lines_name_their_session_and_miss_nothing() {
        for line in ["s", "s\t", "s\tnot-a-time", "s\t1\t1"] {
            let seen = parse(line);
            assert_eq!(seen.name, "s");
            assert!(!seen.exit_missed, "{line:?}");
        }
        assert_eq!(parse("s\tnot-a-time").activity, None);
    }
}
