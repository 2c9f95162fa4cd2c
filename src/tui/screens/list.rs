//! The projects list (home screen): the user's projects, the selection and
//! the name filter.

use crate::store::projects::ProjectView;
use crate::tui::keys::Action;

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
}
