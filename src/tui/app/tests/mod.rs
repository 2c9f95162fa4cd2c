//! `update` tests: keys in, effects and visible state out.

use super::*;
use crate::model::ProjectStatus;
use crate::tui::fixtures::{self, app, detail, project};
use crate::tui::screens::forms::ConfigForm;
use crate::tui::screens::settings::SettingsFocus;

fn keys(app: &mut App, keys: &[Key]) -> Vec<Effect> {
    keys.iter().flat_map(|&k| app.update(Msg::Key(k))).collect()
}

fn typed(app: &mut App, s: &str) -> Vec<Effect> {
    s.chars()
        .flat_map(|c| app.update(Msg::Key(Key::Char(c))))
        .collect()
}

fn selected(app: &App) -> String {
    app.list.selected_project().unwrap().project.name.clone()
}

/// Moves the selection onto `name`.
fn select(app: &mut App, name: &str) {
    app.list.selected = app
        .list
        .visible()
        .iter()
        .position(|v| v.project.name == name)
        .unwrap();
}

#[test]
fn arrows_and_jk_move_the_selection_within_bounds() {
    let mut a = app();
    assert_eq!(selected(&a), "blog");
    keys(&mut a, &[Key::Down, Key::Char('j')]);
    assert_eq!(selected(&a), "broken");
    keys(&mut a, &[Key::Char('k')]);
    assert_eq!(selected(&a), "shop");
    keys(&mut a, &[Key::Up, Key::Up, Key::Up]);
    assert_eq!(selected(&a), "blog");
    keys(&mut a, &[Key::End, Key::Down]);
    assert_eq!(selected(&a), "half");
}

#[test]
fn filter_narrows_by_name_enter_keeps_it_and_esc_clears_it() {
    let mut a = app();
    keys(&mut a, &[Key::Char('/')]);
    typed(&mut a, "SHO");
    assert_eq!(a.list.visible().len(), 1);
    assert_eq!(selected(&a), "shop");
    keys(&mut a, &[Key::Backspace]);
    assert!(a.list.visible().len() > 1, "erasing widens the filter");
    typed(&mut a, "o");
    keys(&mut a, &[Key::Enter]);
    assert!(!a.list.filtering);
    assert_eq!(a.list.visible().len(), 1, "Enter keeps the filter");
    // With the filter kept, letters are actions again: s starts "shop".
    let fx = keys(&mut a, &[Key::Char('s')]);
    assert_eq!(
        fx,
        vec![Effect::Intent {
            project: "shop".into(),
            intent: Intent::Start
        }]
    );
    keys(&mut a, &[Key::Char('/'), Key::Esc]);
    assert_eq!(a.list.filter, "");
    assert_eq!(a.list.visible().len(), 7);
}

#[test]
fn each_allowed_action_produces_its_effect() {
    let mut a = app();
    select(&mut a, "shop");
    assert_eq!(
        keys(&mut a, &[Key::Char('s')]),
        vec![Effect::Intent {
            project: "shop".into(),
            intent: Intent::Start
        }]
    );
    select(&mut a, "blog");
    assert_eq!(
        keys(&mut a, &[Key::Char('x')]),
        vec![Effect::Intent {
            project: "blog".into(),
            intent: Intent::Stop
        }]
    );
    select(&mut a, "broken");
    assert_eq!(
        keys(&mut a, &[Key::Char('r')]),
        vec![Effect::Intent {
            project: "broken".into(),
            intent: Intent::Retry
        }]
    );
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::LoadDetail {
            project: "broken".into()
        }]
    );
    assert_eq!(a.screen, Screen::Detail);
}

#[test]
fn a_disallowed_key_says_why_and_does_nothing() {
    let mut a = app();
    select(&mut a, "blog");
    assert_eq!(keys(&mut a, &[Key::Char('s')]), vec![]);
    let status = a.status.clone().unwrap();
    assert!(status.error);
    assert_eq!(
        status.text,
        "cannot start a project that is RUNNING: it is already running"
    );
    assert_eq!(keys(&mut a, &[Key::Char('r')]), vec![]);
    assert!(
        a.status
            .as_ref()
            .unwrap()
            .text
            .contains("only a project in ERROR")
    );
    select(&mut a, "old");
    assert_eq!(keys(&mut a, &[Key::Char('d')]), vec![]);
    assert!(a.overlay.is_none(), "no confirmation for a refused delete");
    assert!(a.status.as_ref().unwrap().text.contains("being deleted"));
    // The footer shows the same verdict.
    let s = a
        .bindings()
        .into_iter()
        .find(|b| b.key == Key::Char('s'))
        .unwrap();
    assert!(s.enabled.is_err());
}

