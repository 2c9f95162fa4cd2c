//! The env editor: the open project's variables (the project itself is the
//! detail screen's) and the cursor on them.

use super::detail::DetailScreen;
use crate::store::env::EnvVar;
use crate::tui::keys::Action;

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
}
