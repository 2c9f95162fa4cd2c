//! One state per screen of the dashboard (the ratatui demo2 way): each
//! struct owns its data and cursors and the moves on them. `App` holds one
//! of each and routes messages and keys to them; `tui::view` draws each
//! from its own state plus the small shared [`Ctx`], never from `App`.

pub mod admin;
pub mod agents;
pub mod bindings;
pub mod detail;
pub mod dialogs;
pub mod env;
pub mod forms;
pub mod list;
pub mod notifications;
pub mod owner;
pub mod rules;
pub mod settings;

use chrono::{DateTime, Utc};

use crate::tui::keys::Action;

/// What every screen's drawing may read besides its own state.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now: DateTime<Utc>,
    /// Animation frame of the spinners.
    pub tick: usize,
}

/// The one-line status under the body: the last outcome or refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub text: String,
    pub error: bool,
}

/// A cursor move within a list of `len` rows, `page` rows to a page.
pub fn step(action: Action, pos: usize, len: usize, page: usize) -> usize {
    let last = len.saturating_sub(1);
    match action {
        Action::Up => pos.saturating_sub(1),
        Action::Down => (pos + 1).min(last),
        Action::PageUp => pos.saturating_sub(page),
        Action::PageDown => (pos + page).min(last),
        Action::Top => 0,
        _ => last,
    }
}
