//! The terminal pane as the app sees it: opening and closing, the commands
//! after the prefix key (a pure rule decides what a read-only viewer keeps),
//! and the size the attached session should have.
//!
//! Keystrokes typed into the pane do not come through here: the session
//! sends them to the attached session directly, and the echo preview
//! (`App::echo_preview`, drawn by `tui::echo_preview`) is that fast path's
//! only look at the app.

use super::{App, Effect, PaneCommand, SessionChoice, TMUX_COPY_MODE};
use crate::tui::pane::Pane;

impl App {
    /// Whether keystrokes go to the attached session (the session then only
    /// sends `Msg::PaneCommand` after the prefix key).
    pub fn pane_open(&self) -> bool {
        self.pane.is_some()
    }

    /// The pane rows a keystroke's echo changed, ready to send ahead of the
    /// full frame (`None` unless the pane is on screen and the change small).
    pub fn echo_preview(&self) -> Option<crate::tui::echo_preview::Preview> {
        self.pane.as_ref()?.echo_preview(self.width, self.height)
    }

    /// Whether pastes should reach the pane without their markers.
    pub fn pane_strips_paste(&self) -> bool {
        self.pane.as_ref().is_some_and(|p| !p.wants_paste_markers())
    }

    /// A full frame has been drawn (the pane's preview compares against it).
    pub fn frame_drawn(&mut self) {
        if let Some(p) = &mut self.pane {
            p.drawn();
        }
    }

    /// The attached session's size (columns, rows) for the current window.
    pub fn pane_size(&self) -> Option<(u16, u16)> {
        let p = self.pane.as_ref()?;
        let a = p.area(self.width, self.height);
        Some((a.width.max(1), a.height.max(1)))
    }

    /// What the pane shows (for tests and the session's checks).
    pub fn pane_text(&self) -> Option<String> {
        self.pane.as_ref().map(|p| p.screen_text())
    }

    /// The pane's screen follows the window; the attached session is told.
    pub(super) fn resize_pane(&mut self) -> Vec<Effect> {
        let Some((c, r)) = self.pane_size() else {
            return vec![];
        };
        if let Some(p) = &mut self.pane {
            p.resize(c, r);
        }
        vec![Effect::ResizePane(c, r)]
    }

    pub(super) fn on_pane_opened(
        &mut self,
        project: String,
        session: String,
        name: Option<String>,
        read_only: bool,
    ) -> Vec<Effect> {
        let mut pane = Pane::new(&project, &session, read_only, 1, 1);
        pane.name = name;
        pane.prefix = self.prefix;
        self.pane = Some(pane);
        self.help = false;
        // Not the last action's line from the dashboard under it.
        self.info(if read_only {
            format!("viewing {session} read-only")
        } else {
            format!("attached to {session}")
        });
        let mut fx = self.resize_pane();
        fx.extend(self.git_refresh());
        fx
    }

    /// The key typed after the prefix. A read-only viewer keeps the
    /// commands that send no keys to the session; the others are refused
    /// with the reason.
    pub(super) fn on_pane_command(&mut self, cmd: PaneCommand) -> Vec<Effect> {
        let Some(p) = &mut self.pane else {
            return vec![];
        };
        if p.read_only
            && let Some(why) = cmd.read_only_refusal()
        {
            self.refuse(why);
            return vec![];
        }
        let (project, name, read_only) = (p.project.clone(), p.name.clone(), p.read_only);
        match cmd {
            PaneCommand::Detach => {
                self.pane = None;
                self.info(format!(
                    "detached from {project}; the session stays on the server"
                ));
                // Back on the detail screen: its session list at once, not
                // at the next poll (a session may have exited meanwhile).
                let mut fx = vec![Effect::Detach];
                fx.extend(self.on_poll_sessions());
                fx.extend(self.git_refresh());
                fx
            }
            PaneCommand::Zoom => {
                p.zoomed = !p.zoomed;
                self.resize_pane()
            }
            // The session's own history (tmux keeps 50,000 lines).
            PaneCommand::History => vec![Effect::PaneInput(TMUX_COPY_MODE.to_vec())],
            PaneCommand::NewSession => vec![Effect::SwitchSession {
                project,
                to: SessionChoice::New,
                read_only,
            }],
            PaneCommand::NextSession => vec![Effect::SwitchSession {
                project,
                to: SessionChoice::Next { current: name },
                read_only,
            }],
            // The pane stays on the session; its program starts again if it
            // had exited.
            PaneCommand::Restart => vec![Effect::Restart {
                project,
                session: name,
                attach: None,
                from_pane: true,
            }],
            PaneCommand::SendPrefix => vec![Effect::PaneInput(vec![self.prefix.byte()])],
            PaneCommand::Unknown(_) => vec![],
        }
    }
}
