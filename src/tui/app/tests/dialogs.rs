//! The create and delete dialogs.

use super::*;

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
            description: "notes".into(),
            team: None,
            repo: String::new(),
            branch: String::new(),
            template: String::new(),
        }]
    );
    assert!(a.overlay.is_none());
    keys(&mut a, &[Key::Char('n'), Key::Esc]);
    assert!(a.overlay.is_none(), "Esc cancels");
}

fn offered() -> Vec<crate::console::TemplateInfo> {
    use crate::console::{TemplateInfo, TemplateScope};
    vec![
        TemplateInfo {
            name: "mine".into(),
            description: "my own".into(),
            scope: TemplateScope::Yours,
        },
        TemplateInfo {
            name: "python".into(),
            description: "Python 3".into(),
            scope: TemplateScope::Builtin,
        },
    ]
}

#[test]
fn the_create_dialog_offers_templates_chosen_with_the_arrow_keys() {
    let mut a = app();
    assert_eq!(
        keys(&mut a, &[Key::Char('n')]),
        vec![Effect::LoadTeams, Effect::LoadTemplates]
    );
    a.update(Msg::Templates(offered()));
    typed(&mut a, "api");
    // Name → Description → Repository → Branch → Template.
    keys(&mut a, &[Key::Tab, Key::Tab, Key::Tab, Key::Tab]);
    typed(&mut a, "ignored");
    keys(&mut a, &[Key::Down, Key::Down]);
    let Some(Overlay::Create(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(f.chosen().map(|t| t.name.as_str()), Some("python"));
    assert_eq!(f.branch, "", "typing on the template field changes nothing");
    // Up past the first comes back to none, then wraps to the last.
    keys(&mut a, &[Key::Up, Key::Up]);
    let Some(Overlay::Create(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(f.chosen(), None);
    keys(&mut a, &[Key::Up]);
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::Create {
            name: "api".into(),
            description: String::new(),
            repo: String::new(),
            branch: String::new(),
            template: "python".into(),
            team: None,
        }]
    );
}
