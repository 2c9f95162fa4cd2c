//! The admin screen (admins only): every user, every project of every
//! user and team, the replicas and the queue. Tab moves between the three
//! sections; on a project, x stops it and r retries it as the admin.

use super::bindings::movement;
use crate::console::AdminOverview;
use crate::model::intent::Intent;
use crate::store::admin::ProjectOverview;
use crate::tui::keys::{Action, Binding, Key};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminSection {
    #[default]
    Projects,
    Users,
    Replicas,
}

impl AdminSection {
    pub fn next(self) -> AdminSection {
        match self {
            AdminSection::Projects => AdminSection::Users,
            AdminSection::Users => AdminSection::Replicas,
            AdminSection::Replicas => AdminSection::Projects,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            AdminSection::Projects => "projects",
            AdminSection::Users => "users",
            AdminSection::Replicas => "replicas",
        }
    }
}

#[derive(Debug, Default)]
pub struct AdminScreen {
    /// `None` until loaded.
    pub data: Option<AdminOverview>,
    pub section: AdminSection,
    /// The cursor in the current section.
    pub selected: usize,
}

impl AdminScreen {
    pub fn set_data(&mut self, data: AdminOverview) {
        self.data = Some(data);
        self.selected = self.selected.min(self.rows().saturating_sub(1));
    }

    /// Rows in the current section.
    pub fn rows(&self) -> usize {
        let Some(d) = &self.data else { return 0 };
        match self.section {
            AdminSection::Projects => d.projects.len(),
            AdminSection::Users => d.users.len(),
            AdminSection::Replicas => d.replicas.lease_holders.len(),
        }
    }

    pub fn next_section(&mut self) {
        self.section = self.section.next();
        self.selected = 0;
    }

    pub fn move_cursor(&mut self, action: Action, page: usize) {
        self.selected = super::step(action, self.selected, self.rows(), page);
    }

    /// The project under the cursor, on the projects section.
    pub fn selected_project(&self) -> Option<&ProjectOverview> {
        match (&self.data, self.section) {
            (Some(d), AdminSection::Projects) => d.projects.get(self.selected),
            _ => None,
        }
    }

    /// How the admin names the selected project: `OWNER/NAME`.
    pub fn selected_ref(&self) -> Option<String> {
        self.selected_project()
            .map(|p| crate::model::team::qualified(&p.owner, &p.name))
    }

    /// Whether `intent` may be asked of the selected project now, and if
    /// not why: the intents table only (an admin acts whatever the roles).
    pub fn intent_check(&self, intent: Intent) -> Result<(), String> {
        let p = self.selected_project().ok_or_else(|| match self.section {
            AdminSection::Projects => "no project selected".to_string(),
            s => format!(
                "select a project (Tab to projects) to {intent} it; this is {}",
                s.title()
            ),
        })?;
        crate::model::intent::check(intent, p.status).map_err(|e| e.to_string())
    }

    pub fn bindings(&self) -> Vec<Binding> {
        let mut v = vec![
            Binding::new(Key::Esc, "back", Action::Back),
            Binding::new(Key::Tab, "next section", Action::NextSection),
            Binding::new(Key::Char('x'), "stop", Action::Intent(Intent::Stop))
                .when(self.intent_check(Intent::Stop)),
            Binding::new(Key::Char('r'), "retry", Action::Intent(Intent::Retry))
                .when(self.intent_check(Intent::Retry)),
            Binding::new(Key::Char('g'), "reload", Action::AdminReload),
        ];
        v.extend(movement("list"));
        v.push(Binding::new(Key::Char('?'), "help", Action::Help));
        v.push(Binding::new(Key::Char('q'), "back", Action::Back).help_only());
        v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
        v
    }
}
