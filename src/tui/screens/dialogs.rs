//! The dialogs over a screen: forms and confirmations. One at a time; it
//! takes the keyboard until closed.

use super::forms::{ConfigForm, CreateForm, EnvForm, KeyForm, PasswordForm};

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
