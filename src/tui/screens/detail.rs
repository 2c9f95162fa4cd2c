//! The project detail screen: the open project, its sessions (and which one
//! the cursor is on), the event scroll, and what can truthfully be said
//! about its env. The env editor edits this same open project.

use chrono::{DateTime, Utc};

use crate::driver::SessionInfo;
use crate::store::env::EnvVar;
use crate::store::events::Event;
use crate::store::projects::ProjectView;
use crate::tui::keys::Action;
use crate::tui::text;

/// Everything the detail and env screens show for one project.
pub struct ProjectDetail {
    pub view: ProjectView,
    pub env: Vec<EnvVar>,
    pub events: Vec<Event>,
    /// Connection string with the password; shown masked until the user asks.
    pub database_url: Option<String>,
    /// The sandbox's terminal sessions (empty when it is not running).
    pub sessions: Vec<SessionInfo>,
}

/// How a session is named on screen: named ones by name, the default one as "default".
pub fn session_label(s: &SessionInfo) -> String {
    text::fit(s.name.as_deref().unwrap_or("default"), 20)
}

#[derive(Default)]
pub struct DetailScreen {
    /// The project the detail/env screens are about (its displayed name).
    pub open: Option<String>,
    /// `None` until the first `Msg::Detail` for it.
    pub data: Option<ProjectDetail>,
    pub show_password: bool,
    /// Event rows scrolled back from the newest.
    pub event_scroll: usize,
    /// Index into the open project's session list.
    pub session_selected: usize,
    /// Set when an env change succeeded; cleared once the sandbox has been
    /// updated since (its row moves when the reconciler applies the env).
    pub env_changed_at: Option<DateTime<Utc>>,
}

impl DetailScreen {
    /// Opens `name`, forgetting what was shown for another project.
    pub fn open(&mut self, name: String) {
        if self.open.as_deref() != Some(&name) {
            *self = DetailScreen::default();
        }
        self.open = Some(name);
    }

    pub fn close(&mut self) {
        self.open = None;
        self.data = None;
        self.show_password = false;
    }

    /// The sessions of the open project (empty when none are known).
    pub fn sessions(&self) -> &[SessionInfo] {
        self.data.as_ref().map_or(&[][..], |d| &d.sessions[..])
    }

    /// A fresh detail for the open project (a late one for another is dropped).
    pub fn set_data(&mut self, d: ProjectDetail, env_selected: &mut usize) {
        if self.open.as_deref() != Some(d.view.project.name.as_str()) {
            return;
        }
        *env_selected = (*env_selected).min(d.env.len().saturating_sub(1));
        self.event_scroll = self.event_scroll.min(d.events.len().saturating_sub(1));
        let keep = self.selected_session_name();
        self.data = Some(d);
        self.keep_session_selection(keep);
    }

    /// A fresh session list; the cursor stays on the same session by name.
    pub fn set_sessions(&mut self, project: &str, sessions: Vec<SessionInfo>) {
        let keep = self.selected_session_name();
        let open = self.open.as_deref();
        let Some(d) = &mut self.data else {
            return;
        };
        if open != Some(project) || d.view.project.name != project {
            return; // a late answer for a project no longer open
        }
        d.sessions = sessions;
        self.keep_session_selection(keep);
    }

    fn selected_session_name(&self) -> Option<Option<String>> {
        self.sessions()
            .get(self.session_selected)
            .map(|s| s.name.clone())
    }

    /// After the list changed: back onto the session named `keep` if it is
    /// still there, else within bounds.
    fn keep_session_selection(&mut self, keep: Option<Option<String>>) {
        let list = self.sessions();
        self.session_selected = keep
            .and_then(|name| list.iter().position(|s| s.name == name))
            .unwrap_or(self.session_selected)
            .min(list.len().saturating_sub(1));
    }

    /// Tab / S-Tab over the sessions, wrapping.
    pub fn cycle_sessions(&mut self, action: Action) {
        let n = self.sessions().len();
        match action {
            Action::NextSession if n > 0 => self.session_selected = (self.session_selected + 1) % n,
            Action::PrevSession if n > 0 => {
                self.session_selected = (self.session_selected + n - 1) % n
            }
            _ => {}
        }
    }

    /// Events scroll back from the newest: Up goes back in time.
    pub fn scroll_events(&mut self, action: Action, page: usize) {
        let n = self.data.as_ref().map_or(0, |d| d.events.len());
        let back = match action {
            Action::Up => Action::Down,
            Action::Down => Action::Up,
            Action::PageUp => Action::PageDown,
            Action::PageDown => Action::PageUp,
            Action::Top => Action::Bottom,
            _ => Action::Top,
        };
        self.event_scroll = super::step(back, self.event_scroll, n, page);
    }

    /// Where the open project's env stands, as far as the screen can know.
    pub fn env_state(&self) -> Option<String> {
        let d = self.data.as_ref()?;
        let version = d.view.project.env_version;
        let sandbox = d
            .view
            .resources
            .iter()
            .find(|r| r.kind == crate::store::resources::ResourceKind::Sandbox)?;
        use crate::model::ResourceStatus as R;
        let applied = sandbox.applied_env_version;
        let state = match (sandbox.status, self.env_changed_at) {
            (R::Running, _) if applied.is_some_and(|a| a < version) => {
                return Some(format!(
                    "env v{version}: pending (the sandbox has v{}, catching up)",
                    applied.unwrap_or_default()
                ));
            }
            // The change is saved but this detail predates it: a reload is on its way.
            (R::Running, Some(at)) if sandbox.updated_at <= at => "pending (sandbox catching up)",
            (R::Running, Some(_)) => "applied",
            (R::Running, None) => "in use by the running sandbox",
            (R::Error, _) => "not applied: the sandbox is in ERROR",
            (s, _) if s.is_transition() => "applies once the sandbox settles",
            _ => "applies when the sandbox next starts",
        };
        Some(format!("env v{version}: {state}"))
    }
}
