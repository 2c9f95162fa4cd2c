//! `update` tests: keys in, effects and visible state out.

use super::*;
use crate::model::ProjectStatus;
use crate::tui::fixtures::{self, app, detail, project};

fn keys(app: &mut App, keys: &[Key]) -> Vec<Effect> {
    keys.iter().flat_map(|&k| app.update(Msg::Key(k))).collect()
}

fn typed(app: &mut App, s: &str) -> Vec<Effect> {
    s.chars()
        .flat_map(|c| app.update(Msg::Key(Key::Char(c))))
        .collect()
}

fn selected(app: &App) -> String {
    app.selected_project().unwrap().project.name.clone()
}

/// Moves the selection onto `name`.
fn select(app: &mut App, name: &str) {
    app.selected = app
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
    assert_eq!(a.visible().len(), 1);
    assert_eq!(selected(&a), "shop");
    keys(&mut a, &[Key::Backspace]);
    assert!(a.visible().len() > 1, "erasing widens the filter");
    typed(&mut a, "o");
    keys(&mut a, &[Key::Enter]);
    assert!(!a.filtering);
    assert_eq!(a.visible().len(), 1, "Enter keeps the filter");
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
    assert_eq!(a.filter, "");
    assert_eq!(a.visible().len(), 7);
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
        a.update(Msg::Done(Ok("X set".into()))),
        vec![Effect::LoadDetail {
            project: "blog".into()
        }]
    );
    assert!(
        a.env_state()
            .unwrap()
            .contains("pending (sandbox catching up)")
    );
    let mut view = project(2, "blog", ProjectStatus::Running, 100);
    view.resources[0].updated_at = fixtures::now() + chrono::Duration::seconds(1);
    a.update(Msg::Detail(Box::new(detail(view))));
    assert!(a.env_state().unwrap().ends_with("applied"));
}

#[test]
fn done_errors_show_in_the_status_line() {
    let mut a = app();
    a.update(Msg::Done(Err("no such project: x".into())));
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
    assert!(a.show_password);
    // A change notification refreshes the open project too.
    assert_eq!(
        a.update(Msg::Projects(fixtures::projects())),
        vec![Effect::LoadDetail {
            project: "blog".into()
        }]
    );
    assert_eq!(keys(&mut a, &[Key::Char('q')]), vec![]);
    assert_eq!(a.screen, Screen::List);
    assert!(!a.show_password, "the password is hidden again next time");
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
        Context::Help,
    ] {
        if context == Context::EnvForm {
            a.overlay = Some(Overlay::EnvForm(EnvForm::add()));
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
