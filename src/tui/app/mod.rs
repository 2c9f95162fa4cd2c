//! The dashboard's state and its `update`: Elm style. `update` is pure — it
//! never performs I/O or reads the clock; it returns `Effect`s for the SSH
//! session to perform, and the session answers with `Msg`s.

mod bindings;
mod data;
mod draw;
mod msg;
mod pane;
mod sessions;
mod settings;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

use crate::model::intent::{self, Intent};
use crate::store::env::EnvVar;
use crate::store::projects::ProjectView;

use crate::tui::keys::{self as keymap, Action, Binding, Context};
pub use crate::tui::screens::StatusLine;
use crate::tui::screens::detail::DetailScreen;
pub use crate::tui::screens::detail::ProjectDetail;
pub use crate::tui::screens::dialogs::Overlay;
use crate::tui::screens::env::EnvScreen;
use crate::tui::screens::forms::{CreateForm, EnvField, EnvForm};
use crate::tui::screens::list::ListScreen;
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
    pub(crate) no_color: bool,
    /// The pane's prefix key as shown on screen.
    pub(crate) prefix: crate::tui::prefix::PrefixKey,
    pub(crate) tick: usize,
    pub(crate) screen: Screen,
    pub(crate) list: ListScreen,
    pub(crate) detail: DetailScreen,
    pub(crate) env: EnvScreen,
    pub(crate) settings: SettingsScreen,
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
}

