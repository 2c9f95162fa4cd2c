//! The detail screen: back, password, refresh, and the sessions list.

use super::*;

#[test]
fn done_errors_show_in_the_status_line() {
    let mut a = app();
    a.update(Msg::Done(Reply::Change, Err("no such project: x".into())));
    let s = a.status.clone().unwrap();
    assert!(s.error && s.text == "no such project: x");
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
