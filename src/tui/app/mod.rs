//! The dashboard's state and its `update`: Elm style. `update` is pure — it
//! never performs I/O or reads the clock; it returns `Effect`s for the SSH
//! session to perform, and the session answers with `Msg`s.

mod admin;
mod bindings;
mod data;
mod draw;
mod git;
mod keys;
mod msg;
mod notifications;
mod pane;
mod sessions;
mod settings;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

use crate::store::projects::ProjectView;

use crate::tui::keys::{Binding, Context};
pub use crate::tui::screens::StatusLine;
use crate::tui::screens::agents::AgentsScreen;
use crate::tui::screens::detail::DetailScreen;
pub use crate::tui::screens::detail::ProjectDetail;
pub use crate::tui::screens::dialogs::Overlay;
use crate::tui::screens::env::EnvScreen;
use crate::tui::screens::list::ListScreen;
use crate::tui::screens::notifications::NotificationsScreen;
use crate::tui::screens::rules::intent_status_is_transition;
pub(crate) use crate::tui::screens::rules::{attach_allowed, intent_allowed};
pub use crate::tui::screens::settings::SettingsData;
use crate::tui::screens::settings::SettingsScreen;
use crate::tui::text;
pub use msg::{Effect, Key, Msg, PaneCommand, Reply, SessionChoice, TMUX_COPY_MODE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    List,
    Detail,
    Env,
    Settings,
    /// The open project's sandbox log, followed live.
    Logs,
    /// Sessions that need the user, across their projects.
    Inbox,
    /// Every user, project and replica (admins only).
    Admin,
    /// The user's notifications, newest first.
    Notifications,
}

/// The dashboard: one state per screen, and what they share (the window,
/// the clock, the status line). `update` routes each message to the screen
/// it concerns; `view` draws the current screen from its own state.
pub struct App {
    pub(crate) username: String,
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) now: DateTime<Utc>,
    pub(crate) notice: Option<String>,
    /// Why the project list may be out of date (`Msg::ProjectsStale`),
    /// until the next refresh; shown in the header over the notice.
    pub(crate) stale: Option<String>,
    pub(crate) no_color: bool,
    /// The pane's prefix key as shown on screen.
    pub(crate) prefix: crate::tui::prefix::PrefixKey,
    pub(crate) tick: usize,
    pub(crate) screen: Screen,
    pub(crate) list: ListScreen,
    pub(crate) detail: DetailScreen,
    pub(crate) env: EnvScreen,
    pub(crate) settings: SettingsScreen,
    /// Agent states of the user's sessions, and the inbox.
    pub(crate) agents: AgentsScreen,
    /// The notifications screen, and the unread count.
    pub(crate) notifications: NotificationsScreen,
    /// The log screen's lines, while it is open.
    pub(crate) logs: Option<crate::tui::logview::LogView>,
    /// The terminal pane, while attached.
    pub(crate) pane: Option<crate::tui::pane::Pane>,
    pub(crate) overlay: Option<Overlay>,
    pub(crate) help: bool,
    pub(crate) status: Option<StatusLine>,
    /// A project started from the attach offer, and whether read-only: the
    /// pane opens once its sandbox runs.
    pub(crate) attach_when_running: Option<(String, bool)>,
    /// The admin screen; `None` unless the user is an admin.
    pub(crate) admin: Option<crate::tui::screens::admin::AdminScreen>,
}

impl App {
    pub fn new(username: &str, width: u16, height: u16) -> App {
        App {
            username: username.to_string(),
            width,
            height,
            now: DateTime::<Utc>::UNIX_EPOCH,
            notice: None,
            stale: None,
            no_color: false,
            prefix: crate::tui::prefix::PrefixKey::default(),
            tick: 0,
            screen: Screen::List,
            list: ListScreen::default(),
            detail: DetailScreen::default(),
            env: EnvScreen::default(),
            settings: SettingsScreen::default(),
            agents: AgentsScreen::default(),
            notifications: NotificationsScreen::default(),
            logs: None,
            pane: None,
            overlay: None,
            help: false,
            status: None,
            attach_when_running: None,
            admin: None,
        }
    }