#[test]
fn unbound_keys_are_reported_not_ignored() {
    let mut a = app();
    assert_eq!(keys(&mut a, &[Key::Char('z')]), vec![]);
    assert!(
        a.status
            .as_ref()
            .unwrap()
            .text
            .contains("press ? for the keys")
    );
}

#[test]
fn delete_asks_first_and_names_the_project() {
    let mut a = app();
    select(&mut a, "shop");
    assert_eq!(keys(&mut a, &[Key::Char('d')]), vec![]);
    assert_eq!(
        a.overlay,
        Some(Overlay::ConfirmDelete {
            project: "shop".into()
        })
    );
    assert_eq!(keys(&mut a, &[Key::Char('n')]), vec![]);
    assert!(a.overlay.is_none());
    keys(&mut a, &[Key::Char('d'), Key::Esc]);
    assert!(a.overlay.is_none());
    assert_eq!(
        keys(&mut a, &[Key::Char('d'), Key::Char('y')]),
        vec![Effect::Intent {
            project: "shop".into(),
            intent: Intent::Delete
        }]
    );
}

#[test]
fn create_validates_live_and_submits_only_when_valid() {
    let mut a = app();
    keys(&mut a, &[Key::Char('n')]);
    typed(&mut a, "!!!");
    let Some(Overlay::Create(f)) = &a.overlay else {
        panic!()
    };
    assert!(f.slug().unwrap_err().contains("no letters or digits"));
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(a.status.as_ref().unwrap().error);
    assert!(a.overlay.is_some(), "an invalid form stays open");
    keys(&mut a, &[Key::Backspace, Key::Backspace, Key::Backspace]);
    typed(&mut a, "My Blog");
    // Pasted escape sequences never reach the field.
    a.update(Msg::Paste("\x1b[31m2".into()));
    keys(&mut a, &[Key::Tab]);
    typed(&mut a, "notes");
    let Some(Overlay::Create(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(f.slug().unwrap(), "myblog31m2");
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::Create {
            name: "My Blog[31m2".into(),
            description: "notes".into()
        }]
    );
    assert!(a.overlay.is_none());
    keys(&mut a, &[Key::Char('n'), Key::Esc]);
    assert!(a.overlay.is_none(), "Esc cancels");
}

fn on_env_screen() -> App {
    let mut a = app();
    let fx = keys(&mut a, &[Key::Char('e')]);
    assert_eq!(
        fx,
        vec![Effect::LoadDetail {
            project: "blog".into()
        }]
    );
    a.update(Msg::Detail(Box::new(detail(project(
        2,
        "blog",
        ProjectStatus::Running,
        100,
    )))));
    assert_eq!(a.screen, Screen::Env);
    a
}

#[test]
fn env_form_validates_and_sets() {
    let mut a = on_env_screen();
    keys(&mut a, &[Key::Char('a')]);
    typed(&mut a, "1BAD");
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(a.status.as_ref().unwrap().error);
    keys(&mut a, &[Key::Backspace; 4]);
    typed(&mut a, "KILN_X");
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(a.status.as_ref().unwrap().text.contains("reserved"));
    keys(&mut a, &[Key::Backspace; 6]);
    typed(&mut a, "TOKEN");
    keys(&mut a, &[Key::Tab]);
    typed(&mut a, "abc");
    keys(&mut a, &[Key::Ctrl('s')]);
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::SetEnv {
            project: "blog".into(),
            key: "TOKEN".into(),
            value: "abc".into(),
            secret: true
        }]
    );
    // The space key toggles only on the checkbox field.
    keys(&mut a, &[Key::Char('a'), Key::Tab, Key::Tab]);
    keys(&mut a, &[Key::Char(' ')]);
    let Some(Overlay::EnvForm(f)) = &a.overlay else {
        panic!()
    };
    assert!(f.secret);
}

#[test]
fn env_edit_and_delete_with_confirmation() {
    let mut a = on_env_screen();
    keys(&mut a, &[Key::Down, Key::Enter]);
    let Some(Overlay::EnvForm(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(
        (f.key.as_str(), f.value.as_str(), f.editing),
        ("LOG_LEVEL", "debug", true)
    );
    keys(&mut a, &[Key::Backspace; 5]);
    typed(&mut a, "info");
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::SetEnv {
            project: "blog".into(),
            key: "LOG_LEVEL".into(),
            value: "info".into(),
            secret: false
        }]
    );
    keys(&mut a, &[Key::Char('d')]);
    assert_eq!(
        a.overlay,
        Some(Overlay::ConfirmUnset {
            key: "LOG_LEVEL".into()
        })
    );
    assert_eq!(
        keys(&mut a, &[Key::Char('y')]),
        vec![Effect::UnsetEnv {
            project: "blog".into(),
            key: "LOG_LEVEL".into()
        }]
    );
}

