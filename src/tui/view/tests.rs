//! Snapshot tests: every screen at 80×24 and 200×50, rendered into
//! `TestBackend` at a fixed time. Reviewed by hand; insta compares.

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::model::ProjectStatus;
use crate::tui::app::{App, Msg};
use crate::tui::fixtures::{self, app, detail, project};
use crate::tui::keys::Key;

const SIZES: [(u16, u16); 2] = [(80, 24), (200, 50)];

fn render(app: &App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| app.view(f)).unwrap();
    terminal.backend().to_string()
}

/// Snapshots `setup`'s app at both sizes, as `{name}_{w}x{h}`.
fn snap(name: &str, setup: impl Fn() -> App) {
    for (w, h) in SIZES {
        let mut a = setup();
        a.update(Msg::Resize(w, h));
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), render(&a, w, h));
    }
}

fn press(a: &mut App, keys: &[Key]) {
    for &k in keys {
        a.update(Msg::Key(k));
    }
}

fn with_detail(mut a: App, view: crate::store::projects::ProjectView) -> App {
    press(&mut a, &[Key::Enter]);
    a.update(Msg::Detail(Box::new(detail(view))));
    a
}

#[test]
fn list_with_several_statuses() {
    snap("list", || {
        let mut a = app();
        a.set_notice("local driver: trusted single-host use");
        a
    });
}

#[test]
fn list_with_a_refusal_in_the_status_line() {
    snap("list_refused", || {
        let mut a = app();
        press(&mut a, &[Key::Char('s')]);
        a
    });
}

#[test]
fn list_filtered() {
    snap("list_filter", || {
        let mut a = app();
        press(&mut a, &[Key::Char('/'), Key::Char('o')]);
        a
    });
}

#[test]
fn empty_list() {
    snap("list_empty", || {
        let mut a = App::new("alice", 80, 24);
        a.set_now(fixtures::now());
        a.update(Msg::Projects(vec![]));
        a
    });
}

#[test]
fn detail_of_a_failed_project() {
    snap("detail_error", || {
        let mut view = project(4, "broken", ProjectStatus::Error, 600);
        view.resources[1].status = crate::model::ResourceStatus::Starting;
        view.resources[1].attempts = 1;
        view.resources[1].lease_owner = Some("kiln-replica-a".into());
        view.resources[1].lease_until = Some(fixtures::now() + chrono::Duration::seconds(20));
        view.resources[1].next_attempt_at = Some(fixtures::now());
        let mut a = app();
        a.list.selected = 2;
        with_detail(a, view)
    });
}

#[test]
fn detail_with_the_password_shown() {
    snap("detail_password", || {
        let mut a = with_detail(app(), project(2, "blog", ProjectStatus::Running, 100));
        press(&mut a, &[Key::Char('p'), Key::Up, Key::Up]);
        a
    });
}

#[test]
fn create_dialog_with_an_error() {
    snap("create_error", || {
        let mut a = app();
        press(&mut a, &[Key::Char('n'), Key::Char('%'), Key::Char('%')]);
        press(&mut a, &[Key::Enter]);
        a
    });
}

#[test]
fn create_dialog_with_a_slug_preview() {
    snap("create_ok", || {
        let mut a = app();
        press(&mut a, &[Key::Char('n')]);
        a.update(Msg::Paste("My Blog!".into()));
        press(&mut a, &[Key::Tab]);
        a.update(Msg::Paste("A place for words".into()));
        a
    });
}

#[test]
fn create_dialog_with_a_repository_and_branch() {
    snap("create_repo", || {
        let mut a = app();
        press(&mut a, &[Key::Char('n')]);
        a.update(Msg::Paste("api".into()));
        press(&mut a, &[Key::Tab, Key::Tab]);
        a.update(Msg::Paste("https://github.com/acme/api.git".into()));
        press(&mut a, &[Key::Tab]);
        a.update(Msg::Paste("kiln/work".into()));
        a
    });
}

#[test]
fn create_dialog_offering_templates() {
    snap("create_template", || {
        use crate::console::{TemplateInfo, TemplateScope};
        let mut a = app();
        press(&mut a, &[Key::Char('n')]);
        a.update(Msg::Templates(vec![TemplateInfo {
            name: "python".into(),
            description: "Python 3 with a virtual environment in .venv".into(),
            scope: TemplateScope::Builtin,
        }]));
        a.update(Msg::Paste("api".into()));
        press(&mut a, &[Key::BackTab, Key::Down]);
        a
    });
}

