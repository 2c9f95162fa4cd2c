//! The detail screen's git line: the open project's branch, changed files
//! and ahead/behind, read by a job (never on the UI path) when the project
//! opens, when a pane attaches or detaches (work happened), and every
//! [`GIT_POLL_EVERY`] session polls while the screen is shown.

use super::{App, Effect, Screen};
use crate::model::git::GitState;

/// Session polls between two git reads (a poll is every few seconds, so
/// this is about half a minute): git state changes as work is done, not
/// from one second to the next.
pub(crate) const GIT_POLL_EVERY: u32 = 10;

impl App {
    /// A fresh git read for the project open on the detail screen.
    pub(super) fn git_refresh(&self) -> Vec<Effect> {
        match &self.detail.open {
            Some(project) if matches!(self.screen, Screen::Detail | Screen::Env) => {
                vec![Effect::LoadGit {
                    project: project.clone(),
                }]
            }
            _ => vec![],
        }
    }

    /// Counts a session poll; every [`GIT_POLL_EVERY`]th reads git again.
    pub(super) fn on_poll_git(&mut self) -> Vec<Effect> {
        if self.screen != Screen::Detail || self.pane.is_some() {
            return vec![];
        }
        self.detail.git_polls = self.detail.git_polls.wrapping_add(1);
        if self.detail.git_polls.is_multiple_of(GIT_POLL_EVERY) {
            self.git_refresh()
        } else {
            vec![]
        }
    }

    /// The first detail of a project also reads its git state.
    pub(super) fn git_after_detail(&self) -> Vec<Effect> {
        if self.detail.git.is_none() && self.detail.data.is_some() {
            self.git_refresh()
        } else {
            vec![]
        }
    }

    /// A git read answered; a late one for another project is dropped.
    pub(super) fn on_git(&mut self, project: &str, state: Result<Option<GitState>, String>) {
        if self.detail.open.as_deref() == Some(project) {
            self.detail.git = Some(state);
        }
    }
}