#[test]
fn env_change_is_pending_until_the_sandbox_moves() {
    let mut a = on_env_screen();
    keys(&mut a, &[Key::Char('a')]);
    typed(&mut a, "X");
    keys(&mut a, &[Key::Enter]);
    assert_eq!(
        a.update(Msg::Done(Reply::Env, Ok("X set".into()))),
        vec![Effect::LoadDetail {
            project: "blog".into()
        }]
    );
    assert!(
        a.detail
            .env_state()
            .unwrap()
            .contains("pending (sandbox catching up)")
    );
    // The reloaded detail says exactly where the sandbox is.
    let mut view = project(2, "blog", ProjectStatus::Running, 100);
    view.project.env_version = 4;
    view.resources[0].updated_at = fixtures::now() + chrono::Duration::seconds(1);
    view.resources[0].applied_env_version = Some(3);
    a.update(Msg::Detail(Box::new(detail(view.clone()))));
    assert!(
        a.detail
            .env_state()
            .unwrap()
            .contains("pending (the sandbox has v3"),
        "{:?}",
        a.detail.env_state()
    );
    view.resources[0].applied_env_version = Some(4);
    a.update(Msg::Detail(Box::new(detail(view))));
    assert!(a.detail.env_state().unwrap().ends_with("applied"));
}

#[test]
fn done_errors_show_in_the_status_line() {
    let mut a = app();
    a.update(Msg::Done(Reply::Change, Err("no such project: x".into())));
    let s = a.status.clone().unwrap();
    assert!(s.error && s.text == "no such project: x");
}

#[test]
fn quit_from_home_with_q_or_ctrl_c() {
    let mut a = app();
    assert_eq!(keys(&mut a, &[Key::Char('q')]), vec![Effect::Quit]);
    assert_eq!(keys(&mut a, &[Key::Ctrl('c')]), vec![Effect::Quit]);
}

#[test]
fn detail_back_password_and_refresh() {
    let mut a = app();
    keys(&mut a, &[Key::Enter]);
    assert_eq!(keys(&mut a, &[Key::Char('p')]), vec![]);
    assert!(a.status.as_ref().unwrap().error, "no url yet: p says why");
    a.update(Msg::Detail(Box::new(detail(project(
        2,
        "blog",
        ProjectStatus::Running,
        100,
    )))));
    keys(&mut a, &[Key::Char('p')]);
    assert!(a.detail.show_password);
    // A change notification refreshes the open project too.
    assert_eq!(
        a.update(Msg::Projects(fixtures::projects())),
        vec![Effect::LoadDetail {
            project: "blog".into()
        }]
    );
    assert_eq!(keys(&mut a, &[Key::Char('q')]), vec![]);
    assert_eq!(a.screen, Screen::List);
    assert!(
        !a.detail.show_password,
        "the password is hidden again next time"
    );
}

#[test]
fn an_open_project_that_disappears_returns_to_the_list() {
    let mut a = app();
    keys(&mut a, &[Key::Enter]);
    let rest: Vec<_> = fixtures::projects().into_iter().skip(1).collect();
    assert_eq!(a.update(Msg::Projects(rest)), vec![]);
    assert_eq!(a.screen, Screen::List);
    assert!(a.status.as_ref().unwrap().text.contains("blog is gone"));
}

#[test]
fn help_lists_the_screen_bindings_and_closes() {
    let mut a = app();
    keys(&mut a, &[Key::Char('?')]);
    assert!(a.help);
    assert!(a.help_bindings().iter().any(|b| b.key == Key::Char('n')));
    keys(&mut a, &[Key::Esc]);
    assert!(!a.help);
}

#[test]
fn animating_only_while_something_moves() {
    let mut a = App::new("u", 80, 24);
    a.update(Msg::Projects(vec![project(
        2,
        "blog",
        ProjectStatus::Running,
        5,
    )]));
    assert!(!a.animating());
    a.update(Msg::Projects(vec![project(
        2,
        "blog",
        ProjectStatus::Starting,
        5,
    )]));
    assert!(a.animating());
}

