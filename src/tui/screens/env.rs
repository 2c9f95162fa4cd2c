//! The env editor: the open project's variables (the project itself is the
//! detail screen's) and the cursor on them.

use super::bindings::movement;
use super::detail::DetailScreen;
use crate::store::env::EnvVar;
use crate::tui::keys::{Action, Binding, Key};

#[derive(Debug, Default)]
pub struct EnvScreen {
    pub selected: usize,
}

impl EnvScreen {
    pub fn selected_var<'a>(&self, project: &'a DetailScreen) -> Option<&'a EnvVar> {
        project.data.as_ref()?.env.get(self.selected)
    }

    pub fn move_cursor(&mut self, action: Action, page: usize, project: &DetailScreen) {
        let n = project.data.as_ref().map_or(0, |d| d.env.len());
        self.selected = super::step(action, self.selected, n, page);
    }

    /// The env editor's keys, for the open `project`.
    pub fn bindings(&self, project: &DetailScreen) -> Vec<Binding> {
        let has_var = match self.selected_var(project) {
            Some(_) => Ok(()),
            None => Err("no variable selected; press a to add one".to_string()),
        };
        let loaded = match project.data {
            Some(_) => Ok(()),
            None => Err("still loading the variables".to_string()),
        };
        let mut v = vec![
            Binding::new(Key::Esc, "back", Action::Back),
            Binding::new(Key::Char('a'), "add", Action::EnvAdd).when(loaded),
            Binding::new(Key::Enter, "edit", Action::EnvEdit).when(has_var.clone()),
            Binding::new(Key::Char('d'), "delete", Action::EnvDelete).when(has_var),
        ];
        v.extend(movement("list"));
        v.push(Binding::new(Key::Char('?'), "help", Action::Help));
        v.push(Binding::new(Key::Char('q'), "back", Action::Back).help_only());
        v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
        v
    }
}
