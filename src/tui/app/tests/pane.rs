//! The pane's commands (the key after the prefix), decided in `update`.

use super::*;

const PREFIX: u8 = 0x1d;

fn with_pane(read_only: bool) -> App {
    let mut a = app();
    let fx = a.update(Msg::PaneOpened {
        project: "blog".into(),
        session: "s1 (of blog-agentruntime-abc123)".into(),
        name: Some("s1".into()),
        read_only,
    });
    // The attached session takes the pane's size inside the 80×24 frame.
    assert_eq!(fx, vec![Effect::ResizePane(78, 19)]);
    a
}

fn command(a: &mut App, key: u8) -> Vec<Effect> {
    a.update(Msg::PaneCommand(PaneCommand::from_key(key, PREFIX)))
}

#[test]
fn each_key_after_the_prefix_is_one_command() {
    let cases = [
        (b'd', PaneCommand::Detach),
        (b'z', PaneCommand::Zoom),
        (b'[', PaneCommand::History),
        (b'n', PaneCommand::NewSession),
        (b'w', PaneCommand::NextSession),
        (b'r', PaneCommand::Restart),
        (PREFIX, PaneCommand::SendPrefix),
        (b'x', PaneCommand::Unknown(b'x')),
    ];
    for (key, cmd) in cases {
        assert_eq!(PaneCommand::from_key(key, PREFIX), cmd, "{}", key as char);
    }
}

#[test]
fn detach_closes_the_pane_and_the_session_stays() {
    let mut a = with_pane(false);
    assert_eq!(command(&mut a, b'd'), vec![Effect::Detach]);
    assert!(!a.pane_open());
    assert_eq!(
        status(&a),
        "detached from blog; the session stays on the server"
    );
}

#[test]
fn detach_on_the_detail_screen_reloads_its_session_list_and_git_state() {
    let mut a = with_sessions();
    a.update(Msg::PaneOpened {
        project: "blog".into(),
        session: "s1".into(),
        name: Some("s1".into()),
        read_only: false,
    });
    assert_eq!(
        command(&mut a, b'd'),
        vec![
            Effect::Detach,
            Effect::LoadSessions {
                project: "blog".into()
            },
            Effect::LoadGit {
                project: "blog".into()
            }
        ]
    );
}

#[test]
fn zoom_toggles_and_resizes_the_attached_session() {
    let mut a = with_pane(false);
    assert_eq!(command(&mut a, b'z'), vec![Effect::ResizePane(80, 23)]);
    assert_eq!(command(&mut a, b'z'), vec![Effect::ResizePane(78, 19)]);
}

#[test]
fn a_window_resize_resizes_the_attached_session() {
    let mut a = with_pane(false);
    assert_eq!(
        a.update(Msg::Resize(100, 30)),
        vec![Effect::ResizePane(98, 25)]
    );
    let mut closed = app();
    assert_eq!(closed.update(Msg::Resize(100, 30)), vec![]);
}

#[test]
fn history_sends_tmux_its_copy_mode_keys() {
    let mut a = with_pane(false);
    assert_eq!(
        command(&mut a, b'['),
        vec![Effect::PaneInput(b"\x02[".to_vec())]
    );
}

#[test]
fn the_prefix_twice_sends_it_once() {
    let mut a = with_pane(false);
    assert_eq!(
        command(&mut a, PREFIX),
        vec![Effect::PaneInput(vec![PREFIX])]
    );
}

#[test]
fn new_and_next_session_ask_the_session_to_switch() {
    let mut a = with_pane(false);
    assert_eq!(
        command(&mut a, b'n'),
        vec![Effect::SwitchSession {
            project: "blog".into(),
            to: SessionChoice::New,
            read_only: false,
        }]
    );
    assert_eq!(
        command(&mut a, b'w'),
        vec![Effect::SwitchSession {
            project: "blog".into(),
            to: SessionChoice::Next {
                current: Some("s1".into())
            },
            read_only: false,
        }]
    );
}

#[test]
fn restart_from_the_pane_is_answered_about_the_pane() {
    let mut a = with_pane(false);
    let fx = command(&mut a, b'r');
    assert_eq!(
        fx,
        vec![Effect::Restart {
            project: "blog".into(),
            session: Some("s1".into()),
            attach: None,
            from_pane: true,
        }]
    );
    let refused = Err("session s1 is running; only an exited session restarts".into());
    assert_eq!(a.update(Msg::Done(fx[0].tag(), refused)), vec![]);
    assert!(a.pane_open());
    assert!(a.status.as_ref().is_some_and(|s| s.error));
}

#[test]
fn unknown_keys_and_a_closed_pane_do_nothing() {
    let mut a = with_pane(false);
    assert_eq!(command(&mut a, b'x'), vec![]);
    assert!(a.pane_open());
    let mut closed = app();
    assert_eq!(command(&mut closed, b'd'), vec![]);
}

#[test]
fn a_read_only_viewer_keeps_only_the_commands_that_send_no_keys() {
    let mut a = with_pane(true);
    assert_eq!(command(&mut a, b'z'), vec![Effect::ResizePane(80, 23)]);
    assert_eq!(
        command(&mut a, b'w'),
        vec![Effect::SwitchSession {
            project: "blog".into(),
            to: SessionChoice::Next {
                current: Some("s1".into())
            },
            read_only: true,
        }]
    );
    let refused = [
        (
            b'n',
            "a read-only viewer cannot start a session: attach without read-only for that",
        ),
        (b'r', "a read-only viewer cannot restart the session"),
        (
            b'[',
            "a read-only viewer has no history: tmux scrolls it with keys, and this view sends none",
        ),
    ];
    for (key, why) in refused {
        assert_eq!(command(&mut a, key), vec![], "{}", key as char);
        let s = a.status.clone().unwrap();
        assert!(s.error && s.text == why, "{s:?}");
        assert!(a.pane_open());
    }
    assert_eq!(command(&mut a, b'd'), vec![Effect::Detach]);
}