#[test]
fn every_handled_key_is_documented() {
    // Dispatch goes only through the binding lists, so this holds by
    // construction; check that each context's list has no duplicate keys,
    // which would make the second entry dead but documented.
    let mut a = on_env_screen();
    for context in [
        Context::List,
        Context::Filter,
        Context::Detail,
        Context::Env,
        Context::Create,
        Context::EnvForm,
        Context::ConfirmDelete,
        Context::Settings,
        Context::KeyForm,
        Context::PasswordForm,
        Context::ConfigForm,
        Context::ConfirmRemoveKey,
        Context::ConfirmRestart,
        Context::Help,
    ] {
        match context {
            Context::EnvForm => a.overlay = Some(Overlay::EnvForm(EnvForm::add())),
            Context::ConfigForm => a.overlay = Some(Overlay::ConfigForm(ConfigForm::add())),
            Context::Settings => {
                a.overlay = None;
                a.settings.data = Some(fixtures::settings());
            }
            _ => {}
        }
        let list = bindings::for_context(&a, context);
        for (i, b) in list.iter().enumerate() {
            assert!(
                !list[..i].iter().any(|o| o.key == b.key),
                "{context:?}: {:?} twice",
                b.key
            );
        }
    }
}

// ---- sessions on the detail screen ----

fn session(name: Option<&str>, state: crate::driver::SessionState) -> crate::driver::SessionInfo {
    crate::driver::SessionInfo {
        name: name.map(str::to_string),
        last_activity: None,
        viewers: 0,
        state,
    }
}

/// The detail of "blog" (running) with a running default session and an
/// exited one named s1.
fn with_sessions() -> App {
    use crate::driver::SessionState as S;
    let mut a = app();
    keys(&mut a, &[Key::Enter]);
    let mut d = detail(a.list.visible()[0].clone());
    d.sessions = vec![
        session(None, S::Running),
        session(Some("s1"), S::Exited { status: Some(2) }),
    ];
    a.update(Msg::Detail(Box::new(d)));
    a
}

#[test]
fn tab_selects_sessions_and_a_attaches_to_the_selected_one() {
    let mut a = with_sessions();
    assert_eq!(
        keys(&mut a, &[Key::Char('a')]),
        vec![Effect::Attach {
            project: "blog".into(),
            session: None,
            read_only: false
        }]
    );
    keys(&mut a, &[Key::Tab]);
    assert_eq!(a.selected_session().unwrap().name.as_deref(), Some("s1"));
    keys(&mut a, &[Key::Tab]);
    assert_eq!(a.selected_session().unwrap().name, None, "wraps around");
    keys(&mut a, &[Key::BackTab]);
    assert_eq!(a.selected_session().unwrap().name.as_deref(), Some("s1"));
    // From the list, `a` is the default session, as before.
    keys(&mut a, &[Key::Esc]);
    assert_eq!(
        keys(&mut a, &[Key::Char('a')]),
        vec![Effect::Attach {
            project: "blog".into(),
            session: None,
            read_only: false
        }]
    );
}

#[test]
fn r_restarts_only_an_exited_session_without_asking() {
    let mut a = with_sessions();
    // The default session runs: R is refused with the reason, not hidden.
    assert!(keys(&mut a, &[Key::Char('R')]).is_empty());
    assert!(status(&a).contains("R restarts only an exited session"));
    let r = binding(&a, Key::Char('R'));
    assert!(!r.footer && r.enabled.is_err());
    keys(&mut a, &[Key::Tab]);
    let r = binding(&a, Key::Char('R'));
    assert!(r.footer && r.enabled.is_ok(), "{r:?}");
    assert_eq!(
        keys(&mut a, &[Key::Char('R')]),
        vec![Effect::Restart {
            project: "blog".into(),
            session: Some("s1".into()),
            attach: None,
            from_pane: false,
        }]
    );
    assert!(status(&a).contains("restarting session s1"));
    assert!(a.overlay.is_none());
    // The answer reloads the detail (and with it the session list).
    assert_eq!(
        a.update(Msg::Done(
            Reply::Change,
            Ok("restarted session s1 of blog".into())
        )),
        vec![Effect::LoadDetail {
            project: "blog".into()
        }]
    );
}

#[test]
fn attaching_to_an_exited_session_offers_a_restart_first() {
    let mut a = with_sessions();
    keys(&mut a, &[Key::Tab]);
    assert!(keys(&mut a, &[Key::Enter]).is_empty());
    assert!(matches!(a.overlay, Some(Overlay::ConfirmRestart { .. })));
    assert!(keys(&mut a, &[Key::Char('n')]).is_empty());
    assert!(a.overlay.is_none());
    keys(&mut a, &[Key::Char('v')]);
    assert_eq!(
        keys(&mut a, &[Key::Char('y')]),
        vec![Effect::Restart {
            project: "blog".into(),
            session: Some("s1".into()),
            attach: Some(true),
            from_pane: false,
        }]
    );
}

