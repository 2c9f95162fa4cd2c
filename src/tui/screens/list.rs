//! The projects list (home screen): the user's projects, the selection and
//! the name filter.

use super::bindings::{attach, intents, movement};
use super::rules::member_allowed;
use crate::store::projects::ProjectView;
use crate::tui::keys::{Action, Binding, Key};

#[derive(Debug, Default)]
pub struct ListScreen {
    /// `None` until the first `Msg::Projects` arrives ("loading…", not "no projects").
    pub projects: Option<Vec<ProjectView>>,
    /// Index into `visible()`.
    pub selected: usize,
    pub filter: String,
    pub filtering: bool,
}

impl ListScreen {
    /// The projects shown: all of them, or those matching the filter.
    pub fn visible(&self) -> Vec<&ProjectView> {
        let needle = self.filter.to_lowercase();
        self.projects
            .iter()
            .flatten()
            .filter(|v| v.project.name.to_lowercase().contains(&needle))
            .collect()
    }

    pub fn selected_project(&self) -> Option<&ProjectView> {
        self.visible().get(self.selected).copied()
    }

    /// The project named `name`, if the list has it.
    pub fn find(&self, name: &str) -> Option<&ProjectView> {
        self.projects
            .iter()
            .flatten()
            .find(|v| v.project.name == name)
    }

    /// A fresh list; the selection stays on the same project.
    pub fn set_projects(&mut self, list: Vec<ProjectView>) {
        let keep = self.selected_project().map(|v| v.project.id);
        self.projects = Some(list);
        let visible = self.visible();
        self.selected = keep
            .and_then(|id| visible.iter().position(|v| v.project.id == id))
            .unwrap_or(self.selected)
            .min(visible.len().saturating_sub(1));
    }

    pub fn move_cursor(&mut self, action: Action, page: usize) {
        self.selected = super::step(action, self.selected, self.visible().len(), page);
    }

    /// The filter's keys: start, keep, clear.
    pub fn update(&mut self, action: Action) {
        match action {
            Action::FilterStart => self.filtering = true,
            Action::FilterKeep => self.filtering = false,
            Action::FilterClear => {
                self.filtering = false;
                self.filter.clear();
                self.selected = 0;
            }
            _ => {}
        }
    }

    pub fn type_text(&mut self, s: &str) {
        self.filter.push_str(s);
        self.selected = 0;
    }

    pub fn erase(&mut self) {
        self.filter.pop();
        self.selected = 0;
    }

    /// The list's keys, each enabled by the selected project's state.
    pub fn bindings(&self) -> Vec<Binding> {
        let target = self.selected_project();
        let need_selection = || match target {
            Some(_) => Ok(()),
            None => Err("no project selected; press n to create one".to_string()),
        };
        let mut v = vec![
            Binding::new(Key::Enter, "open", Action::Open).when(need_selection()),
            Binding::new(Key::Char('n'), "new", Action::New),
        ];
        v.extend(intents(target));
        v.push(
            Binding::new(Key::Char('e'), "env", Action::Env)
                .when(need_selection().and_then(|()| member_allowed(target, "env"))),
        );
        v.extend(attach(target));
        v.push(Binding::new(Key::Char('i'), "inbox", Action::Inbox));
        v.push(
            Binding::new(Key::Char('m'), mute_label(target), Action::ToggleMute)
                .when(need_selection())
                .help_only(),
        );
        v.push(super::notifications::open_binding());
        v.push(super::notifications::extend_binding(target));
        v.push(Binding::new(Key::Char('/'), "filter", Action::FilterStart));
        v.push(Binding::new(Key::Char('S'), "settings", Action::Settings));
        v.push(Binding::new(Key::Char(','), "settings", Action::Settings).help_only());
        v.extend(movement("list"));
        v.push(Binding::new(Key::Char('?'), "help", Action::Help));
        v.push(Binding::new(Key::Char('q'), "quit", Action::Quit));
        v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
        v
    }

    /// While typing a filter.
    pub fn filter_bindings() -> Vec<Binding> {
        vec![
            Binding::new(Key::Enter, "keep filter", Action::FilterKeep),
            Binding::new(Key::Esc, "clear filter", Action::FilterClear),
            Binding::new(Key::Backspace, "erase", Action::Erase),
            Binding::new(Key::Up, "up", Action::Up).help_only(),
            Binding::new(Key::Down, "down", Action::Down).help_only(),
            Binding::new(Key::F(1), "help", Action::Help).help_only(),
            Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only(),
        ]
    }
}

/// The mute key's label: what pressing it does to `target`.
pub fn mute_label(target: Option<&ProjectView>) -> &'static str {
    match target {
        Some(v) if v.project.agent_muted => "unmute agent notifications",
        _ => "mute agent notifications",
    }
}
