//! The kinds of notifications a user gets, and how each is shown.

use serde::Serialize;

/// What a notification is about. Stored as text (`notifications.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A session's agent waits for its user (issue 20).
    NeedsInput,
    /// A session's agent finished its turn (issue 20).
    Done,
    /// A project entered ERROR; the message is the reason.
    ProjectFailed,
    /// The idle policy will stop a project soon.
    IdleWarning,
    /// The idle policy stopped a project.
    IdleStopped,
    /// A new sandbox's repository could not be cloned; the message is git's.
    CloneFailed,
    /// A template's setup script failed; the message is its last lines.
    SetupFailed,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 7] = [
        NoticeKind::NeedsInput,
        NoticeKind::Done,
        NoticeKind::ProjectFailed,
        NoticeKind::IdleWarning,
        NoticeKind::IdleStopped,
        NoticeKind::CloneFailed,
        NoticeKind::SetupFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::NeedsInput => "needs_input",
            NoticeKind::Done => "done",
            NoticeKind::ProjectFailed => "project_failed",
            NoticeKind::IdleWarning => "idle_warning",
            NoticeKind::IdleStopped => "idle_stopped",
            NoticeKind::CloneFailed => "clone_failed",
            NoticeKind::SetupFailed => "setup_failed",
        }
    }

    pub fn parse(s: &str) -> Option<NoticeKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A short label for lists.
    pub fn label(self) -> &'static str {
        match self {
            NoticeKind::NeedsInput => "needs you",
            NoticeKind::Done => "done",
            NoticeKind::ProjectFailed => "failed",
            NoticeKind::IdleWarning => "idle stop soon",
            NoticeKind::IdleStopped => "idle stopped",
            NoticeKind::CloneFailed => "clone failed",
            NoticeKind::SetupFailed => "setup failed",
        }
    }
}

/// The label of a stored kind (an unknown one is shown as stored).
pub fn label_of(kind: &str) -> &str {
    match NoticeKind::parse(kind) {
        Some(k) => k.label(),
        None => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_as_stored() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(NoticeKind::parse("bogus"), None);
        assert_eq!(label_of("bogus"), "bogus");
        // The agent kinds are what issue 20's hooks store.
        assert_eq!(
            NoticeKind::NeedsInput.as_str(),
            crate::model::agent::AgentState::NeedsInput.as_str()
        );
    }
}
