//! The dialogs over a screen: forms and confirmations. One at a time; it
//! takes the keyboard until closed.

use super::bindings::{FormKind, confirm, form};
use super::forms::{ConfigForm, CreateForm, EnvField, EnvForm, KeyForm, PasswordForm};
use super::settings::SettingsData;
use crate::tui::keys::{Action, Binding, Key};

/// A modal on top of the screen; it takes the keyboard until closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    ConfirmDelete {
        project: String,
    },
    Create(CreateForm),
    EnvForm(EnvForm),
    ConfirmUnset {
        key: String,
    },
    KeyForm(KeyForm),
    PasswordForm(PasswordForm),
    ConfigForm(ConfigForm),
    ConfirmRemoveKey {
        fingerprint: String,
    },
    ConfirmUnsetConfig {
        key: String,
    },
    /// Attaching to a project whose sandbox is not running: start it, and
    /// attach once it runs?
    ConfirmStartAttach {
        project: String,
        status: crate::model::ProjectStatus,
        read_only: bool,
    },
    /// Attaching to an exited session: restart it first?
    ConfirmRestart {
        project: String,
        session: Option<String>,
        state: crate::driver::SessionState,
        read_only: bool,
    },
}

impl Overlay {
    /// The dialog's keys; `settings` is the settings screen's data (a key
    /// already registered is refused in the key form).
    pub fn bindings(&self, settings: Option<&SettingsData>) -> Vec<Binding> {
        match self {
            Overlay::Create(f) => {
                let mut keys = form("create", f.valid(), FormKind::MultiField);
                if f.focus == super::forms::CreateField::Owner {
                    keys.insert(
                        1,
                        Binding::new(Key::Right, "next owner", Action::ChoiceNext),
                    );
                    keys.insert(
                        2,
                        Binding::new(Key::Left, "previous owner", Action::ChoicePrev),
                    );
                }
                if f.focus == super::forms::CreateField::Template {
                    keys.insert(1, Binding::new(Key::Down, "next template", Action::Down));
                    keys.insert(
                        2,
                        Binding::new(Key::Up, "previous template", Action::Up).help_only(),
                    );
                }
                keys
            }
            Overlay::EnvForm(f) => form(
                "save",
                f.valid(),
                FormKind::WithSecret(f.focus == EnvField::Secret),
            ),
            Overlay::KeyForm(f) => {
                let known = settings.map_or(&[][..], |d| &d.keys[..]);
                form("add key", f.check(known).map(|_| ()), FormKind::SingleField)
            }
            Overlay::PasswordForm(f) => form("save password", f.valid(), FormKind::MultiField),
            Overlay::ConfigForm(f) => form(
                "save",
                f.valid(),
                FormKind::WithSecret(f.focus == EnvField::Secret),
            ),
            Overlay::ConfirmDelete { .. } | Overlay::ConfirmUnset { .. } => confirm("yes, delete"),
            Overlay::ConfirmRemoveKey { .. } | Overlay::ConfirmUnsetConfig { .. } => {
                confirm("yes, remove")
            }
            Overlay::ConfirmStartAttach { read_only, .. } => confirm(if *read_only {
                "start and view"
            } else {
                "start and attach"
            }),
            Overlay::ConfirmRestart { read_only, .. } => confirm(if *read_only {
                "restart and view"
            } else {
                "restart and attach"
            }),
        }
    }
}
