//! Data arriving from the session: project refreshes, details and the
//! outcomes of changes, and what the screen can truthfully say about env sync.

use super::{App, Effect, ProjectDetail, Reply, Screen};
use crate::store::projects::ProjectView;
use crate::tui::text;

impl App {
    pub(super) fn on_projects(&mut self, list: Vec<ProjectView>) -> Vec<Effect> {
        let keep = self.selected_project().map(|v| v.project.id);
        self.projects = Some(list);
        let mut effects = self.attach_if_started();
        let visible = self.visible();
        self.selected = keep
            .and_then(|id| visible.iter().position(|v| v.project.id == id))
            .unwrap_or(self.selected)
            .min(visible.len().saturating_sub(1));
        if self.screen == Screen::Settings {
            // A change notification may be a key or setting changed elsewhere.
            effects.push(Effect::LoadSettings);
            return effects;
        }
        let Some(open) = self.open.clone() else {
            return effects;
        };
        let exists = self
            .projects
            .iter()
            .flatten()
            .any(|v| v.project.name == open);
        if !exists {
            // Deleted (by us or elsewhere): nothing left to show.
            self.screen = Screen::List;
            self.overlay = None;
            self.open = None;
            self.detail = None;
            self.info(format!("{} is gone", text::clean(&open)));
            return effects;
        }
        // A change notification may be about the open project: refresh it too.
        effects.push(Effect::LoadDetail { project: open });
        effects
    }

    pub(super) fn on_detail(&mut self, d: ProjectDetail) {
        if self.open.as_deref() != Some(d.view.project.name.as_str()) {
            return; // a late answer for a project no longer open
        }
        self.env_selected = self.env_selected.min(d.env.len().saturating_sub(1));
        self.event_scroll = self.event_scroll.min(d.events.len().saturating_sub(1));
        let keep = self.selected_session().map(|s| s.name.clone());
        self.detail = Some(d);
        self.keep_session_selection(keep);
    }

    pub(super) fn on_done(&mut self, tag: Reply, result: Result<String, String>) -> Vec<Effect> {
        match result {
            Ok(line) => {
                if tag == Reply::Env {
                    self.env_changed_at = Some(self.now);
                }
                self.info(line);
            }
            Err(line) => self.refuse(line),
        }
        match tag {
            // Refresh after failures too: the store may know better than the screen.
            Reply::Settings => vec![Effect::LoadSettings],
            Reply::Change | Reply::Env => match &self.open {
                Some(project) => vec![Effect::LoadDetail {
                    project: project.clone(),
                }],
                None => vec![],
            },
            Reply::Pane | Reply::Load | Reply::Unsolicited => vec![],
        }
    }

    /// Where the open project's env stands, as far as the screen can know.
    pub(crate) fn env_state(&self) -> Option<String> {
        let d = self.detail.as_ref()?;
        let version = d.view.project.env_version;
        let sandbox = d
            .view
            .resources
            .iter()
            .find(|r| r.kind == crate::store::resources::ResourceKind::Sandbox)?;
        use crate::model::ResourceStatus as R;
        let applied = sandbox.applied_env_version;
        let state = match (sandbox.status, self.env_changed_at) {
            (R::Running, _) if applied.is_some_and(|a| a < version) => {
                return Some(format!(
                    "env v{version}: pending (the sandbox has v{}, catching up)",
                    applied.unwrap_or_default()
                ));
            }
            // The change is saved but this detail predates it: a reload is on its way.
            (R::Running, Some(at)) if sandbox.updated_at <= at => "pending (sandbox catching up)",
            (R::Running, Some(_)) => "applied",
            (R::Running, None) => "in use by the running sandbox",
            (R::Error, _) => "not applied: the sandbox is in ERROR",
            (s, _) if s.is_transition() => "applies once the sandbox settles",
            _ => "applies when the sandbox next starts",
        };
        Some(format!("env v{version}: {state}"))
    }

    /// The attach offer's second half: once the started project's sandbox
    /// runs, open the pane; if it failed instead, say so and give up.
    fn attach_if_started(&mut self) -> Vec<Effect> {
        let Some((project, read_only)) = self.attach_when_running.clone() else {
            return vec![];
        };
        let Some(v) = self
            .projects
            .iter()
            .flatten()
            .find(|v| v.project.name == project)
        else {
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