#[test]
fn create_dialog_refuses_a_local_path_as_repository() {
    snap("create_repo_refused", || {
        let mut a = app();
        press(&mut a, &[Key::Char('n')]);
        a.update(Msg::Paste("api".into()));
        press(&mut a, &[Key::Tab, Key::Tab]);
        a.update(Msg::Paste("file:///etc".into()));
        a
    });
}

#[test]
fn detail_with_its_repository_and_git_state() {
    snap("detail_git", || {
        let mut view = project(2, "blog", ProjectStatus::Running, 100);
        view.project.git_repo = Some("https://github.com/acme/blog.git".into());
        view.project.git_branch = Some("feature".into());
        let mut a = with_detail(app(), view);
        a.update(Msg::Git {
            project: "blog".into(),
            state: Ok(Some(crate::model::git::GitState {
                branch: Some("feature".into()),
                upstream: Some("origin/feature".into()),
                ahead: 2,
                behind: 0,
                changed: 3,
            })),
        });
        a
    });
}

#[test]
fn delete_confirmation() {
    snap("confirm_delete", || {
        let mut a = app();
        press(&mut a, &[Key::Char('d')]);
        a
    });
}

fn env_app() -> App {
    let mut a = app();
    press(&mut a, &[Key::Char('e')]);
    a.update(Msg::Detail(Box::new(detail(project(
        2,
        "blog",
        ProjectStatus::Running,
        100,
    )))));
    a
}

#[test]
fn env_editor() {
    snap("env", env_app);
}

#[test]
fn env_form_with_an_error() {
    snap("env_form", || {
        let mut a = env_app();
        press(&mut a, &[Key::Char('a')]);
        a.update(Msg::Paste("PATH".into()));
        press(&mut a, &[Key::Tab]);
        a.update(Msg::Paste("/usr/bin".into()));
        a
    });
}

#[test]
fn help_overlay() {
    snap("help", || {
        let mut a = app();
        press(&mut a, &[Key::Char('?')]);
        a
    });
}

#[test]
fn too_small() {
    let a = app();
    insta::assert_snapshot!("too_small_79x24", render(&a, 79, 24));
    insta::assert_snapshot!("too_small_120x10", render(&a, 120, 10));
}

#[test]
fn hostile_strings_are_neutralised_and_cut() {
    let evil_name = "evil\x1b[31mred\x07";
    let long = "v".repeat(500);
    let build = || {
        let mut view = project(9, evil_name, ProjectStatus::Running, 100);
        view.project.description = "line1\nline2\x1b[2J".into();
        let mut a = App::new("mallory\x1b[H", 80, 24);
        a.set_now(fixtures::now());
        a.update(Msg::Projects(vec![view.clone()]));
        press(&mut a, &[Key::Char('e')]);
        let mut d = detail(view);
        d.env = vec![
            fixtures::var("COLOR", "\x1b[31mred", false),
            fixtures::var("LONG", &long, false),
        ];
        d.events.push(fixtures::event(
            1,
            evil_name,
            None,
            None,
            "msg\x1b]0;title\x07 end",
        ));
        a.update(Msg::Detail(Box::new(d)));
        a
    };
    for (w, h) in SIZES {
        for screen in ["list", "detail", "env"] {
            let mut a = build();
            a.update(Msg::Resize(w, h));
            match screen {
                "list" => press(&mut a, &[Key::Esc, Key::Esc]),
                "detail" => press(&mut a, &[Key::Esc]),
                _ => {}
            }
            let out = render(&a, w, h);
            assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out}");
            assert!(!out.contains(&long), "500-char value must be cut");
            insta::assert_snapshot!(format!("hostile_{screen}_{w}x{h}"), out);
        }
    }
}

#[test]
fn no_color_mode_renders_no_colours() {
    let mut a = app();
    a.set_no_color(true);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| a.view(f)).unwrap();
    let buf = terminal.backend().buffer();
    for cell in buf.content() {
        assert_eq!(cell.fg, ratatui::style::Color::Reset, "{:?}", cell.symbol());
        assert_eq!(cell.bg, ratatui::style::Color::Reset);
    }
    assert!(
        render(&a, 80, 24).contains("✗ ERROR"),
        "status still readable"
    );
}

#[test]
fn settings_screen() {
    snap("settings", || fixtures::settings_app(fixtures::settings()));
}

#[test]
fn settings_with_the_last_way_in_and_the_settings_section_focused() {
    snap("settings_last_key", || {
        let mut data = fixtures::settings();
        data.keys.truncate(1);
        data.has_password = false;
        data.configs.retain(|c| c.key != "KUBECONFIG");
        let mut a = fixtures::settings_app(data);
        press(&mut a, &[Key::Tab, Key::Down]);
        a
    });
}

