//! The notifications screen's part of `update`: opening it (which loads,
//! and so reads, the notifications), Enter on one (its project's detail
//! screen), the unread count, and postponing an idle stop.

use super::{App, Effect, Screen};
use crate::tui::text;

impl App {
    pub(super) fn open_notifications(&mut self) -> Vec<Effect> {
        self.screen = Screen::Notifications;
        self.notifications.selected = 0;
        vec![Effect::LoadNotifications]
    }

    /// Enter on a notification: its project's detail screen.
    pub(super) fn open_notified_project(&mut self) -> Vec<Effect> {
        let Some(name) = self
            .notifications
            .selected_entry()
            .and_then(|n| n.project.clone())
        else {
            return vec![];
        };
        if self.list.find(&name).is_none() {
            self.refuse(format!("{} is gone", text::clean(&name)));
            return vec![];
        }
        if self.detail.open.as_deref() != Some(&name) {
            self.env = crate::tui::screens::env::EnvScreen::default();
        }
        self.detail.open(name.clone());
        self.screen = Screen::Detail;
        vec![Effect::LoadDetail { project: name }]
    }

    pub(super) fn on_unread(&mut self, unread: i64) -> Vec<Effect> {
        let more = unread > self.notifications.unread;
        self.notifications.unread = unread;
        // New ones arrive while the screen is open: show them (and so read them).
        if more && self.screen == Screen::Notifications && self.overlay.is_none() {
            return vec![Effect::LoadNotifications];
        }
        vec![]
    }

    pub(super) fn extend_idle(&mut self) -> Vec<Effect> {
        let Some(v) = self.target() else {
            return vec![];
        };
        let project = v.project.name.clone();
        self.info(format!(
            "postponing the idle stop of {}…",
            text::clean(&project)
        ));
        vec![Effect::ExtendIdle { project }]
    }
}