#[test]
fn the_session_list_is_polled_and_the_cursor_follows_its_session() {
    use crate::driver::SessionState as S;
    let mut a = with_sessions();
    keys(&mut a, &[Key::Tab]);
    assert_eq!(a.polls_sessions(), Some("blog"));
    assert_eq!(
        a.update(Msg::PollSessions),
        vec![Effect::LoadSessions {
            project: "blog".into()
        }]
    );
    // A new session sorts before s1: the cursor stays on s1.
    a.update(Msg::Sessions {
        project: "blog".into(),
        sessions: vec![
            session(None, S::Running),
            session(Some("a0"), S::Running),
            session(Some("s1"), S::Running),
        ],
    });
    assert_eq!(a.selected_session().unwrap().name.as_deref(), Some("s1"));
    assert!(a.selected_session().unwrap().state == S::Running);
    // A late answer for another project changes nothing.
    a.update(Msg::Sessions {
        project: "shop".into(),
        sessions: vec![],
    });
    assert_eq!(a.sessions().len(), 3);
    // Off the detail screen, nothing is polled.
    keys(&mut a, &[Key::Esc]);
    assert_eq!(a.polls_sessions(), None);
    assert!(a.update(Msg::PollSessions).is_empty());
}

// ---- settings screen ----

const KEY_LINE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com";

fn status(a: &App) -> String {
    a.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

fn binding(a: &App, key: Key) -> Binding {
    a.bindings().into_iter().find(|b| b.key == key).unwrap()
}

#[test]
fn settings_opens_with_shift_s_or_comma_loads_and_esc_goes_back() {
    for key in [Key::Char('S'), Key::Char(',')] {
        let mut a = app();
        assert_eq!(keys(&mut a, &[key]), vec![Effect::LoadSettings]);
        assert_eq!(a.screen, Screen::Settings);
        assert!(a.settings.data.is_none(), "loading until Msg::Settings");
        // Nothing changes before the data is there; the reason is given.
        assert_eq!(keys(&mut a, &[Key::Char('a')]), vec![]);
        assert_eq!(status(&a), "still loading your settings");
        a.update(Msg::Settings(Box::new(fixtures::settings())));
        assert_eq!(a.settings.data.as_ref().unwrap().keys.len(), 2);
        keys(&mut a, &[Key::Esc]);
        assert_eq!(a.screen, Screen::List);
    }
    // The list screen documents it (footer and help).
    let a = app();
    let b = binding(&a, Key::Char('S'));
    assert!(b.footer && b.enabled.is_ok());
    assert!(a.help_bindings().iter().any(|b| b.key == Key::Char(',')));
}

#[test]
fn add_key_by_paste_validates_and_submits_then_reloads() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Char('a')]);
    assert!(matches!(a.overlay, Some(Overlay::KeyForm(_))));
    // Not a key yet: Enter is refused with the parser's reason.
    typed(&mut a, "hello");
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(
        status(&a).contains("not an OpenSSH public key"),
        "{}",
        status(&a)
    );
    keys(&mut a, &[Key::Backspace; 5]);
    // A paste (with the newline `cat` leaves) fills the one field.
    a.update(Msg::Paste(format!("{KEY_LINE}\n")));
    let Some(Overlay::KeyForm(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(f.line, KEY_LINE);
    assert!(f.check(&[]).unwrap().starts_with("ssh-ed25519 SHA256:"));
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::AddKey {
            line: KEY_LINE.into()
        }]
    );
    assert!(a.overlay.is_none());
    // Exactly one Done answers it, and the screen reloads.
    assert_eq!(
        a.update(Msg::Done(Reply::Settings, Ok("added".into()))),
        vec![Effect::LoadSettings]
    );
    // A private key is refused before it leaves the form.
    keys(&mut a, &[Key::Char('a')]);
    a.update(Msg::Paste("-----BEGIN OPENSSH PRIVATE KEY-----".into()));
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(status(&a).contains("private key"));
}

#[test]
fn an_already_registered_key_is_refused_in_the_form() {
    let mut data = fixtures::settings();
    let parsed = crate::store::keys::parse_public_key(KEY_LINE).unwrap();
    data.keys[0].fingerprint = crate::store::keys::fingerprint(&parsed);
    let mut a = fixtures::settings_app(data);
    keys(&mut a, &[Key::Char('a')]);
    a.update(Msg::Paste(KEY_LINE.into()));
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(status(&a).contains("already one of your keys"));
}

