//! The settings screen: keys, password, settings and secrets.

use super::*;

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
    assert!(format!("{fx:?}").contains("<secret>"));
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
        (f.key.as_str(), f.value.expose_str()),
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
    assert_eq!((f.key.as_str(), f.value.expose_str()), ("EDITOR", "vim"));
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
    assert_eq!(f.value.expose_str(), "vim-u NONE");
}
