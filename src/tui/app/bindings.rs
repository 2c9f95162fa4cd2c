//! The binding list of every context. `App::update` dispatches through these,
//! and the footer and help overlay render them, so all three always agree.

use super::{App, Overlay, attach_or_start_allowed, intent_allowed};
use crate::model::intent::Intent;
use crate::tui::keys::{Action, Binding, Context, Key};
use crate::tui::screens::forms::EnvField;
use crate::tui::screens::settings::SettingsFocus;

pub(super) fn for_context(app: &App, context: Context) -> Vec<Binding> {
    match context {
        Context::List => list(app),
        Context::Logs => logs(),
        Context::Filter => filter(),
        Context::Detail => detail(app),
        Context::Env => env(app),
        Context::Create => create(app),
        Context::EnvForm => env_form(app),
        Context::Settings => settings(app),
        Context::KeyForm => key_form(app),
        Context::PasswordForm => password_form(app),
        Context::ConfigForm => config_form(app),
        Context::ConfirmDelete | Context::ConfirmUnset => confirm("yes, delete"),
        Context::ConfirmRemoveKey | Context::ConfirmUnsetConfig => confirm("yes, remove"),
        Context::ConfirmStartAttach => confirm(match &app.overlay {
            Some(Overlay::ConfirmStartAttach {
                read_only: true, ..
            }) => "start and view",
            _ => "start and attach",
        }),
        Context::ConfirmRestart => confirm(match &app.overlay {
            Some(Overlay::ConfirmRestart {
                read_only: true, ..
            }) => "restart and view",
            _ => "restart and attach",
        }),
        Context::Help => vec![
            Binding::new(Key::Esc, "close help", Action::CloseHelp),
            Binding::new(Key::Char('?'), "close help", Action::CloseHelp).help_only(),
            Binding::new(Key::Char('q'), "close help", Action::CloseHelp).help_only(),
            Binding::new(Key::F(1), "close help", Action::CloseHelp).help_only(),
        ],
    }
}

