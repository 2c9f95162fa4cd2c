//! Agent states on the dashboard: the user's sessions as Claude Code's
//! hooks last reported them (shown on the list, the detail screen and the
//! header), the inbox screen of sessions that need the user, and when to
//! ring the bell (once per transition into `needs_input` or `done`).

use std::collections::HashMap;

use uuid::Uuid;

use super::bindings::movement;
use crate::model::agent::AgentState;
use crate::store::agents::AgentRow;
use crate::tui::keys::{Action, Binding, Key};

#[derive(Debug, Default)]
pub struct AgentsScreen {
    /// `None` until the first load: nothing is news before it.
    pub rows: Option<Vec<AgentRow>>,
    /// The inbox's cursor.
    pub selected: usize,
}

impl AgentsScreen {
    /// Takes a fresh load; returns whether the bell rings for it.
    pub fn set_rows(&mut self, rows: Vec<AgentRow>) -> bool {
        let ring = rings(self.rows.as_deref(), &rows);
        self.rows = Some(rows);
        self.selected = self.selected.min(self.inbox().len().saturating_sub(1));
        ring
    }

    /// Every session's row of `project` (default session first).
    pub fn of_project(&self, project: Uuid) -> Vec<&AgentRow> {
        self.rows
            .iter()
            .flatten()
            .filter(|r| r.project_id == project)
            .collect()
    }

    /// The state a project shows on the list: its most pressing session's.
    pub fn headline(&self, project: Uuid) -> Option<&AgentRow> {
        self.of_project(project)
            .into_iter()
            .min_by_key(|r| (urgency(r.state), r.session.is_some()))
    }

    /// The state of one session (`None`: the default one).
    pub fn session(&self, project: Uuid, session: Option<&str>) -> Option<&AgentRow> {
        self.of_project(project)
            .into_iter()
            .find(|r| r.session.as_deref() == session)
    }

    /// Sessions that need the user, oldest wait first.
    pub fn inbox(&self) -> Vec<&AgentRow> {
        let mut v: Vec<&AgentRow> = self
            .rows
            .iter()
            .flatten()
            .filter(|r| r.state.needs_you())
            .collect();
        v.sort_by_key(|r| r.entered_at);
        v
    }

    pub fn need_you(&self) -> usize {
        self.inbox().len()
    }

    pub fn selected_entry(&self) -> Option<&AgentRow> {
        self.inbox().get(self.selected).copied()
    }

    pub fn move_cursor(&mut self, action: Action, page: usize) {
        self.selected = super::step(action, self.selected, self.inbox().len(), page);
    }

    /// The inbox's keys.
    pub fn bindings(&self) -> Vec<Binding> {
        let selected = match self.selected_entry() {
            Some(_) => Ok(()),
            None => Err("nothing needs you".to_string()),
        };
        let mut v = vec![
            Binding::new(Key::Enter, "attach", Action::Attach).when(selected),
            Binding::new(Key::Esc, "back", Action::Back),
        ];
        v.extend(movement("list"));
        v.push(Binding::new(Key::Char('?'), "help", Action::Help));
        v.push(Binding::new(Key::Char('q'), "quit", Action::Quit));
        v
    }
}

/// Which state draws the eye first on a project with several sessions.
fn urgency(s: AgentState) -> u8 {
    match s {
        AgentState::NeedsInput => 0,
        AgentState::Done => 1,
        AgentState::Working => 2,
        AgentState::Idle => 3,
        AgentState::Ended => 4,
        AgentState::Unknown => 5,
    }
}

/// Whether `new` holds a transition into a notifying state that `old` did
/// not: a session newly in `needs_input` or `done`, or in it again since a
/// later time. The first load (`old` = `None`) is not news, and a repeated
/// report of the same wait keeps its entry time, so it rings once.
pub fn rings(old: Option<&[AgentRow]>, new: &[AgentRow]) -> bool {
    let Some(old) = old else {
        return false;
    };
    let before: HashMap<(Uuid, Option<&str>), &AgentRow> = old
        .iter()
        .map(|r| ((r.project_id, r.session.as_deref()), r))
        .collect();
    new.iter().any(|r| {
        r.state.notifies()
            && !r.muted
            && before
                .get(&(r.project_id, r.session.as_deref()))
                .is_none_or(|o| o.state != r.state || o.entered_at != r.entered_at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(project: u128, state: AgentState, at: i64) -> AgentRow {
        AgentRow {
            team_role: None,
            project_id: Uuid::from_u128(project),
            project: format!("p{project}"),
            slug: format!("p{project}"),
            session: None,
            state,
            message: String::new(),
            entered_at: chrono::DateTime::from_timestamp(at, 0).unwrap(),
            muted: false,
        }
    }

    #[test]
    fn the_bell_rings_once_per_transition_into_needs_input_or_done() {
        let working = vec![row(1, AgentState::Working, 10)];
        let waiting = vec![row(1, AgentState::NeedsInput, 20)];
        // The first load is not news.
        assert!(!rings(None, &waiting));
        assert!(rings(Some(&working), &waiting));
        // The same wait reported again (or reloaded) does not ring again.
        assert!(!rings(Some(&waiting), &waiting));
        let done = vec![row(1, AgentState::Done, 30)];
        assert!(rings(Some(&waiting), &done));
        // A new session appearing straight in needs_input rings.
        assert!(rings(Some(&[]), &waiting));
        // Working is not news.
        assert!(!rings(Some(&done), &working));
        // A muted project never rings.
        let mut muted = waiting.clone();
        muted[0].muted = true;
        assert!(!rings(Some(&working), &muted));
    }

    #[test]
    fn the_inbox_is_oldest_wait_first_and_a_project_shows_its_most_pressing_session() {
        let mut s = AgentsScreen::default();
        let mut b = row(2, AgentState::NeedsInput, 50);
        b.session = Some("s1".into());
        s.set_rows(vec![
            row(1, AgentState::NeedsInput, 40),
            row(2, AgentState::Working, 10),
            b,
        ]);
        let inbox: Vec<_> = s.inbox().iter().map(|r| r.entered_at.timestamp()).collect();
        assert_eq!(inbox, [40, 50]);
        assert_eq!(
            s.headline(Uuid::from_u128(2)).unwrap().state,
            AgentState::NeedsInput
        );
        assert_eq!(
            s.session(Uuid::from_u128(2), None).unwrap().state,
            AgentState::Working
        );
        assert_eq!(s.need_you(), 2);
    }
}