#[test]
fn settings_add_key_form_with_a_pasted_key() {
    snap("settings_key_form", || {
        let mut a = fixtures::settings_app(fixtures::settings());
        press(&mut a, &[Key::Char('a')]);
        a.update(Msg::Paste(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com\n"
                .into(),
        ));
        a
    });
}

#[test]
fn settings_password_form_with_a_mismatch() {
    snap("settings_password", || {
        let mut a = fixtures::settings_app(fixtures::settings());
        press(&mut a, &[Key::Char('p')]);
        a.update(Msg::Paste("correct horse".into()));
        press(&mut a, &[Key::Tab]);
        a.update(Msg::Paste("correct hors".into()));
        a
    });
}

#[test]
fn settings_add_secret_form() {
    snap("settings_config_form", || {
        let mut a = fixtures::settings_app(fixtures::settings());
        press(&mut a, &[Key::Tab, Key::Char('a')]);
        a.update(Msg::Paste("ANTHROPIC_API_KEY".into()));
        press(&mut a, &[Key::Tab]);
        a.update(Msg::Paste("sk-ant-do-not-show".into()));
        a
    });
}

#[test]
fn settings_help_overlay() {
    snap("settings_help", || {
        let mut a = fixtures::settings_app(fixtures::settings());
        press(&mut a, &[Key::Tab, Key::Char('?')]);
        a
    });
}

#[test]
fn settings_never_draw_secret_values_or_passwords() {
    for (w, h) in SIZES {
        let mut a = fixtures::settings_app(fixtures::settings());
        a.update(Msg::Resize(w, h));
        let out = render(&a, w, h);
        assert!(!out.contains("sk-ant-very-secret") && !out.contains("apiVersion"));
        press(&mut a, &[Key::Char('p')]);
        a.update(Msg::Paste("hunter2hunter2".into()));
        assert!(!render(&a, w, h).contains("hunter2"));
    }
}

/// A running default session with a viewer, an exited named one and a
/// running one, as the detail screen gets them.
fn sessions() -> Vec<crate::driver::SessionInfo> {
    use crate::driver::{SessionInfo, SessionState};
    vec![
        SessionInfo {
            name: None,
            last_activity: Some(fixtures::now().timestamp() - 5),
            viewers: 1,
            state: SessionState::Running,
        },
        SessionInfo {
            name: Some("s1".into()),
            last_activity: Some(fixtures::now().timestamp() - 180),
            viewers: 0,
            state: SessionState::Exited { status: Some(1) },
        },
        SessionInfo {
            name: Some("work".into()),
            last_activity: Some(fixtures::now().timestamp() - 7200),
            viewers: 2,
            state: SessionState::Running,
        },
    ]
}

fn with_sessions(mut a: App) -> App {
    press(&mut a, &[Key::Enter]);
    let view = a.list.visible()[0].clone();
    let mut d = detail(view);
    d.sessions = sessions();
    a.update(Msg::Detail(Box::new(d)));
    a
}

#[test]
fn detail_lists_the_sandboxs_sessions() {
    let mut a = with_sessions(app());
    a.update(Msg::Resize(120, 40));
    let screen = render(&a, 120, 40);
    for want in [
        "▸ default              running             1 viewer   active 5s ago",
        "  s1                   exited (status 1)              active 3m ago",
        "  work                 running             2 viewers  active 2h ago",
        "R restarts an exited one",
    ] {
        assert!(screen.contains(want), "{want:?} in\n{screen}");
    }
}

#[test]
fn detail_with_an_exited_session_selected() {
    // Tab moves onto the exited session: R restarts it, and the footer says so.
    snap("detail_sessions", || {
        let mut a = with_sessions(app());
        press(&mut a, &[Key::Tab]);
        a
    });
}

#[test]
fn attaching_to_an_exited_session_offers_a_restart() {
    snap("confirm_restart", || {
        let mut a = with_sessions(app());
        press(&mut a, &[Key::Tab, Key::Char('a')]);
        a
    });
}

