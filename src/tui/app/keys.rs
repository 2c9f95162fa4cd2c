//! Keys: each key is looked up in the bindings of what has the keyboard
//! (the dialog, else the screen) and its action applied to that screen's
//! state; an action that reaches beyond one screen (opening a project,
//! going back) is decided here.

use super::{App, Effect, Overlay, Screen, attach_allowed, bindings, intent_allowed};
use crate::model::intent::Intent;
use crate::store::env::EnvVar;
use crate::tui::keys::{self as keymap, Action, Binding, Key};
use crate::tui::screens::env::EnvScreen;
use crate::tui::screens::forms::{CreateField, CreateForm, EnvField, EnvForm};
use crate::tui::text;

impl App {
    pub(super) fn on_key(&mut self, key: Key) -> Vec<Effect> {
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

    pub(super) fn type_text(&mut self, s: &str) {
        match (&mut self.overlay, self.screen) {
            (Some(Overlay::Create(f)), _) => match f.field_mut() {
                Some(field) => field.push_str(s),
                None => self.refuse(
                    "← and → choose the owner, ↑/↓ the template; Tab moves to a text field",
                ),
            },
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
        if self.screen == Screen::Admin
            && matches!(
                action,
                Action::NextSection | Action::Intent(_) | Action::AdminReload
            )
        {
            return self.perform_admin(action);
        }
        match action {
            Action::Admin | Action::AdminReload => return self.perform_admin(action),
            Action::Quit => return vec![Effect::Quit],
            Action::Help => self.help = true,
            Action::CloseHelp => self.help = false,
            Action::Up | Action::Down if matches!(&self.overlay, Some(Overlay::Create(f)) if f.focus == CreateField::Template) => {
                if let Some(Overlay::Create(f)) = &mut self.overlay {
                    f.cycle_template(action == Action::Down);
                }
            }
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
            Action::Open if self.screen == Screen::Notifications => {
                return self.open_notified_project();
            }
            Action::Open => return self.open_project(Screen::Detail),
            Action::Notifications => return self.open_notifications(),
            Action::ExtendIdle => return self.extend_idle(),
            Action::Inbox => {
                self.screen = Screen::Inbox;
                self.agents.selected = 0;
            }
            // Enter in the inbox: straight into that session, in the pane.
            Action::Attach if self.screen == Screen::Inbox => {
                if let Some(r) = self.agents.selected_entry() {
                    // A team's viewer may only watch, as from the list.
                    let viewer = r.team_role == Some(crate::model::team::TeamRole::Viewer);
                    return vec![Effect::Attach {
                        project: r.project.clone(),
                        session: r.session.clone(),
                        read_only: viewer,
                    }];
                }
            }
            Action::Env => return self.open_project(Screen::Env),
            Action::ToggleMute => {
                if let Some(v) = self.target() {
                    return vec![Effect::MuteAgent {
                        project: v.project.name.clone(),
                        muted: !v.project.agent_muted,
                    }];
                }
            }
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
                    // A team's viewer may only watch: their attach is read-only.
                    let viewer = v.team_role == Some(crate::model::team::TeamRole::Viewer);
                    return vec![Effect::Attach {
                        project: v.project.name.clone(),
                        session: None,
                        read_only: action == Action::AttachReadOnly || viewer,
                    }];
                }
            }
            Action::NextSession | Action::PrevSession | Action::RestartSession => {
                return self.perform_session(action);
            }
            Action::New => {
                self.overlay = Some(Overlay::Create(CreateForm::new()));
                // The owner field offers the user's teams, the template field
                // the templates, once they arrive.
                return vec![Effect::LoadTeams, Effect::LoadTemplates];
            }
            Action::ChoicePrev | Action::ChoiceNext => {
                if let Some(Overlay::Create(f)) = &mut self.overlay {
                    if action == Action::ChoiceNext {
                        f.owner.next();
                    } else {
                        f.owner.prev();
                    }
                }
            }
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
                Some(Overlay::Create(f)) if action == Action::NextField => f.switch(),
                Some(Overlay::Create(f)) => f.switch_back(),
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
                    let form = EnvForm::edit(&var.key, var.value.expose(), var.is_secret);
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
            Screen::Inbox => self.agents.move_cursor(action, page),
            Screen::Admin => {
                if let Some(a) = &mut self.admin {
                    a.move_cursor(action, page);
                }
            }
            Screen::Notifications => self.notifications.move_cursor(action, page),
        }
    }

    fn erase(&mut self) {
        match &mut self.overlay {
            Some(Overlay::Create(f)) => {
                if let Some(field) = f.field_mut() {
                    field.pop();
                }
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
                let shown = f.owner.qualified(f.name.trim());
                self.info(format!("creating {}…", text::clean(&shown)));
                let template = f.chosen().map(|t| t.name.clone()).unwrap_or_default();
                vec![Effect::Create {
                    team: f.owner.team().map(str::to_string),
                    name: f.name,
                    description: f.description,
                    repo: f.repo,
                    branch: f.branch,
                    template,
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
                    value: f.value,
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
