//! Key bindings as data (the gitui way): each screen lists its bindings once,
//! and that one list drives input handling, the footer and the help overlay,
//! so a key can never be handled but undocumented, or shown but dead.

use crate::model::intent::Intent;

/// A decoded key press. The session turns raw SSH bytes into these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Alt(char),
    Enter,
    Esc,
    Backspace,
    Delete,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
    F(u8),
}

impl Key {
    /// How the key is written in the footer and the help overlay.
    pub fn label(self) -> String {
        match self {
            Key::Char(' ') => "space".into(),
            Key::Char(c) => c.to_string(),
            Key::Ctrl(c) => format!("^{}", c.to_ascii_uppercase()),
            Key::Alt(c) => format!("M-{c}"),
            Key::Enter => "Enter".into(),
            Key::Esc => "Esc".into(),
            Key::Backspace => "Bksp".into(),
            Key::Delete => "Del".into(),
            Key::Tab => "Tab".into(),
            Key::BackTab => "S-Tab".into(),
            Key::Up => "↑".into(),
            Key::Down => "↓".into(),
            Key::Left => "←".into(),
            Key::Right => "→".into(),
            Key::Home => "Home".into(),
            Key::End => "End".into(),
            Key::PageUp => "PgUp".into(),
            Key::PageDown => "PgDn".into(),
            Key::F(n) => format!("F{n}"),
        }
    }
}

/// What a binding does; `App::update` interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Help,
    CloseHelp,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    FilterStart,
    FilterKeep,
    FilterClear,
    Open,
    New,
    Intent(Intent),
    Env,
    Back,
    TogglePassword,
    Erase,
    NextField,
    PrevField,
    Submit,
    Cancel,
    Confirm,
    ToggleSecret,
    EnvAdd,
    EnvEdit,
    EnvDelete,
    Settings,
    NextSection,
    KeyAdd,
    KeyRemove,
    PasswordSet,
    ConfigAdd,
    ConfigEdit,
    ConfigUnset,
    Attach,
    AttachReadOnly,
    /// Follow the sandbox's log.
    Logs,
    /// Detail screen: select the next / previous terminal session.
    NextSession,
    PrevSession,
    /// Restart the selected session (only an exited one).
    RestartSession,
    /// Open the inbox (sessions that need the user).
    Inbox,
    /// A choice field (the create dialog's owner): the previous / next choice.
    ChoicePrev,
    ChoiceNext,
    /// Open the admin screen (admins only).
    Admin,
    /// Load the admin screen's data again.
    AdminReload,
    /// Mute or unmute the project's agent notifications (and the bell).
    ToggleMute,
    /// Open the notifications screen.
    Notifications,
    /// Postpone the project's coming idle stop.
    ExtendIdle,
}

/// One key of one screen: what it does, and whether it can right now (and if
/// not, why — shown when pressed, and the key is greyed in the footer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub key: Key,
    pub label: &'static str,
    pub action: Action,
    pub enabled: Result<(), String>,
    /// Shown in the footer; every binding is shown in the help overlay.
    pub footer: bool,
}

impl Binding {
    pub fn new(key: Key, label: &'static str, action: Action) -> Binding {
        Binding {
            key,
            label,
            action,
            enabled: Ok(()),
            footer: true,
        }
    }

    /// Enabled only when `check` passes; its error says why not.
    pub fn when(mut self, check: Result<(), String>) -> Binding {
        self.enabled = check;
        self
    }

    /// Listed in help only (aliases such as j/k, paging keys).
    pub fn help_only(mut self) -> Binding {
        self.footer = false;
        self
    }
}

/// Where the keyboard goes: the topmost thing on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    List,
    ConfirmStartAttach,
    Logs,
    Filter,
    Detail,
    Env,
    Create,
    EnvForm,
    ConfirmDelete,
    ConfirmUnset,
    Settings,
    KeyForm,
    PasswordForm,
    ConfigForm,
    ConfirmRemoveKey,
    ConfirmUnsetConfig,
    /// Attaching to an exited session offers to restart it first.
    ConfirmRestart,
    /// The inbox screen.
    Inbox,
    /// The admin screen.
    Admin,
    /// The notifications screen.
    Notifications,
    Help,
}

impl Context {
    /// Contexts in which unbound printable keys are typed into a field.
    pub fn takes_text(self) -> bool {
        matches!(
            self,
            Context::Filter
                | Context::Create
                | Context::EnvForm
                | Context::KeyForm
                | Context::PasswordForm
                | Context::ConfigForm
        )
    }
}

/// The first binding for `key` in `list`.
pub fn find(list: &[Binding], key: Key) -> Option<&Binding> {
    list.iter().find(|b| b.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(Key::Ctrl('c').label(), "^C");
        assert_eq!(Key::Char(' ').label(), "space");
        assert_eq!(Key::Up.label(), "↑");
    }
}
