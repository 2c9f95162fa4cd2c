//! The bindings every screen is built from (movement, intents, attach,
//! forms, confirmations) and those of the help overlay. Each screen lists
//! its own bindings from these; `App::update` dispatches through them and
//! the footer and help overlay render them, so all three always agree.

use super::rules::{attach_or_start_allowed, intent_allowed};
use crate::model::intent::Intent;
use crate::store::projects::ProjectView;
use crate::tui::keys::{Action, Binding, Key};

/// The help overlay's own keys.
pub fn help() -> Vec<Binding> {
    vec![
        Binding::new(Key::Esc, "close help", Action::CloseHelp),
        Binding::new(Key::Char('?'), "close help", Action::CloseHelp).help_only(),
        Binding::new(Key::Char('q'), "close help", Action::CloseHelp).help_only(),
        Binding::new(Key::F(1), "close help", Action::CloseHelp).help_only(),
    ]
}

/// ↑/↓ plus the vi aliases and paging; only the arrows make the footer.
pub fn movement(what: &'static str) -> Vec<Binding> {
    let (up, down) = match what {
        "events" => ("older event", "newer event"),
        _ => ("up", "down"),
    };
    vec![
        Binding::new(Key::Up, up, Action::Up).help_only(),
        Binding::new(Key::Down, down, Action::Down).help_only(),
        Binding::new(Key::Char('k'), up, Action::Up).help_only(),
        Binding::new(Key::Char('j'), down, Action::Down).help_only(),
        Binding::new(Key::PageUp, "page up", Action::PageUp).help_only(),
        Binding::new(Key::PageDown, "page down", Action::PageDown).help_only(),
        Binding::new(Key::Home, "first", Action::Top).help_only(),
        Binding::new(Key::End, "last", Action::Bottom).help_only(),
    ]
}

/// Start/stop/delete/retry, each enabled by the intents table.
pub fn intents(target: Option<&ProjectView>) -> Vec<Binding> {
    let b = |key, label, intent| {
        Binding::new(Key::Char(key), label, Action::Intent(intent))
            .when(intent_allowed(target, intent))
    };
    vec![
        b('s', "start", Intent::Start),
        b('x', "stop", Intent::Stop),
        b('d', "delete", Intent::Delete),
        b('r', "retry", Intent::Retry),
    ]
}

/// `a` attaches to the sandbox's session; `v` views it read-only.
pub fn attach(target: Option<&ProjectView>) -> Vec<Binding> {
    let allowed = attach_or_start_allowed(target);
    vec![
        Binding::new(Key::Char('a'), "attach", Action::Attach).when(allowed.clone()),
        Binding::new(Key::Char('v'), "view read-only", Action::AttachReadOnly)
            .when(allowed)
            .help_only(),
    ]
}

pub fn confirm(yes: &'static str) -> Vec<Binding> {
    vec![
        Binding::new(Key::Char('y'), yes, Action::Confirm),
        Binding::new(Key::Char('n'), "no", Action::Cancel),
        Binding::new(Key::Esc, "cancel", Action::Cancel),
        Binding::new(Key::Char('?'), "help", Action::Help).help_only(),
        Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only(),
    ]
}

/// The shapes of form the bindings below serve.
pub enum FormKind {
    SingleField,
    MultiField,
    /// Several fields and a secret checkbox; `true` while it has focus.
    WithSecret(bool),
}

/// Every form's keys, in one order: submit, field movement, the secret
/// toggle where there is one, then erase, cancel, help and quit.
pub fn form(submit: &'static str, valid: Result<(), String>, kind: FormKind) -> Vec<Binding> {
    let mut v = vec![Binding::new(Key::Enter, submit, Action::Submit).when(valid)];
    if !matches!(kind, FormKind::SingleField) {
        v.push(Binding::new(Key::Tab, "next field", Action::NextField));
        v.push(Binding::new(Key::BackTab, "previous field", Action::PrevField).help_only());
    }
    if let FormKind::WithSecret(on_checkbox) = kind {
        v.push(Binding::new(
            Key::Ctrl('s'),
            "toggle secret",
            Action::ToggleSecret,
        ));
        if on_checkbox {
            v.push(Binding::new(
                Key::Char(' '),
                "toggle secret",
                Action::ToggleSecret,
            ));
        }
    }
    v.push(Binding::new(Key::Backspace, "erase", Action::Erase).help_only());
    v.push(Binding::new(Key::Esc, "cancel", Action::Cancel));
    v.push(Binding::new(Key::F(1), "help", Action::Help).help_only());
    v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
    v
}
