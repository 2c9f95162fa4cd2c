//! Which bindings are live: the help overlay's, else the dialog's, else the
//! screen's. Each screen declares its own (`tui::screens`).

use super::App;
use crate::tui::keys::{Binding, Context};
use crate::tui::logview::LogView;
use crate::tui::screens::bindings;
use crate::tui::screens::list::ListScreen;

pub(super) fn for_context(app: &App, context: Context) -> Vec<Binding> {
    match context {
        Context::Help => bindings::help(),
        Context::List => {
            let mut v = app.list.bindings();
            if let Some(b) = app.admin_binding() {
                // Early, after `n new`, so it makes the footer at 80 columns.
                let at = v
                    .iter()
                    .position(|b| b.action == crate::tui::keys::Action::New)
                    .map_or(v.len(), |i| i + 1);
                v.insert(at, b);
            }
            v
        }
        Context::Admin => app.admin.as_ref().map_or_else(Vec::new, |a| a.bindings()),
        Context::Filter => ListScreen::filter_bindings(),
        Context::Detail => app.detail.bindings(app.target()),
        Context::Env => app.env.bindings(&app.detail),
        Context::Settings => app.settings.bindings(),
        Context::Logs => LogView::bindings(),
        Context::Inbox => app.agents.bindings(),
        Context::Notifications => app.notifications.bindings(),
        Context::Create
        | Context::EnvForm
        | Context::KeyForm
        | Context::PasswordForm
        | Context::ConfigForm
        | Context::ConfirmDelete
        | Context::ConfirmUnset
        | Context::ConfirmRemoveKey
        | Context::ConfirmUnsetConfig
        | Context::ConfirmStartAttach
        | Context::ConfirmRestart => app
            .overlay
            .as_ref()
            .map_or_else(Vec::new, |o| o.bindings(app.settings.data.as_ref())),
    }
}
