//! `update` tests: keys in, effects and visible state out.

use super::*;
use crate::model::ProjectStatus;
use crate::model::intent::Intent;
use crate::tui::fixtures::{self, app, detail, project};
use crate::tui::keys::{Action, Context};
use crate::tui::screens::forms::{ConfigForm, EnvField, EnvForm};
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

mod detail;
mod dialogs;
mod env;
mod list;
mod pane;
mod replies;
mod settings;
mod teams;
