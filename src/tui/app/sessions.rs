//! The detail screen's terminal sessions: which one is selected, attaching
//! to it, restarting an exited one, and keeping the list current (a program
//! exiting changes nothing in the store, so the list is polled while shown).

use super::{App, Effect, Overlay, Screen, attach_allowed};
use crate::driver::SessionInfo;
use crate::tui::keys::Action;
use crate::tui::screens::detail::session_label;
use crate::tui::text;

impl App {
    /// The sessions of the open project (empty when none are known).
    pub(crate) fn sessions(&self) -> &[SessionInfo] {
        match self.screen {
            Screen::Detail => self.detail.sessions(),
            _ => &[],
        }
    }

    /// The session row the cursor is on, on the detail screen.
    pub(crate) fn selected_session(&self) -> Option<&SessionInfo> {
        self.sessions().get(self.detail.session_selected)
    }

    /// The project name the session list should be refreshed for, if the
    /// list is on screen (detail screen, pane closed, sandbox running).
    pub fn polls_sessions(&self) -> Option<&str> {
        if self.screen != Screen::Detail || self.pane.is_some() {
            return None;
        }
        attach_allowed(self.target()).ok()?;
        self.detail.open.as_deref()
    }

    pub(super) fn on_poll_sessions(&mut self) -> Vec<Effect> {
        if self.polls_admin() {
            return vec![Effect::LoadAdmin];
        }
        match self.polls_sessions() {
            Some(project) => vec![Effect::LoadSessions {
                project: project.to_string(),
            }],
            None => vec![],
        }
    }

    pub(super) fn perform_session(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::NextSession | Action::PrevSession => self.detail.cycle_sessions(action),
            Action::RestartSession => {
                let (Some(project), Some(s)) = (self.detail.open.clone(), self.selected_session())
                else {
                    return vec![];
                };
                let (session, label) = (s.name.clone(), session_label(s));
                self.info(format!("restarting session {label}…"));
                return vec![Effect::Restart {
                    project,
                    session,
                    attach: None,
                    from_pane: false,
                }];
            }
            Action::Attach | Action::AttachReadOnly => {
                return self.attach_selected(action == Action::AttachReadOnly);
            }
            _ => {}
        }
        vec![]
    }

    /// `a`/Enter/`v` on the detail screen: the selected session (the default
    /// one while none is listed). An exited one is offered a restart first,
    /// rather than a dead pane.
    fn attach_selected(&mut self, read_only: bool) -> Vec<Effect> {
        let Some(project) = self.detail.open.clone() else {
            return vec![];
        };
        match self.selected_session() {
            Some(s) if s.state.is_exited() => {
                self.overlay = Some(Overlay::ConfirmRestart {
                    project,
                    session: s.name.clone(),
                    state: s.state,
                    read_only,
                });
                vec![]
            }
            selected => vec![Effect::Attach {
                project,
                session: selected.and_then(|s| s.name.clone()),
                read_only,
            }],
        }
    }

    /// `y` on the offer: restart, then attach.
    pub(super) fn confirm_restart(
        &mut self,
        project: String,
        session: Option<String>,
        read_only: bool,
    ) -> Vec<Effect> {
        self.info(format!(
            "restarting session {}…",
            text::fit(session.as_deref().unwrap_or("default"), 20)
        ));
        vec![Effect::Restart {
            project,
            session,
            attach: Some(read_only),
            from_pane: false,
        }]
    }
}
