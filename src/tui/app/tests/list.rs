//! The projects list: selection, filter, the keys and their refusals, help.

use super::*;

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
fn quit_from_home_with_q_or_ctrl_c() {
    let mut a = app();
    assert_eq!(keys(&mut a, &[Key::Char('q')]), vec![Effect::Quit]);
    assert_eq!(keys(&mut a, &[Key::Ctrl('c')]), vec![Effect::Quit]);
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

#[test]
fn m_mutes_the_selected_project_and_unmutes_a_muted_one_from_list_and_detail() {
    let mut a = app();
    select(&mut a, "blog");
    assert_eq!(
        keys(&mut a, &[Key::Char('m')]),
        vec![Effect::MuteAgent {
            project: "blog".into(),
            muted: true
        }]
    );
    // The list reloads with the project muted: m now unmutes, and the
    // help says so.
    let mut projects = crate::tui::fixtures::projects();
    for p in &mut projects {
        p.project.agent_muted = p.project.name == "blog";
    }
    a.update(Msg::Projects(projects));
    select(&mut a, "blog");
    let help: Vec<&str> = a.bindings().iter().map(|b| b.label).collect();
    assert!(help.contains(&"unmute agent notifications"), "{help:?}");
    keys(&mut a, &[Key::Enter]);
    assert_eq!(
        keys(&mut a, &[Key::Char('m')]),
        vec![Effect::MuteAgent {
            project: "blog".into(),
            muted: false
        }]
    );
}