#[test]
fn remove_key_asks_first_then_removes_the_selected_one() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Down, Key::Char('d')]);
    let fp = a.settings.data.as_ref().unwrap().keys[1]
        .fingerprint
        .clone();
    assert_eq!(
        a.overlay,
        Some(Overlay::ConfirmRemoveKey {
            fingerprint: fp.clone()
        })
    );
    // n cancels without an effect.
    assert_eq!(keys(&mut a, &[Key::Char('n')]), vec![]);
    assert!(a.overlay.is_none());
    keys(&mut a, &[Key::Char('d')]);
    assert_eq!(
        keys(&mut a, &[Key::Char('y')]),
        vec![Effect::RemoveKey { fingerprint: fp }]
    );
    // A refusal from the store shows, and the screen reloads anyway.
    assert_eq!(
        a.update(Msg::Done(
            Reply::Settings,
            Err("this is your only way to log in".into())
        )),
        vec![Effect::LoadSettings]
    );
    assert!(a.status.as_ref().unwrap().error);
}

#[test]
fn the_last_way_in_cannot_be_removed_and_says_why() {
    let mut data = fixtures::settings();
    data.keys.truncate(1);
    data.has_password = false;
    let mut a = fixtures::settings_app(data.clone());
    let d = binding(&a, Key::Char('d'));
    assert!(d.enabled.is_err(), "greyed in the footer");
    assert_eq!(keys(&mut a, &[Key::Char('d')]), vec![]);
    assert!(a.overlay.is_none(), "no confirmation for a refused removal");
    assert!(status(&a).contains("only way in"), "{}", status(&a));
    // With a password, or a second key, it may go.
    data.has_password = true;
    a.update(Msg::Settings(Box::new(data.clone())));
    assert!(binding(&a, Key::Char('d')).enabled.is_ok());
    data.has_password = false;
    data.keys.push(fixtures::ssh_key(3, "ssh-ed25519", "other"));
    a.update(Msg::Settings(Box::new(data)));
    assert!(binding(&a, Key::Char('d')).enabled.is_ok());
}

#[test]
fn password_form_is_masked_validates_and_needs_a_match() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Char('p')]);
    typed(&mut a, "short");
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(status(&a).contains("too short"), "{}", status(&a));
    typed(&mut a, "-but-now-long");
    keys(&mut a, &[Key::Tab]);
    typed(&mut a, "short-but-now-lonG");
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert_eq!(status(&a), "the two passwords differ");
    keys(&mut a, &[Key::Backspace]);
    typed(&mut a, "g");
    // Letters are typed, not actions (q does not close, p does not reopen).
    let Some(Overlay::PasswordForm(f)) = &a.overlay else {
        panic!()
    };
    assert!(!format!("{f:?}").contains("short-but"), "Debug hides it");
    let fx = keys(&mut a, &[Key::Enter]);
    assert_eq!(
        fx,
        vec![Effect::SetPassword {
            password: "short-but-now-long".into()
        }]
    );
    assert!(!format!("{fx:?}").contains("short-but"), "{fx:?}");
    assert!(format!("{fx:?}").contains("REDACTED"));
    assert_eq!(
        a.update(Msg::Done(Reply::Settings, Ok("password set".into()))),
        vec![Effect::LoadSettings]
    );
}

#[test]
fn password_form_esc_discards_what_was_typed() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Char('p')]);
    typed(&mut a, "a long password");
    assert_eq!(keys(&mut a, &[Key::Esc]), vec![]);
    assert!(a.overlay.is_none());
    keys(&mut a, &[Key::Char('p')]);
    let Some(Overlay::PasswordForm(f)) = &a.overlay else {
        panic!()
    };
    assert!(f.password.is_empty());
}

#[test]
fn settings_rows_list_known_keys_then_the_rest() {
    let a = fixtures::settings_app(fixtures::settings());
    let rows: Vec<(&str, bool)> = a
        .settings
        .config_rows()
        .iter()
        .map(|r| (r.key, r.config.is_some()))
        .collect();
    assert_eq!(
        rows,
        [
            ("ANTHROPIC_API_KEY", true),
            ("ANTHROPIC_BASE_URL", false),
            ("EDITOR", true),
            ("KUBECONFIG", true),
        ]
    );
}

#[test]
fn add_setting_defaults_to_secret_for_known_secrets_and_submits() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Tab, Key::Char('a')]);
    // Typed lowercase is uppercased: setting names are uppercase.
    typed(&mut a, "anthropic_api_key");
    let Some(Overlay::ConfigForm(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(f.key, "ANTHROPIC_API_KEY");
    assert!(f.is_secret(), "secret by default");
    keys(&mut a, &[Key::Tab]);
    a.update(Msg::Paste("sk-ant-new".into()));
    let fx = keys(&mut a, &[Key::Enter]);
    assert_eq!(
        fx,
        vec![Effect::SetUserConfig {
            key: "ANTHROPIC_API_KEY".into(),
            value: "sk-ant-new".into(),
            secret: true
        }]
    );
    assert!(!format!("{fx:?}").contains("sk-ant-new"), "{fx:?}");
    assert_eq!(
        a.update(Msg::Done(Reply::Settings, Ok("set".into()))),
        vec![Effect::LoadSettings]
    );

    // A plain one, with the secret box toggled on by hand.
    keys(&mut a, &[Key::Char('a')]);
    typed(&mut a, "MY_FLAG");
    keys(&mut a, &[Key::Tab]);
    typed(&mut a, "on");
    keys(&mut a, &[Key::Ctrl('s')]);
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::SetUserConfig {
            key: "MY_FLAG".into(),
            value: "on".into(),
            secret: true
        }]
    );
}

