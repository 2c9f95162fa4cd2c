//! Data arriving from the session: project refreshes, details and the
//! outcomes of changes (matched by their tag).

use super::{App, Effect, ProjectDetail, Reply, Screen};
use crate::store::projects::ProjectView;
use crate::tui::text;

impl App {
    pub(super) fn on_projects(&mut self, list: Vec<ProjectView>) -> Vec<Effect> {
        self.stale = None;
        self.list.set_projects(list);
        let mut effects = self.attach_if_started();
        if self.screen == Screen::Admin {
            effects.push(Effect::LoadAdmin);
            return effects;
        }
        if self.screen == Screen::Settings {
            // A change notification may be a key or setting changed elsewhere.
            effects.push(Effect::LoadSettings);
            return effects;
        }
        let Some(open) = self.detail.open.clone() else {
            return effects;
        };
        let exists = self.list.find(&open).is_some();
        if !exists {
            // Deleted (by us or elsewhere): nothing left to show.
            self.screen = Screen::List;
            self.overlay = None;
            self.detail.open = None;
            self.detail.data = None;
            self.info(format!("{} is gone", text::clean(&open)));
            return effects;
        }
        // A change notification may be about the open project: refresh it too.
        effects.push(Effect::LoadDetail { project: open });
        effects
    }

    pub(super) fn on_detail(&mut self, d: ProjectDetail) {
        self.detail.set_data(d, &mut self.env.selected);
    }

    pub(super) fn on_done(&mut self, tag: Reply, result: Result<String, String>) -> Vec<Effect> {
        match result {
            Ok(line) => {
                if tag == Reply::Env {
                    self.detail.env_changed_at = Some(self.now);
                }
                self.info(line);
            }
            Err(line) => self.refuse(line),
        }
        match tag {
            // Refresh after failures too: the store may know better than the screen.
            Reply::Settings => vec![Effect::LoadSettings],
            Reply::Change | Reply::Env => match &self.detail.open {
                Some(project) => vec![Effect::LoadDetail {
                    project: project.clone(),
                }],
                None => vec![],
            },
            Reply::Admin => vec![Effect::LoadAdmin],
            Reply::Pane | Reply::Load | Reply::Unsolicited => vec![],
        }
    }

    /// The attach offer's second half: once the started project's sandbox
    /// runs, open the pane; if it failed instead, say so and give up.
    fn attach_if_started(&mut self) -> Vec<Effect> {
        let Some((project, read_only)) = self.attach_when_running.clone() else {
            return vec![];
        };
        let Some(v) = self.list.find(&project) else {
            self.attach_when_running = None;
            return vec![];
        };
        if super::attach_allowed(Some(v)).is_ok() {
            self.attach_when_running = None;
            if self.pane.is_some() {
                return vec![];
            }
            return vec![Effect::Attach {
                project,
                session: None,
                read_only,
            }];
        }
        if v.project.status == crate::model::ProjectStatus::Error {
            self.attach_when_running = None;
            self.refuse(format!(
                "{} did not start (ERROR); open it for the reason",
                text::clean(&project)
            ));
        }
        vec![]
    }
}