/// ↑/↓ plus the vi aliases and paging; only the arrows make the footer.
fn movement(what: &'static str) -> Vec<Binding> {
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
fn intents(app: &App) -> Vec<Binding> {
    let target = app.target();
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
fn attach(app: &App) -> Vec<Binding> {
    let allowed = attach_or_start_allowed(app.target());
    vec![
        Binding::new(Key::Char('a'), "attach", Action::Attach).when(allowed.clone()),
        Binding::new(Key::Char('v'), "view read-only", Action::AttachReadOnly)
            .when(allowed)
            .help_only(),
    ]
}

fn need_selection(app: &App) -> Result<(), String> {
    match app.list.selected_project() {
        Some(_) => Ok(()),
        None => Err("no project selected; press n to create one".into()),
    }
}

fn list(app: &App) -> Vec<Binding> {
    let mut v = vec![
        Binding::new(Key::Enter, "open", Action::Open).when(need_selection(app)),
        Binding::new(Key::Char('n'), "new", Action::New),
    ];
    v.extend(intents(app));
    v.push(Binding::new(Key::Char('e'), "env", Action::Env).when(need_selection(app)));
    v.extend(attach(app));
    v.push(Binding::new(Key::Char('/'), "filter", Action::FilterStart));
    v.push(Binding::new(Key::Char('S'), "settings", Action::Settings));
    v.push(Binding::new(Key::Char(','), "settings", Action::Settings).help_only());
    v.extend(movement("list"));
    v.push(Binding::new(Key::Char('?'), "help", Action::Help));
    v.push(Binding::new(Key::Char('q'), "quit", Action::Quit));
    v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
    v
}

fn filter() -> Vec<Binding> {
    vec![
        Binding::new(Key::Enter, "keep filter", Action::FilterKeep),
        Binding::new(Key::Esc, "clear filter", Action::FilterClear),
        Binding::new(Key::Backspace, "erase", Action::Erase),
        Binding::new(Key::Up, "up", Action::Up).help_only(),
        Binding::new(Key::Down, "down", Action::Down).help_only(),
        Binding::new(Key::F(1), "help", Action::Help).help_only(),
        Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only(),
    ]
}

fn detail(app: &App) -> Vec<Binding> {
    let has_url = app
        .detail
        .data
        .as_ref()
        .is_some_and(|d| d.database_url.is_some());
    let mut v = vec![Binding::new(Key::Esc, "back", Action::Back)];
    let sessions = !app.sessions().is_empty();
    if sessions {
        // In the footer (early, so it fits at 80 columns) only while the
        // selected session has exited; in help whenever a session is listed.
        let restart = app.restart_check();
        let shown = restart.is_ok();
        let b =
            Binding::new(Key::Char('R'), "restart session", Action::RestartSession).when(restart);
        v.push(if shown { b } else { b.help_only() });
    }
    v.extend(intents(app));
    v.push(Binding::new(Key::Char('e'), "env", Action::Env));
    v.extend(attach(app));
    v.push(Binding::new(Key::Char('L'), "logs", Action::Logs));
    v.push(
        Binding::new(Key::Enter, "attach", Action::Attach)
            .when(attach_or_start_allowed(app.target()))
            .help_only(),
    );
    if sessions {
        v.push(Binding::new(Key::Tab, "next session", Action::NextSession).help_only());
        v.push(Binding::new(Key::BackTab, "previous session", Action::PrevSession).help_only());
    }
    v.push(
        Binding::new(
            Key::Char('p'),
            if app.detail.show_password {
                "hide password"
            } else {
                "show password"
            },
            Action::TogglePassword,
        )
        .when(if has_url {
            Ok(())
        } else {
            Err("no connection string yet (the database is not ready)".into())
        }),
    );
    v.extend(movement("events"));
    v.push(Binding::new(Key::Char('?'), "help", Action::Help));
    v.push(Binding::new(Key::Char('q'), "back", Action::Back).help_only());
    v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
    v
}

fn env(app: &App) -> Vec<Binding> {
    let has_var = match app.selected_var() {
        Some(_) => Ok(()),
        None => Err("no variable selected; press a to add one".to_string()),
    };
    let loaded = match app.detail.data {
        Some(_) => Ok(()),
        None => Err("still loading the variables".to_string()),
    };
    let mut v = vec![
        Binding::new(Key::Esc, "back", Action::Back),
        Binding::new(Key::Char('a'), "add", Action::EnvAdd).when(loaded),
        Binding::new(Key::Enter, "edit", Action::EnvEdit).when(has_var.clone()),
        Binding::new(Key::Char('d'), "delete", Action::EnvDelete).when(has_var),
    ];
    v.extend(movement("list"));
    v.push(Binding::new(Key::Char('?'), "help", Action::Help));
    v.push(Binding::new(Key::Char('q'), "back", Action::Back).help_only());
    v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
    v
}

fn create(app: &App) -> Vec<Binding> {
    let valid = match &app.overlay {
        Some(Overlay::Create(f)) => f.valid(),
        _ => Ok(()),
    };
    form("create", valid, FormKind::MultiField)
}

fn env_form(app: &App) -> Vec<Binding> {
    let Some(Overlay::EnvForm(f)) = &app.overlay else {
        return vec![];
    };
    form(
        "save",
        f.valid(),
        FormKind::WithSecret(f.focus == EnvField::Secret),
    )
}

fn confirm(yes: &'static str) -> Vec<Binding> {
    vec![
        Binding::new(Key::Char('y'), yes, Action::Confirm),
        Binding::new(Key::Char('n'), "no", Action::Cancel),
        Binding::new(Key::Esc, "cancel", Action::Cancel),
        Binding::new(Key::Char('?'), "help", Action::Help).help_only(),
        Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only(),
    ]
}

/// The settings screen: Tab picks the section (keys or settings) that ↑/↓,
/// `a` and the removal keys act on; `p` works from either.
fn settings(app: &App) -> Vec<Binding> {
    let loaded = app.settings.loaded();
    let password_label = match &app.settings.data {
        Some(d) if d.has_password => "change password",
        _ => "set password",
    };
    let mut v = vec![Binding::new(Key::Esc, "back", Action::Back)];
    match app.settings.focus {
        SettingsFocus::Keys => {
            v.push(Binding::new(Key::Char('a'), "add key", Action::KeyAdd).when(loaded.clone()));
            v.push(
                Binding::new(Key::Char('d'), "remove key", Action::KeyRemove)
                    .when(app.settings.key_removal_check()),
            );
        }
        SettingsFocus::Configs => {
            let edit = app.settings.config_edit_check();
            v.push(
                Binding::new(Key::Char('a'), "add setting", Action::ConfigAdd).when(loaded.clone()),
            );
            v.push(Binding::new(Key::Enter, "edit", Action::ConfigEdit).when(edit.clone()));
            v.push(
                Binding::new(Key::Char('e'), "edit", Action::ConfigEdit)
                    .when(edit)
                    .help_only(),
            );
            v.push(
                Binding::new(Key::Char('x'), "unset", Action::ConfigUnset)
                    .when(app.settings.config_unset_check()),
            );
        }
    }
    v.push(Binding::new(Key::Char('p'), password_label, Action::PasswordSet).when(loaded));
    v.push(Binding::new(Key::Tab, "other section", Action::NextSection));
    v.push(Binding::new(Key::BackTab, "other section", Action::NextSection).help_only());
    v.extend(movement("list"));
    v.push(Binding::new(Key::Char('?'), "help", Action::Help));
    v.push(Binding::new(Key::Char('q'), "back", Action::Back).help_only());
    v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
    v
}

fn key_form(app: &App) -> Vec<Binding> {
    let valid = match (&app.overlay, &app.settings.data) {
        (Some(Overlay::KeyForm(f)), Some(d)) => f.check(&d.keys).map(|_| ()),
        (Some(Overlay::KeyForm(f)), None) => f.check(&[]).map(|_| ()),
        _ => Ok(()),
    };
    form("add key", valid, FormKind::SingleField)
}

fn password_form(app: &App) -> Vec<Binding> {
    let valid = match &app.overlay {
        Some(Overlay::PasswordForm(f)) => f.valid(),
        _ => Ok(()),
    };
    form("save password", valid, FormKind::MultiField)
}

fn config_form(app: &App) -> Vec<Binding> {
    let Some(Overlay::ConfigForm(f)) = &app.overlay else {
        return vec![];
    };
    form(
        "save",
        f.valid(),
        FormKind::WithSecret(f.focus == EnvField::Secret),
    )
}

/// The shapes of form the bindings below serve.
enum FormKind {
    SingleField,
    MultiField,
    /// Several fields and a secret checkbox; `true` while it has focus.
    WithSecret(bool),
}

/// Every form's keys, in one order: submit, field movement, the secret
/// toggle where there is one, then erase, cancel, help and quit.
fn form(submit: &'static str, valid: Result<(), String>, kind: FormKind) -> Vec<Binding> {
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

fn logs() -> Vec<Binding> {
    let mut v = vec![
        Binding::new(Key::Esc, "back", Action::Back),
        Binding::new(Key::Char('q'), "back", Action::Back).help_only(),
        Binding::new(Key::PageUp, "scroll back", Action::PageUp),
        Binding::new(Key::End, "follow", Action::Bottom),
    ];
    v.extend(movement("list"));
    v.push(Binding::new(Key::Char('G'), "follow", Action::Bottom).help_only());
    v.push(Binding::new(Key::Char('?'), "help", Action::Help));
    v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
    v
}
