//! Replies are matched by their tag, not by the order they arrive in.

use super::*;

#[test]
fn each_change_says_what_its_reply_answers() {
    let set = Effect::SetEnv {
        project: "blog".into(),
        key: "X".into(),
        value: "1".into(),
        secret: false,
    };
    assert_eq!(set.tag(), Reply::Env);
    assert_eq!(Effect::LoadSettings.tag(), Reply::Load);
    let restart = |from_pane| Effect::Restart {
        project: "blog".into(),
        session: None,
        attach: None,
        from_pane,
    };
    assert_eq!(restart(false).tag(), Reply::Change);
    assert_eq!(restart(true).tag(), Reply::Pane);
}

/// The project list failing to load sends a `Done` nobody asked for. It
/// used to take the place of the env change in flight: the env was never
/// marked changed, and the change's own answer was taken for another.
#[test]
fn an_unsolicited_done_does_not_confuse_the_env_screen() {
    let mut a = on_env_screen();
    keys(&mut a, &[Key::Char('a')]);
    typed(&mut a, "X");
    let fx = keys(&mut a, &[Key::Enter]);
    let [set @ Effect::SetEnv { .. }] = &fx[..] else {
        panic!("{fx:?}")
    };
    let failed = Err("cannot load projects: connection refused".into());
    assert_eq!(a.update(Msg::Done(Reply::Unsolicited, failed)), vec![]);
    assert!(status(&a).starts_with("cannot load projects"));
    assert!(!a.detail.env_state().unwrap().contains("pending"));
    assert_eq!(
        a.update(Msg::Done(set.tag(), Ok("set X".into()))),
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
}

#[test]
fn an_unsolicited_done_does_not_confuse_the_settings_screen() {
    let mut a = fixtures::settings_app(fixtures::settings());
    keys(&mut a, &[Key::Char('p')]);
    typed(&mut a, "correct-horse-battery");
    keys(&mut a, &[Key::Tab]);
    typed(&mut a, "correct-horse-battery");
    let fx = keys(&mut a, &[Key::Enter]);
    let [set @ Effect::SetPassword { .. }] = &fx[..] else {
        panic!("{fx:?}")
    };
    // Not a reload of the settings: that is the password change's answer.
    let failed = Err("cannot load projects: connection refused".into());
    assert_eq!(a.update(Msg::Done(Reply::Unsolicited, failed)), vec![]);
    assert_eq!(
        a.update(Msg::Done(set.tag(), Ok("password changed".into()))),
        vec![Effect::LoadSettings]
    );
    assert_eq!(status(&a), "password changed");
}

#[test]
fn a_failed_load_is_shown_and_not_retried() {
    let mut a = on_env_screen();
    let failed = Err("no such project: blog".into());
    assert_eq!(a.update(Msg::Done(Reply::Load, failed)), vec![]);
    assert_eq!(status(&a), "no such project: blog");
}
