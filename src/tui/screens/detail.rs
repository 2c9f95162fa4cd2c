//! The project detail screen: the open project, its sessions (and which one
//! the cursor is on), the event scroll, and what can truthfully be said
//! about its env. The env editor edits this same open project.

use chrono::{DateTime, Utc};

use super::bindings::{attach, intents, movement};
use super::rules::member_allowed;
use super::rules::{attach_allowed, attach_or_start_allowed};
use crate::driver::SessionInfo;
use crate::store::projects::ProjectView;
use crate::tui::keys::{Action, Binding, Key};
use crate::tui::text;

/// Everything the detail and env screens show for one project.
pub use crate::console::ProjectDetail;

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
    /// The working tree's git state once read (`Ok(None)`: no repository),
    /// or why it could not be.
    pub git: Option<Result<Option<crate::model::git::GitState>, String>>,
    /// Session polls since the project opened (see `app::git`).
    pub git_polls: u32,
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

    /// The session row the cursor is on.
    pub fn selected_session(&self) -> Option<&SessionInfo> {
        self.sessions().get(self.session_selected)
    }

    /// Whether `R` can restart the selected session, and if not, why.
    pub fn restart_check(&self, target: Option<&ProjectView>) -> Result<(), String> {
        attach_allowed(target).map_err(|e| e.replace("cannot attach", "cannot restart"))?;
        match self.selected_session() {
            None => Err("no session selected".into()),
            Some(s) if s.state.is_exited() => Ok(()),
            Some(s) => Err(format!(
                "session {} is running; R restarts only an exited session",
                session_label(s)
            )),
        }
    }

    /// The detail screen's keys; `target` is the open project as the list
    /// knows it (its state enables the intents and attach).
    pub fn bindings(&self, target: Option<&ProjectView>) -> Vec<Binding> {
        let has_url = self.data.as_ref().is_some_and(|d| d.database_url.is_some());
        let mut v = vec![Binding::new(Key::Esc, "back", Action::Back)];
        let sessions = !self.sessions().is_empty();
        if sessions {
            // In the footer (early, so it fits at 80 columns) only while the
            // selected session has exited; in help whenever a session is listed.
            let restart = self.restart_check(target);
            let shown = restart.is_ok();
            let b = Binding::new(Key::Char('R'), "restart session", Action::RestartSession)
                .when(restart);
            v.push(if shown { b } else { b.help_only() });
        }
        v.extend(intents(target));
        v.push(
            Binding::new(Key::Char('e'), "env", Action::Env).when(member_allowed(target, "env")),
        );
        v.extend(attach(target));
        v.push(
            Binding::new(Key::Char('L'), "logs", Action::Logs).when(member_allowed(target, "logs")),
        );
        v.push(
            Binding::new(
                Key::Char('m'),
                super::list::mute_label(target),
                Action::ToggleMute,
            )
            .help_only(),
        );
        v.push(super::notifications::extend_binding(target));
        v.push(super::notifications::open_binding());
        v.push(
            Binding::new(Key::Enter, "attach", Action::Attach)
                .when(attach_or_start_allowed(target))
                .help_only(),
        );
        if sessions {
            v.push(Binding::new(Key::Tab, "next session", Action::NextSession).help_only());
            v.push(Binding::new(Key::BackTab, "previous session", Action::PrevSession).help_only());
        }
        v.push(
            Binding::new(
                Key::Char('p'),
                if self.show_password {
                    "hide password"
                } else {
                    "show password"
                },
                Action::TogglePassword,
            )
            .when(if has_url {
                Ok(())
            } else {
                Err("no connection string yet (the database is not ready)".into())
            }),
        );
        v.extend(movement("events"));
        v.push(Binding::new(Key::Char('?'), "help", Action::Help));
        v.push(Binding::new(Key::Char('q'), "back", Action::Back).help_only());
        v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
        v
    }
}
