//! The env editor and what it says about the sandbox catching up.

use super::*;

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
        (f.key.as_str(), f.value.expose_str(), f.editing),
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