    pub fn set_notice(&mut self, text: &str) {
        self.notice = (!text.is_empty()).then(|| text.to_string());
    }

    pub fn set_prefix(&mut self, prefix: crate::tui::prefix::PrefixKey) {
        self.prefix = prefix;
    }

    pub fn set_no_color(&mut self, on: bool) {
        self.no_color = on;
    }

    pub fn set_now(&mut self, now: DateTime<Utc>) {
        self.now = now;
    }

    /// True while a transitional status is on screen (the spinners move),
    /// or an idle stop's countdown (its banner counts down).
    pub fn animating(&self) -> bool {
        let busy = |v: &ProjectView| {
            v.resources.iter().any(|r| r.status.is_transition()) || intent_status_is_transition(v)
        };
        let counting_down = match self.screen {
            Screen::List => self
                .list
                .visible()
                .into_iter()
                .any(|v| crate::tui::screens::notifications::idle_stop_at(v).is_some()),
            Screen::Detail => self
                .target()
                .is_some_and(|v| crate::tui::screens::notifications::idle_stop_at(v).is_some()),
            _ => false,
        };
        if counting_down {
            return true;
        }
        match self.screen {
            Screen::List => self.list.visible().into_iter().any(busy),
            Screen::Detail | Screen::Env => {
                self.detail.data.as_ref().is_some_and(|d| busy(&d.view))
            }
            Screen::Settings
            | Screen::Logs
            | Screen::Inbox
            | Screen::Admin
            | Screen::Notifications => false,
        }
    }