/// The last row of `text` (the footer).
fn footer(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

#[test]
fn the_pane_footer_tells_a_read_only_viewer_its_keys_go_nowhere() {
    let opened = |read_only| {
        let mut a = app();
        a.update(Msg::Resize(200, 30));
        a.update(Msg::PaneOpened {
            project: "blog".into(),
            session: "blog-agentruntime-abc123".into(),
            name: None,
            read_only,
        });
        render(&a, 200, 30)
    };
    let viewer = opened(true);
    let line = footer(&viewer);
    assert!(
        line.contains("read-only: your keys are not sent"),
        "{viewer}"
    );
    assert!(line.contains("Ctrl-] w switch"), "{viewer}");
    for missing in [
        "history",
        "new session",
        "restart",
        "keys go to the session",
    ] {
        assert!(!line.contains(missing), "{missing}: {viewer}");
    }
    let writer = opened(false);
    let line = footer(&writer);
    assert!(line.contains("keys go to the session"), "{writer}");
    assert!(line.contains("Ctrl-] [ history (q leaves)"), "{writer}");
}

#[test]
fn a_list_that_cannot_be_refreshed_says_why_until_it_is() {
    let mut a = app();
    a.set_notice("local driver: trusted single-host use");
    a.update(Msg::ProjectsStale(
        "the database is unavailable right now (retrying)".into(),
    ));
    let shown = render(&a, 100, 24);
    assert!(
        shown.contains("⚠ the database is unavailable right now"),
        "{shown}"
    );
    assert!(shown.contains("blog"), "the list stays: {shown}");
    a.update(Msg::Projects(fixtures::projects()));
    let shown = render(&a, 100, 24);
    assert!(!shown.contains("unavailable"), "{shown}");
    assert!(shown.contains("trusted single-host use"), "{shown}");
}

/// Agent states of the fixture's first two projects: blog waits for the
/// user (since 4 minutes), shop's default session works and its `s1`
/// waits too (since 1 minute).
fn with_agents(mut a: App) -> App {
    use crate::model::agent::AgentState;
    use crate::store::agents::AgentRow;
    let list = a.list.visible().into_iter().cloned().collect::<Vec<_>>();
    let row = |i: usize, session: Option<&str>, state, mins: i64, message: &str| AgentRow {
        team_role: None,
        project_id: list[i].project.id,
        project: list[i].project.name.clone(),
        slug: list[i].project.slug.clone(),
        session: session.map(str::to_string),
        state,
        message: message.into(),
        entered_at: fixtures::now() - chrono::Duration::minutes(mins),
        muted: false,
    };
    a.update(Msg::Agents(vec![
        row(
            0,
            None,
            AgentState::NeedsInput,
            4,
            "Claude needs your permission to use Bash",
        ),
        row(1, None, AgentState::Working, 2, ""),
        row(
            1,
            Some("s1"),
            AgentState::NeedsInput,
            1,
            "Allow edits to src/main.rs?",
        ),
    ]));
    a
}

#[test]
fn the_list_shows_agent_glyphs_and_the_header_counts_who_needs_you() {
    snap("list_agents", || {
        let mut a = with_agents(app());
        a.set_no_color(true);
        a
    });
    let mut a = with_agents(app());
    a.set_no_color(true);
    a.update(Msg::Resize(140, 30));
    let screen = render(&a, 140, 30);
    assert!(screen.contains("? 2 need you"), "{screen}");
    let blog = screen.lines().find(|l| l.contains("blog")).unwrap();
    assert!(blog.contains("? needs_input 4m"), "{blog}");
}

#[test]
fn the_inbox_lists_waits_oldest_first_and_enter_attaches_to_that_session() {
    snap("inbox", || {
        let mut a = with_agents(app());
        press(&mut a, &[Key::Char('i')]);
        a
    });
    let mut a = with_agents(app());
    press(&mut a, &[Key::Char('i'), Key::Down]);
    let effects = a.update(Msg::Key(Key::Enter));
    assert_eq!(
        effects,
        vec![crate::tui::app::Effect::Attach {
            project: a.agents.inbox()[1].project.clone(),
            session: Some("s1".into()),
            read_only: false,
        }]
    );
}

#[test]
fn a_muted_project_is_marked_in_its_row_by_a_shape() {
    let mut a = fixtures::app();
    let mut projects = fixtures::projects();
    for p in &mut projects {
        p.project.agent_muted = p.project.name == "blog";
    }
    a.update(Msg::Projects(projects));
    for (w, h) in SIZES {
        let screen = render(&a, w, h);
        let row = |name: &str| {
            screen
                .lines()
                .find(|l| l.contains(&format!(" {name} ")))
                .unwrap_or_else(|| panic!("{name} in {screen}"))
                .to_string()
        };
        assert!(
            row("blog").contains(crate::tui::view::list::MUTED),
            "{screen}"
        );
        assert!(
            !row("shop").contains(crate::tui::view::list::MUTED),
            "{screen}"
        );
    }
}
