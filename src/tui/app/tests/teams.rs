//! The create dialog's owner field, the viewer's greyed keys and the
//! admin screen: keys in, effects and state out.

use super::*;
use crate::console::AdminOverview;
use crate::console::admin::Replicas;
use crate::model::team::TeamRole;
use crate::store::admin::ProjectOverview;

#[test]
fn the_create_dialog_chooses_a_team_with_the_arrows() {
    let mut a = app();
    assert_eq!(
        keys(&mut a, &[Key::Char('n')]),
        vec![Effect::LoadTeams, Effect::LoadTemplates]
    );
    typed(&mut a, "site");
    // No teams yet: Tab cycles the other fields only.
    keys(&mut a, &[Key::Tab, Key::Tab, Key::Tab, Key::Tab, Key::Tab]);
    let Some(Overlay::Create(f)) = &a.overlay else {
        panic!()
    };
    assert_eq!(f.focus, crate::tui::screens::forms::CreateField::Name);
    a.update(Msg::Teams(vec!["acme".into(), "zeta".into()]));
    keys(&mut a, &[Key::Tab, Key::Tab]);
    // On the owner field, letters are refused and arrows choose.
    typed(&mut a, "x");
    assert!(a.status.as_ref().unwrap().text.contains("choose the owner"));
    assert!(
        a.bindings().iter().any(|b| b.key == Key::Right),
        "→ is listed while the owner field has focus"
    );
    keys(&mut a, &[Key::Right, Key::Right, Key::Left]);
    assert_eq!(
        keys(&mut a, &[Key::Enter]),
        vec![Effect::Create {
            name: "site".into(),
            description: String::new(),
            repo: String::new(),
            branch: String::new(),
            template: String::new(),
            team: Some("acme".into()),
        }]
    );
    assert!(a.status.as_ref().unwrap().text.contains("acme/site"));
    // Left from me wraps to the last team; Shift-Tab reaches the owner too
    // (back through template, branch and repository).
    keys(&mut a, &[Key::Char('n')]);
    a.update(Msg::Teams(vec!["acme".into(), "zeta".into()]));
    typed(&mut a, "b");
    keys(
        &mut a,
        &[
            Key::BackTab,
            Key::BackTab,
            Key::BackTab,
            Key::BackTab,
            Key::Left,
        ],
    );
    let Some(Effect::Create { team, .. }) = keys(&mut a, &[Key::Enter]).pop() else {
        panic!()
    };
    assert_eq!(team.as_deref(), Some("zeta"));
}

#[test]
fn a_viewers_env_and_intent_keys_say_which_role_they_need() {
    let mut a = app();
    let mut v = project(9, "acme/blog", ProjectStatus::Running, 10);
    v.team_role = Some(TeamRole::Viewer);
    a.update(Msg::Projects(vec![v]));
    select(&mut a, "acme/blog");
    for (key, what) in [('e', "env"), ('x', "stop"), ('d', "delete")] {
        assert_eq!(keys(&mut a, &[Key::Char(key)]), vec![]);
        assert_eq!(
            a.status.as_ref().unwrap().text,
            format!("you are a viewer of this team: {what} needs the member role")
        );
    }
    assert_eq!(a.screen, Screen::List);
    // Attach is allowed, read-only.
    assert_eq!(
        keys(&mut a, &[Key::Char('a')]),
        vec![Effect::Attach {
            project: "acme/blog".into(),
            session: None,
            read_only: true,
        }]
    );
}

fn overview() -> AdminOverview {
    AdminOverview {
        users: vec![],
        projects: vec![ProjectOverview {
            owner: "alice".into(),
            team: false,
            name: "blog".into(),
            status: ProjectStatus::Running,
            last_error: None,
            updated_at: chrono::Utc::now(),
        }],
        replicas: Replicas {
            lease_holders: vec![],
            queue_depth: 0,
        },
    }
}

#[test]
fn only_an_admin_has_the_admin_screen() {
    let mut a = app();
    assert!(!a.bindings().iter().any(|b| b.action == Action::Admin));
    assert_eq!(keys(&mut a, &[Key::Char('A')]), vec![]);
    assert!(
        a.status
            .as_ref()
            .unwrap()
            .text
            .contains("does nothing here")
    );
    assert_eq!(a.screen, Screen::List);

    a.set_admin(true);
    assert!(
        a.bindings()
            .iter()
            .any(|b| b.action == Action::Admin && b.footer)
    );
    assert_eq!(keys(&mut a, &[Key::Char('A')]), vec![Effect::LoadAdmin]);
    assert_eq!(a.screen, Screen::Admin);
    // Nothing loaded: no project to stop.
    assert_eq!(keys(&mut a, &[Key::Char('x')]), vec![]);
    a.update(Msg::Admin(Box::new(overview())));
    assert_eq!(
        keys(&mut a, &[Key::Char('x')]),
        vec![Effect::AdminIntent {
            project: "alice/blog".into(),
            intent: Intent::Stop,
        }]
    );
    // A running project cannot be retried; the reason is the intents table's.
    assert_eq!(keys(&mut a, &[Key::Char('r')]), vec![]);
    assert!(a.status.as_ref().unwrap().error);
    // Its answer reloads the screen; on users, x has no project.
    assert_eq!(
        a.update(Msg::Done(Reply::Admin, Ok("stop requested".into()))),
        vec![Effect::LoadAdmin]
    );
    // Other tenants' changes reach no feed of the admin's: it polls.
    assert_eq!(a.update(Msg::PollSessions), vec![Effect::LoadAdmin]);
    keys(&mut a, &[Key::Tab]);
    assert_eq!(keys(&mut a, &[Key::Char('x')]), vec![]);
    keys(&mut a, &[Key::Esc]);
    assert!(a.update(Msg::PollSessions).is_empty());
    assert_eq!(a.screen, Screen::List);
}