    pub fn view(&self, frame: &mut ratatui::Frame) {
        draw::draw(self, frame);
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Paste(s) => {
                let lines =
                    matches!(&self.overlay, Some(Overlay::ConfigForm(f)) if f.takes_lines());
                self.type_text(&if lines {
                    text::input_lines(&s)
                } else {
                    text::input(&s)
                });
                vec![]
            }
            Msg::Resize(w, h) => {
                self.width = w;
                self.height = h;
                self.resize_pane()
            }
            Msg::PaneOpened {
                project,
                session,
                name,
                read_only,
            } => self.on_pane_opened(project, session, name, read_only),
            Msg::PaneOutput(bytes) => {
                if let Some(p) = &mut self.pane {
                    p.feed(&bytes);
                }
                vec![]
            }
            Msg::PaneCommand(cmd) => self.on_pane_command(cmd),
            Msg::Log(event) => {
                if let Some(l) = &mut self.logs {
                    l.push(event);
                }
                vec![]
            }
            Msg::LogEnded(why) => {
                if let Some(l) = &mut self.logs {
                    if let Some(why) = why {
                        l.push(crate::driver::LogEvent::Notice(why));
                    }
                    l.end();
                }
                vec![]
            }
            Msg::PaneClosed(reason) => {
                self.pane = None;
                self.info(&reason);
                let mut fx = self.on_poll_sessions();
                fx.extend(self.git_refresh());
                fx
            }
            Msg::PaneNotice(line) => {
                match line {
                    Ok(line) => self.info(line),
                    Err(line) => self.refuse(line),
                }
                vec![]
            }
            Msg::Projects(list) => self.on_projects(list),
            Msg::ProjectsStale(why) => {
                self.stale = Some(why);
                vec![]
            }
            Msg::Detail(d) => {
                self.on_detail(*d);
                self.git_after_detail()
            }
            Msg::Done(tag, result) => self.on_done(tag, result),
            Msg::Tick => {
                self.tick = self.tick.wrapping_add(1);
                vec![]
            }
            Msg::Settings(data) => {
                self.settings.set_data(*data);
                vec![]
            }
            Msg::PollSessions => {
                let mut fx = self.on_poll_sessions();
                fx.extend(self.on_poll_git());
                fx
            }
            Msg::Git { project, state } => {
                self.on_git(&project, state);
                vec![]
            }
            Msg::Templates(list) => {
                if let Some(Overlay::Create(f)) = &mut self.overlay {
                    f.templates = list;
                    f.template = f.template.min(f.templates.len());
                }
                vec![]
            }
            Msg::Sessions { project, sessions } => {
                self.detail.set_sessions(&project, sessions);
                vec![]
            }
            Msg::Admin(data) => {
                self.on_admin(*data);
                vec![]
            }
            Msg::Teams(teams) => {
                if let Some(Overlay::Create(f)) = &mut self.overlay {
                    f.owner.set_teams(teams);
                }
                vec![]
            }
            Msg::Agents(rows) => {
                if self.agents.set_rows(rows) {
                    vec![Effect::Bell]
                } else {
                    vec![]
                }
            }
            Msg::Unread(n) => self.on_unread(n),
            Msg::Notifications(rows) => {
                self.notifications.set_rows(rows);
                vec![]
            }
        }
    }

    /// The project an action applies to: the open one on detail/env, else the selection.
    pub(crate) fn target(&self) -> Option<&ProjectView> {
        match self.screen {
            Screen::List => self.list.selected_project(),
            Screen::Detail | Screen::Env | Screen::Logs => {
                let name = self.detail.open.as_deref()?;
                self.list
                    .find(name)
                    .or_else(|| self.detail.data.as_ref().map(|d| &d.view))
            }
            Screen::Settings | Screen::Inbox | Screen::Admin | Screen::Notifications => None,
        }
    }

    pub(crate) fn context(&self) -> Context {
        if self.help {
            Context::Help
        } else {
            self.context_under_help()
        }
    }

    /// Where the keyboard would go without the help overlay.
    fn context_under_help(&self) -> Context {
        match &self.overlay {
            Some(Overlay::ConfirmDelete { .. }) => return Context::ConfirmDelete,
            Some(Overlay::Create(_)) => return Context::Create,
            Some(Overlay::EnvForm(_)) => return Context::EnvForm,
            Some(Overlay::ConfirmUnset { .. }) => return Context::ConfirmUnset,
            Some(Overlay::KeyForm(_)) => return Context::KeyForm,
            Some(Overlay::PasswordForm(_)) => return Context::PasswordForm,
            Some(Overlay::ConfigForm(_)) => return Context::ConfigForm,
            Some(Overlay::ConfirmRemoveKey { .. }) => return Context::ConfirmRemoveKey,
            Some(Overlay::ConfirmUnsetConfig { .. }) => return Context::ConfirmUnsetConfig,
            Some(Overlay::ConfirmRestart { .. }) => return Context::ConfirmRestart,
            Some(Overlay::ConfirmStartAttach { .. }) => return Context::ConfirmStartAttach,
            None => {}
        }
        match self.screen {
            Screen::List if self.list.filtering => Context::Filter,
            Screen::List => Context::List,
            Screen::Detail => Context::Detail,
            Screen::Env => Context::Env,
            Screen::Settings => Context::Settings,
            Screen::Logs => Context::Logs,
            Screen::Inbox => Context::Inbox,
            Screen::Admin => Context::Admin,
            Screen::Notifications => Context::Notifications,
        }
    }

    /// The bindings of the current context (what the footer shows).
    pub fn bindings(&self) -> Vec<Binding> {
        bindings::for_context(self, self.context())
    }

    /// The bindings the help overlay lists: those of what is under it.
    pub(crate) fn help_bindings(&self) -> Vec<Binding> {
        bindings::for_context(self, self.context_under_help())
    }

    pub(super) fn info(&mut self, text: impl Into<String>) {
        self.status = Some(StatusLine {
            text: text.into(),
            error: false,
        });
    }

    pub(super) fn refuse(&mut self, text: impl Into<String>) {
        self.status = Some(StatusLine {
            text: text.into(),
            error: true,
        });
    }
}