#[test]
fn add_setting_refuses_bad_names_and_empty_values() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Tab, Key::Char('a')]);
    typed(&mut a, "1BAD");
    keys(&mut a, &[Key::Tab]);
    typed(&mut a, "v");
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(status(&a).contains("digit"), "{}", status(&a));
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Tab, Key::Char('a')]);
    typed(&mut a, "GOOD");
    assert_eq!(keys(&mut a, &[Key::Enter]), vec![]);
    assert!(status(&a).contains("empty"), "{}", status(&a));
}

#[test]
fn edit_setting_with_e_or_enter_keeps_the_name_and_secret_state() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Tab]);
    // A secret: the form starts empty (replace, never append).
    keys(&mut a, &[Key::Char('e')]);
    let Some(Overlay::ConfigForm(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(
        (f.key.as_str(), f.value.expose()),
        ("ANTHROPIC_API_KEY", "")
    );
    assert!(f.editing && f.is_secret());
    keys(&mut a, &[Key::Esc]);
    // A known setting not set yet: its name is filled in.
    keys(&mut a, &[Key::Down, Key::Enter]);
    typed(&mut a, "https://llm.example");
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::SetUserConfig {
            key: "ANTHROPIC_BASE_URL".into(),
            value: "https://llm.example".into(),
            secret: false
        }]
    );
    a.update(Msg::Done(Reply::Settings, Ok("set".into())));
    // A plain value is kept for editing.
    keys(&mut a, &[Key::Down, Key::Enter]);
    let Some(Overlay::ConfigForm(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!((f.key.as_str(), f.value.expose()), ("EDITOR", "vim"));
    // The name is fixed: Tab only visits the value and the checkbox.
    for _ in 0..3 {
        keys(&mut a, &[Key::Tab]);
        let Some(Overlay::ConfigForm(f)) = &a.overlay else {
            panic!()
        };
        assert_ne!(f.focus, EnvField::Key);
    }
}

#[test]
fn unset_setting_asks_first_and_is_refused_when_not_set() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Tab, Key::Down]);
    // ANTHROPIC_BASE_URL is not set: x is off and says so.
    assert!(binding(&a, Key::Char('x')).enabled.is_err());
    assert_eq!(keys(&mut a, &[Key::Char('x')]), vec![]);
    assert_eq!(status(&a), "ANTHROPIC_BASE_URL is not set");
    keys(&mut a, &[Key::Up, Key::Char('x')]);
    assert_eq!(
        a.overlay,
        Some(Overlay::ConfirmUnsetConfig {
            key: "ANTHROPIC_API_KEY".into()
        })
    );
    assert_eq!(
        keys(&mut a, &[Key::Char('y')]),
        vec![Effect::UnsetUserConfig {
            key: "ANTHROPIC_API_KEY".into()
        }]
    );
    assert_eq!(
        a.update(Msg::Done(Reply::Settings, Ok("removed".into()))),
        vec![Effect::LoadSettings]
    );
}

#[test]
fn section_keys_depend_on_the_focused_section() {
    let mut a = fixtures::settings_app(fixtures::settings());
    assert_eq!(binding(&a, Key::Char('a')).action, Action::KeyAdd);
    assert!(a.bindings().iter().all(|b| b.key != Key::Char('x')));
    keys(&mut a, &[Key::Tab]);
    assert_eq!(a.settings.focus, SettingsFocus::Configs);
    assert_eq!(binding(&a, Key::Char('a')).action, Action::ConfigAdd);
    assert!(a.bindings().iter().all(|b| b.key != Key::Char('d')));
    // ↓ moves within the focused list only.
    keys(&mut a, &[Key::Down, Key::Down, Key::End]);
    assert_eq!(
        (a.settings.key_selected, a.settings.config_selected),
        (0, 3)
    );
    keys(&mut a, &[Key::BackTab, Key::Down, Key::Down]);
    assert_eq!(
        (a.settings.key_selected, a.settings.config_selected),
        (1, 3)
    );
    // A refresh with fewer rows keeps the cursors in range.
    let mut data = fixtures::settings();
    data.keys.truncate(1);
    data.configs.clear();
    a.update(Msg::Settings(Box::new(data)));
    assert_eq!(
        (a.settings.key_selected, a.settings.config_selected),
        (0, 1)
    );
}

