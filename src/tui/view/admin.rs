//! The admin screen: a summary line (users, projects, replicas, queue
//! depth), then one section at a time (projects, users, replicas), Tab to
//! the next. Pure: drawn from `AdminScreen` alone.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::style::{Theme, age, status_label};
use crate::console::AdminOverview;
use crate::tui::screens::Ctx;
use crate::tui::screens::admin::{AdminScreen, AdminSection};
use crate::tui::text;

pub fn draw(s: &AdminScreen, ctx: Ctx, theme: Theme, frame: &mut Frame, area: Rect) {
    let tabs: Vec<Span> = [
        AdminSection::Projects,
        AdminSection::Users,
        AdminSection::Replicas,
    ]
    .into_iter()
    .flat_map(|sec| {
        let style = if sec == s.section {
            theme.selected()
        } else {
            theme.dim()
        };
        [
            Span::styled(format!(" {} ", sec.title()), style),
            Span::raw(" "),
        ]
    })
    .collect();
    let mut title = vec![Span::styled(" Admin ", theme.title())];
    title.extend(tabs);
    let block = Block::bordered().title(Line::from(title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(d) = &s.data else {
        frame.render_widget(
            Paragraph::new(Line::styled(" Loading…", theme.dim())),
            inner,
        );
        return;
    };
    let [summary, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    frame.render_widget(
        Paragraph::new(Line::styled(
            text::fit(&summary_line(d), inner.width.into()),
            theme.dim(),
        )),
        summary,
    );
    let w = usize::from(body.width);
    let (header, widths, rows): (Vec<&str>, Vec<Constraint>, Vec<Row>) = match s.section {
        AdminSection::Projects => {
            let err_w = w.saturating_sub(2 + 32 + 13 + 6 + 3);
            let rows = d
                .projects
                .iter()
                .map(|p| {
                    let name = crate::model::team::qualified(&p.owner, &p.name);
                    let owner = if p.team {
                        format!("{name} (team)")
                    } else {
                        name
                    };
                    Row::new(vec![
                        Cell::from(text::fit(&owner, 32)),
                        Cell::from(Span::styled(
                            status_label(p.status, ctx.tick),
                            theme.status(p.status),
                        )),
                        Cell::from(age(ctx.now, p.updated_at)),
                        Cell::from(Span::styled(
                            text::fit(p.last_error.as_deref().unwrap_or(""), err_w),
                            theme.error(),
                        )),
                    ])
                })
                .collect();
            (
                vec!["OWNER/PROJECT", "STATUS", "AGE", "LAST ERROR"],
                vec![
                    Constraint::Length(32),
                    Constraint::Length(13),
                    Constraint::Length(6),
                    Constraint::Min(10),
                ],
                rows,
            )
        }
        AdminSection::Users => {
            let rows =
                d.users
                    .iter()
                    .map(|u| {
                        Row::new(vec![
                            Cell::from(text::fit(&u.username, 24)),
                            Cell::from(u.role.clone()),
                            Cell::from(if u.disabled { "disabled" } else { "active" }),
                            Cell::from(u.projects.to_string()),
                            Cell::from(u.last_sign_in.map_or("never".to_string(), |t| {
                                format!("{} ago", age(ctx.now, t))
                            })),
                        ])
                    })
                    .collect();
            (
                vec!["USER", "ROLE", "STATE", "PROJECTS", "LAST SIGN-IN"],
                vec![
                    Constraint::Length(24),
                    Constraint::Length(7),
                    Constraint::Length(9),
                    Constraint::Length(9),
                    Constraint::Min(10),
                ],
                rows,
            )
        }
        AdminSection::Replicas => {
            let rows = d
                .replicas
                .lease_holders
                .iter()
                .map(|h| {
                    Row::new(vec![
                        Cell::from(text::fit(&h.owner, 40)),
                        Cell::from(h.leases.to_string()),
                        Cell::from(
                            h.until
                                .map_or(String::new(), |t| super::style::until(ctx.now, t)),
                        ),
                    ])
                })
                .collect();
            (
                vec!["REPLICA", "LEASES", "UNTIL"],
                vec![
                    Constraint::Length(40),
                    Constraint::Length(7),
                    Constraint::Min(8),
                ],
                rows,
            )
        }
    };
    if rows.is_empty() {
        let empty = match s.section {
            AdminSection::Projects => " No projects.",
            AdminSection::Users => " No users.",
            AdminSection::Replicas => " No replica holds a lease right now.",
        };
        frame.render_widget(Paragraph::new(Line::styled(empty, theme.dim())), body);
        return;
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.title()))
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶ ")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(Some(s.selected));
    frame.render_stateful_widget(table, body, &mut state);
}

/// "3 users · 12 projects (2 in ERROR) · 2 replicas hold 7 leases · queue 4"
pub fn summary_line(d: &AdminOverview) -> String {
    let errors = d
        .projects
        .iter()
        .filter(|p| p.status == crate::model::ProjectStatus::Error)
        .count();
    let leases: i64 = d.replicas.lease_holders.iter().map(|h| h.leases).sum();
    format!(
        " {} users · {} projects ({errors} in ERROR) · {} replicas hold {leases} leases · queue depth {}",
        d.users.len(),
        d.projects.len(),
        d.replicas.lease_holders.len(),
        d.replicas.queue_depth
    )
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::console::admin::Replicas;
    use crate::model::ProjectStatus;
    use crate::store::admin::{ProjectOverview, UserOverview};
    use crate::store::status::LeaseHolder;

    fn screen(section: AdminSection) -> String {
        let now = chrono::DateTime::<chrono::Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let s = AdminScreen {
            data: Some(AdminOverview {
                users: vec![UserOverview {
                    username: "alice".into(),
                    role: "member".into(),
                    disabled: false,
                    projects: 2,
                    last_sign_in: Some(now - chrono::Duration::minutes(5)),
                }],
                projects: vec![ProjectOverview {
                    owner: "acme".into(),
                    team: true,
                    name: "blog".into(),
                    status: ProjectStatus::Error,
                    last_error: Some("image pull failed\x1b[31m".into()),
                    updated_at: now,
                }],
                replicas: Replicas {
                    lease_holders: vec![LeaseHolder {
                        owner: "replica-1".into(),
                        leases: 7,
                        until: Some(now + chrono::Duration::seconds(20)),
                    }],
                    queue_depth: 4,
                },
            }),
            section,
            selected: 0,
        };
        let mut t = Terminal::new(TestBackend::new(100, 8)).unwrap();
        let ctx = Ctx { now, tick: 0 };
        let theme = Theme { no_color: true };
        t.draw(|f| draw(&s, ctx, theme, f, f.area())).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn each_section_shows_what_the_admin_acts_on() {
        let p = screen(AdminSection::Projects);
        assert!(
            p.contains(
                "1 users · 1 projects (1 in ERROR) · 1 replicas hold 7 leases · queue depth 4"
            ),
            "{p}"
        );
        assert!(p.contains("acme/blog (team)") && p.contains("ERROR"), "{p}");
        // Text from outside is made harmless.
        assert!(
            p.contains("image pull failed?[31m") && !p.contains('\x1b'),
            "{p}"
        );
        let u = screen(AdminSection::Users);
        assert!(
            u.contains("alice") && u.contains("active") && u.contains("5m ago"),
            "{u}"
        );
        let r = screen(AdminSection::Replicas);
        assert!(r.contains("replica-1") && r.contains("in 20s"), "{r}");
    }
}