impl App {
    pub fn new(username: &str, width: u16, height: u16) -> App {
        App {
            username: username.to_string(),
            width,
            height,
            now: DateTime::<Utc>::UNIX_EPOCH,
            notice: None,
            no_color: false,
            prefix: crate::tui::prefix::PrefixKey::default(),
            tick: 0,
            screen: Screen::List,
            list: ListScreen::default(),
            detail: DetailScreen::default(),
            env: EnvScreen::default(),
            settings: SettingsScreen::default(),
            logs: None,
            pane: None,
            overlay: None,
            help: false,
            status: None,
            attach_when_running: None,
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

    /// True while a transitional status is on screen (the spinners move).
    pub fn animating(&self) -> bool {
        let busy = |v: &ProjectView| {
            v.resources.iter().any(|r| r.status.is_transition()) || intent_status_is_transition(v)
        };
        match self.screen {
            Screen::List => self.list.visible().into_iter().any(busy),
            Screen::Detail | Screen::Env => {
                self.detail.data.as_ref().is_some_and(|d| busy(&d.view))
            }
            Screen::Settings | Screen::Logs => false,
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
                self.on_poll_sessions()
            }
            Msg::PaneNotice(line) => {
                match line {
                    Ok(line) => self.info(line),
                    Err(line) => self.refuse(line),
                }
                vec![]
            }
            Msg::Projects(list) => self.on_projects(list),
            Msg::Detail(d) => {
                self.on_detail(*d);
                vec![]
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
            Msg::PollSessions => self.on_poll_sessions(),
            Msg::Sessions { project, sessions } => {
                self.detail.set_sessions(&project, sessions);
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
            Screen::Settings => None,
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

    fn on_key(&mut self, key: Key) -> Vec<Effect> {
        let context = self.context();
        let list = bindings::for_context(self, context);
        match keymap::find(&list, key) {
            Some(Binding {
                enabled: Err(why), ..
            }) => {
                let why = why.clone();
                self.refuse(why);
                vec![]
            }
            Some(b) => {
                let action = b.action;
                self.perform(action)
            }
            None => match key {
                Key::Char(c) if context.takes_text() => {
                    self.type_text(&text::input(&c.to_string()));
                    vec![]
                }
                _ => {
                    // Never silently ignored: say what the key is not, and where help is.
                    self.refuse(format!(
                        "{} does nothing here; press ? for the keys",
                        key.label()
                    ));
                    vec![]
                }
            },
        }
    }

    fn type_text(&mut self, s: &str) {
        match (&mut self.overlay, self.screen) {
            (Some(Overlay::Create(f)), _) => f.field_mut().push_str(s),
            (Some(Overlay::EnvForm(f)), _) => {
                let fixed_key = f.editing && f.focus == EnvField::Key;
                match f.field_mut() {
                    Some(field) => field.push_str(s),
                    None if fixed_key => self.refuse(
                        "the name of an existing variable cannot change; add a new one instead",
                    ),
                    None => self.refuse("space toggles the checkbox; Tab moves to a text field"),
                }
            }
            (Some(Overlay::KeyForm(f)), _) => f.line.push_str(s),
            (Some(Overlay::PasswordForm(f)), _) => f.field_mut().push_str(s),
            (Some(Overlay::ConfigForm(f)), _) => {
                if let Err(why) = f.type_text(s) {
                    self.refuse(why);
                }
            }
            (None, Screen::List) if self.list.filtering => self.list.type_text(s),
            _ => {}
        }
    }

    fn perform(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Quit => return vec![Effect::Quit],
            Action::Help => self.help = true,
            Action::CloseHelp => self.help = false,
            Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom => self.move_cursor(action),
            Action::FilterStart => {
                self.list.update(action);
                self.info("type to filter by name; Enter keeps it, Esc clears it");
            }
            Action::FilterKeep | Action::FilterClear => self.list.update(action),
            Action::Open => return self.open_project(Screen::Detail),
            Action::Env => return self.open_project(Screen::Env),
            Action::Attach | Action::AttachReadOnly
                if attach_allowed(self.target()).is_err()
                    && intent_allowed(self.target(), Intent::Start).is_ok() =>
            {
                if let Some(v) = self.target() {
                    self.overlay = Some(Overlay::ConfirmStartAttach {
                        project: v.project.name.clone(),
                        status: v.project.status,
                        read_only: action == Action::AttachReadOnly,
                    });
                }
            }
            Action::Attach | Action::AttachReadOnly if self.screen == Screen::Detail => {
                return self.perform_session(action);
            }
            Action::Attach | Action::AttachReadOnly => {
                if let Some(v) = self.target() {
                    return vec![Effect::Attach {
                        project: v.project.name.clone(),
                        session: None,
                        read_only: action == Action::AttachReadOnly,
                    }];
                }
            }
            Action::NextSession | Action::PrevSession | Action::RestartSession => {
                return self.perform_session(action);
            }
            Action::New => self.overlay = Some(Overlay::Create(CreateForm::new())),
            Action::Intent(Intent::Delete) => {
                if let Some(v) = self.target() {
                    let project = v.project.name.clone();
                    self.overlay = Some(Overlay::ConfirmDelete { project });
                }
            }
            Action::Intent(intent) => {
                if let Some(v) = self.target() {
                    let project = v.project.name.clone();
                    // Stopping (or anything but a start) withdraws a pending attach.
                    if intent != Intent::Start
                        && self
                            .attach_when_running
                            .as_ref()
                            .is_some_and(|(p, _)| *p == project)
                    {
                        self.attach_when_running = None;
                    }
                    self.info(format!("{intent} requested for {}…", text::clean(&project)));
                    return vec![Effect::Intent { project, intent }];
                }
            }
            Action::Logs => {
                if let Some(v) = self.target() {
                    let project = v.project.name.clone();
                    self.logs = Some(crate::tui::logview::LogView::new(&project));
                    self.screen = Screen::Logs;
                    return vec![Effect::FollowLogs { project }];
                }
            }
            Action::Back if self.screen == Screen::Logs => {
                self.screen = Screen::Detail;
                self.logs = None;
                return vec![Effect::StopLogs];
            }
            Action::Back => {
                self.screen = match self.screen {
                    Screen::Env => Screen::Detail,
                    _ => Screen::List,
                };
                if self.screen == Screen::List {
                    self.detail.close();
                }
            }
            Action::TogglePassword => self.detail.show_password = !self.detail.show_password,
            Action::Erase => self.erase(),
            Action::NextField | Action::PrevField => match &mut self.overlay {
                Some(Overlay::Create(f)) => f.switch(),
                Some(Overlay::EnvForm(f)) if action == Action::NextField => f.next(),
                Some(Overlay::EnvForm(f)) => f.prev(),
                Some(Overlay::PasswordForm(f)) => f.switch(),
                Some(Overlay::ConfigForm(f)) if action == Action::NextField => f.next(),
                Some(Overlay::ConfigForm(f)) => f.prev(),
                _ => {}
            },
            Action::ToggleSecret => match &mut self.overlay {
                Some(Overlay::EnvForm(f)) => f.secret = !f.secret,
                Some(Overlay::ConfigForm(f)) => f.toggle_secret(),
                _ => {}
            },
            Action::Submit => return self.submit(),
            Action::Cancel => self.overlay = None,
            Action::Confirm => return self.confirm(),
            Action::EnvAdd => self.overlay = Some(Overlay::EnvForm(EnvForm::add())),
            Action::EnvEdit => {
                if let Some(var) = self.selected_var() {
                    let form = EnvForm::edit(&var.key, &var.value, var.is_secret);
                    self.overlay = Some(Overlay::EnvForm(form));
                }
            }
            Action::EnvDelete => {
                if let Some(var) = self.selected_var() {
                    let key = var.key.clone();
                    self.overlay = Some(Overlay::ConfirmUnset { key });
                }
            }
            Action::Settings
            | Action::NextSection
            | Action::KeyAdd
            | Action::KeyRemove
            | Action::PasswordSet
            | Action::ConfigAdd
            | Action::ConfigEdit
            | Action::ConfigUnset => return self.perform_settings(action),
        }
        vec![]
    }

    pub(crate) fn selected_var(&self) -> Option<&EnvVar> {
        self.env.selected_var(&self.detail)
    }

    fn move_cursor(&mut self, action: Action) {
        let page = usize::from(self.height.saturating_sub(8)).max(1);
        match self.screen {
            Screen::List => self.list.move_cursor(action, page),
            Screen::Env => self.env.move_cursor(action, page, &self.detail),
            Screen::Settings => self.settings.move_cursor(action, page),
            Screen::Logs => {
                if let Some(l) = &mut self.logs {
                    match action {
                        Action::Up => l.scroll_up(1),
                        Action::Down => l.scroll_down(1),
                        Action::PageUp => l.scroll_up(page),
                        Action::PageDown => l.scroll_down(page),
                        Action::Top => l.top(),
                        _ => l.follow(),
                    }
                }
            }
            Screen::Detail => self.detail.scroll_events(action, page),
        }
    }

    fn erase(&mut self) {
        match &mut self.overlay {
            Some(Overlay::Create(f)) => {
                f.field_mut().pop();
            }
            Some(Overlay::EnvForm(f)) => {
                if let Some(field) = f.field_mut() {
                    field.pop();
                }
            }
            Some(Overlay::KeyForm(f)) => {
                f.line.pop();
            }
            Some(Overlay::PasswordForm(f)) => {
                f.field_mut().pop();
            }
            Some(Overlay::ConfigForm(f)) => f.erase(),
            _ if self.list.filtering => self.list.erase(),
            _ => {}
        }
    }

    fn open_project(&mut self, screen: Screen) -> Vec<Effect> {
        let Some(name) = self.target().map(|v| v.project.name.clone()) else {
            return vec![];
        };
        if self.detail.open.as_deref() != Some(&name) {
            self.env = EnvScreen::default();
        }
        self.detail.open(name.clone());
        self.screen = screen;
        vec![Effect::LoadDetail { project: name }]
    }

    fn submit(&mut self) -> Vec<Effect> {
        match self.overlay.take() {
            Some(Overlay::Create(f)) => {
                self.info(format!("creating {}…", text::clean(f.name.trim())));
                vec![Effect::Create {
                    name: f.name,
                    description: f.description,
                }]
            }
            Some(Overlay::EnvForm(f)) => {
                let Some(project) = self.detail.open.clone() else {
                    return vec![];
                };
                self.info(format!("setting {}…", text::clean(&f.key)));
                vec![Effect::SetEnv {
                    project,
                    key: f.key,
                    value: f.value.into(),
                    secret: f.secret,
                }]
            }
            Some(
                overlay @ (Overlay::KeyForm(_) | Overlay::PasswordForm(_) | Overlay::ConfigForm(_)),
            ) => self.submit_settings(overlay),
            other => {
                self.overlay = other;
                vec![]
            }
        }
    }

    fn confirm(&mut self) -> Vec<Effect> {
        match self.overlay.take() {
            Some(Overlay::ConfirmDelete { project }) => {
                self.info(format!("delete requested for {}…", text::clean(&project)));
                vec![Effect::Intent {
                    project,
                    intent: Intent::Delete,
                }]
            }
            Some(Overlay::ConfirmUnset { key }) => {
                let Some(project) = self.detail.open.clone() else {
                    return vec![];
                };
                self.info(format!("removing {}…", text::clean(&key)));
                vec![Effect::UnsetEnv { project, key }]
            }
            Some(
                overlay @ (Overlay::ConfirmRemoveKey { .. } | Overlay::ConfirmUnsetConfig { .. }),
            ) => self.submit_settings(overlay),
            Some(Overlay::ConfirmRestart {
                project,
                session,
                read_only,
                ..
            }) => self.confirm_restart(project, session, read_only),
            Some(Overlay::ConfirmStartAttach {
                project, read_only, ..
            }) => {
                self.info(format!(
                    "start requested for {}; the pane opens once its sandbox runs",
                    text::clean(&project)
                ));
                self.attach_when_running = Some((project.clone(), read_only));
                vec![Effect::Intent {
                    project,
                    intent: Intent::Start,
                }]
            }
            other => {
                self.overlay = other;
                vec![]
            }
        }
    }
}

fn intent_status_is_transition(v: &ProjectView) -> bool {
    use crate::model::ProjectStatus as P;
    matches!(
        v.project.status,
        P::Creating | P::Starting | P::Stopping | P::Terminating
    )
}

/// Why an intent is refused on `v` right now (the footer greys it and shows this).
/// Whether `a`/`v` may be pressed: to attach, or to be offered a start.
pub(crate) fn attach_or_start_allowed(v: Option<&ProjectView>) -> Result<(), String> {
    attach_allowed(v).or_else(|why| intent_allowed(v, Intent::Start).map_err(|_| why))
}

/// Attaching needs a running sandbox; otherwise say why and what to do.
pub(crate) fn attach_allowed(v: Option<&ProjectView>) -> Result<(), String> {
    let v = v.ok_or_else(|| "no project selected".to_string())?;
    let sandbox = v
        .resources
        .iter()
        .find(|r| r.kind == crate::store::resources::ResourceKind::Sandbox);
    match sandbox {
        Some(s) if s.status == crate::model::ResourceStatus::Running => Ok(()),
        Some(s) => Err(format!(
            "cannot attach: the sandbox is {}{}",
            s.status,
            if v.project.status == crate::model::ProjectStatus::Stopped {
                " (press s to start it)"
            } else {
                ""
            }
        )),
        None => Err("cannot attach: this project has no sandbox".into()),
    }
}

pub(crate) fn intent_allowed(v: Option<&ProjectView>, intent: Intent) -> Result<(), String> {
    let v = v.ok_or_else(|| "no project selected".to_string())?;
    intent::check(intent, v.project.status).map_err(|e| e.to_string())
}