#[test]
fn a_change_notification_on_settings_reloads_them() {
    let mut a = fixtures::settings_app(fixtures::settings());
    assert_eq!(
        a.update(Msg::Projects(fixtures::projects())),
        vec![Effect::LoadSettings]
    );
}

#[test]
fn help_on_settings_lists_its_keys() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Char('?')]);
    let help = a.help_bindings();
    for key in [
        Key::Char('a'),
        Key::Char('d'),
        Key::Char('p'),
        Key::Tab,
        Key::Esc,
    ] {
        assert!(help.iter().any(|b| b.key == key), "{key:?}");
    }
    keys(&mut a, &[Key::Esc]);
    assert!(!a.help);
    assert_eq!(a.screen, Screen::Settings);
}

#[test]
fn a_pasted_kubeconfig_keeps_its_lines_and_nothing_else_does() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Tab, Key::Char('a')]);
    typed(&mut a, "kubeconfig");
    keys(&mut a, &[Key::Tab]);
    let yaml = "apiVersion: v1\r\nkind: Config\r\ncurrent-context: dev\x1b[31m\n";
    a.update(Msg::Paste(yaml.into()));
    let fx = keys(&mut a, &[Key::Enter]);
    assert_eq!(
        fx,
        vec![Effect::SetUserConfig {
            key: "KUBECONFIG".into(),
            value: "apiVersion: v1\nkind: Config\ncurrent-context: dev[31m\n".into(),
            secret: true
        }]
    );
    // Any other setting stays one line.
    keys(&mut a, &[Key::Char('a')]);
    typed(&mut a, "editor");
    keys(&mut a, &[Key::Tab]);
    a.update(Msg::Paste("vim\n-u NONE".into()));
    let Some(Overlay::ConfigForm(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(f.value.expose(), "vim-u NONE");
}

#[test]
fn attaching_to_a_stopped_project_offers_to_start_it_then_attaches_once_it_runs() {
    let mut a = App::new("alice", 100, 30);
    a.update(Msg::Projects(vec![project(
        7,
        "shop",
        ProjectStatus::Stopped,
        60,
    )]));
    // `a` is offered, not greyed: it leads to the offer.
    assert!(
        a.bindings()
            .iter()
            .any(|b| b.action == Action::Attach && b.enabled.is_ok())
    );
    assert_eq!(keys(&mut a, &[Key::Char('a')]), vec![]);
    assert!(matches!(
        a.overlay,
        Some(Overlay::ConfirmStartAttach { ref project, read_only: false, .. }) if project == "shop"
    ));
    // `n` declines: nothing starts.
    assert_eq!(keys(&mut a, &[Key::Char('n')]), vec![]);
    assert!(a.overlay.is_none());
    keys(&mut a, &[Key::Char('v')]);
    assert_eq!(
        keys(&mut a, &[Key::Char('y')]),
        vec![Effect::Intent {
            project: "shop".into(),
            intent: Intent::Start
        }]
    );
    // Still starting: no pane yet.
    assert_eq!(
        a.update(Msg::Projects(vec![project(
            7,
            "shop",
            ProjectStatus::Starting,
            60
        )])),
        vec![]
    );
    // Running: the pane opens, read-only as asked, once.
    let running = || vec![project(7, "shop", ProjectStatus::Running, 60)];
    assert_eq!(
        a.update(Msg::Projects(running())),
        vec![Effect::Attach {
            project: "shop".into(),
            session: None,
            read_only: true
        }]
    );
    assert_eq!(a.update(Msg::Projects(running())), vec![]);
}

#[test]
fn a_start_that_fails_withdraws_the_attach_and_says_so() {
    let mut a = App::new("alice", 100, 30);
    a.update(Msg::Projects(vec![project(
        7,
        "shop",
        ProjectStatus::Stopped,
        60,
    )]));
    keys(&mut a, &[Key::Char('a'), Key::Char('y')]);
    let fx = a.update(Msg::Projects(vec![project(
        7,
        "shop",
        ProjectStatus::Error,
        60,
    )]));
    assert_eq!(fx, vec![]);
    let status = a.status.clone().unwrap();
    assert!(
        status.error && status.text.contains("did not start"),
        "{status:?}"
    );
    assert_eq!(
        a.update(Msg::Projects(vec![project(
            7,
            "shop",
            ProjectStatus::Running,
            60
        )])),
        vec![]
    );
}

mod pane;
mod replies;
