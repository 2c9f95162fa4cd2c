//! The admin screen's part of `update`: opening it (admins only), its
//! keys, and its data arriving. The console decides again on every load
//! and intent; this only keeps a non-admin's dashboard from offering it.

use super::{App, Effect, Screen};
use crate::console::AdminOverview;
use crate::model::intent::Intent;
use crate::tui::keys::{Action, Binding, Key};
use crate::tui::screens::admin::AdminScreen;
use crate::tui::text;

impl App {
    /// Marks the signed-in user as an admin: the list offers the admin screen.
    pub fn set_admin(&mut self, admin: bool) {
        self.admin = admin.then(AdminScreen::default);
    }

    /// The list's key to the admin screen, for admins alone.
    pub(super) fn admin_binding(&self) -> Option<Binding> {
        self.admin
            .as_ref()
            .map(|_| Binding::new(Key::Char('A'), "admin", Action::Admin))
    }

    /// Whether the admin screen is on show: other tenants' changes reach
    /// no feed of this user's, so it reloads on the session poll's timer.
    pub fn polls_admin(&self) -> bool {
        self.screen == Screen::Admin && self.admin.is_some() && self.pane.is_none()
    }

    pub(super) fn perform_admin(&mut self, action: Action) -> Vec<Effect> {
        let Some(admin) = &mut self.admin else {
            return vec![];
        };
        match action {
            Action::Admin => {
                self.screen = Screen::Admin;
                vec![Effect::LoadAdmin]
            }
            Action::AdminReload => vec![Effect::LoadAdmin],
            Action::NextSection => {
                admin.next_section();
                vec![]
            }
            Action::Intent(intent @ (Intent::Stop | Intent::Retry)) => {
                let Some(project) = admin.selected_ref() else {
                    return vec![];
                };
                self.info(format!("{intent} requested for {}…", text::clean(&project)));
                vec![Effect::AdminIntent { project, intent }]
            }
            _ => vec![],
        }
    }

    pub(super) fn on_admin(&mut self, data: AdminOverview) {
        if let Some(admin) = &mut self.admin {
            admin.set_data(data);
        }
    }
}
