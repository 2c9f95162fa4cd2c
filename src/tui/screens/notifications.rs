//! The notifications screen: the user's notifications, newest first
//! (reading them marks them read), the unread count the header shows, and
//! the idle stops coming, which the list and detail screens announce in a
//! banner until the user extends them or uses the sandbox.

use chrono::{DateTime, Utc};

use super::bindings::movement;
use crate::store::agents::Notification;
use crate::store::projects::ProjectView;
use crate::store::resources::ResourceKind;
use crate::tui::keys::{Action, Binding, Key};

#[derive(Debug, Default)]
pub struct NotificationsScreen {
    /// `None` until the screen's first load.
    pub rows: Option<Vec<Notification>>,
    pub selected: usize,
    /// Unread notifications, as the project list last counted them.
    pub unread: i64,
}

impl NotificationsScreen {
    pub fn set_rows(&mut self, rows: Vec<Notification>) {
        self.selected = self.selected.min(rows.len().saturating_sub(1));
        self.rows = Some(rows);
    }

    pub fn selected_entry(&self) -> Option<&Notification> {
        self.rows.as_ref()?.get(self.selected)
    }

    pub fn move_cursor(&mut self, action: Action, page: usize) {
        let len = self.rows.as_ref().map_or(0, Vec::len);
        self.selected = super::step(action, self.selected, len, page);
    }

    /// The screen's keys.
    pub fn bindings(&self) -> Vec<Binding> {
        let open = match self.selected_entry() {
            Some(n) if n.project.is_some() => Ok(()),
            Some(_) => Err("its project is gone".to_string()),
            None => Err("no notification selected".to_string()),
        };
        let mut v = vec![
            Binding::new(Key::Enter, "open project", Action::Open).when(open),
            Binding::new(Key::Esc, "back", Action::Back),
        ];
        v.extend(movement("list"));
        v.push(Binding::new(Key::Char('?'), "help", Action::Help));
        v.push(Binding::new(Key::Char('q'), "quit", Action::Quit));
        v
    }
}

/// The `N` binding the list and detail screens share (the header names
/// it while some are unread).
pub fn open_binding() -> Binding {
    Binding::new(Key::Char('N'), "notifications", Action::Notifications).help_only()
}

/// When the idle policy stops `view`'s sandbox, once it has warned.
pub fn idle_stop_at(view: &ProjectView) -> Option<DateTime<Utc>> {
    view.resources
        .iter()
        .filter(|r| r.kind == ResourceKind::Sandbox)
        .filter_map(|r| r.idle_stop_at)
        .min()
}

/// `E` extends (postpones) `target`'s idle stop; enabled while one is coming.
pub fn extend_binding(target: Option<&ProjectView>) -> Binding {
    let enabled = match target {
        Some(v) if idle_stop_at(v).is_some() => Ok(()),
        Some(_) => Err("no idle stop is coming for this project".to_string()),
        None => Err("no project selected".to_string()),
    };
    // In the footer only while a stop is coming (the banner names the key).
    let shown = enabled.is_ok();
    let b = Binding::new(Key::Char('E'), "extend idle", Action::ExtendIdle).when(enabled);
    if shown { b } else { b.help_only() }
}

/// The idle stops coming among `projects`, soonest first.
pub fn coming_stops<'a>(
    projects: impl IntoIterator<Item = &'a ProjectView>,
) -> Vec<(&'a str, DateTime<Utc>)> {
    let mut v: Vec<(&str, DateTime<Utc>)> = projects
        .into_iter()
        .filter_map(|p| idle_stop_at(p).map(|at| (p.project.name.as_str(), at)))
        .collect();
    v.sort_by_key(|(_, at)| *at);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProjectStatus;
    use crate::tui::fixtures;

    #[test]
    fn only_a_warned_project_can_be_postponed_and_the_soonest_stop_leads() {
        let mut a = fixtures::project(1, "alpha", ProjectStatus::Running, 60);
        let b = fixtures::project(2, "beta", ProjectStatus::Running, 60);
        let mut c = fixtures::project(3, "gamma", ProjectStatus::Running, 60);
        assert!(extend_binding(Some(&b)).enabled.is_err());
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        for r in a.resources.iter_mut() {
            if r.kind == ResourceKind::Sandbox {
                r.idle_stop_at = Some(at(200));
            }
        }
        for r in c.resources.iter_mut() {
            if r.kind == ResourceKind::Sandbox {
                r.idle_stop_at = Some(at(100));
            }
        }
        assert!(extend_binding(Some(&a)).enabled.is_ok());
        let stops = coming_stops([&a, &b, &c]);
        assert_eq!(stops, vec![("gamma", at(100)), ("alpha", at(200))]);
    }
}
