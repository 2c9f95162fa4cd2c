//! The projects list (home screen).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::style::{Theme, age, status_label};
use crate::model::ProjectStatus;
use crate::store::projects::ProjectView;
use crate::store::resources::ResourceKind;
use crate::tui::screens::Ctx;
use crate::tui::screens::agents::AgentsScreen;
use crate::tui::screens::list::ListScreen;
use crate::tui::text;

const STATUS_W: u16 = 14;
const SUB_W: u16 = 13;
const AGE_W: u16 = 4;
const MARK_W: u16 = 1;
/// The agent's glyph, state and time in it: `? needs_input 12m`; in a
/// narrow window the glyph and the time only (`? 12m`), so names keep room.
const AGENT_W: u16 = 17;
const AGENT_NARROW_W: u16 = 5;
/// Wide enough for a description column too.
const WIDE: u16 = 120;

pub fn draw(
    app: &ListScreen,
    agents: &AgentsScreen,
    ctx: Ctx,
    theme: Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let visible = app.visible();
    let total = app.projects.as_ref().map_or(0, Vec::len);
    let title = if app.filtering || !app.filter.is_empty() {
        let cursor = if app.filtering { "▏" } else { "" };
        format!(
            " Projects ({}/{total}) — filter: {}{cursor} ",
            visible.len(),
            text::tail(&app.filter, 30)
        )
    } else {
        format!(" Projects ({total}) ")
    };
    let block = Block::bordered().title(Span::styled(title, theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let empty = match &app.projects {
        None => Some("Loading projects…".to_string()),
        Some(all) if all.is_empty() => Some("No projects yet — press n to create one".into()),
        Some(_) if visible.is_empty() => Some(format!(
            "No project matches “{}” — Esc clears the filter",
            text::fit(&app.filter, 30)
        )),
        Some(_) => None,
    };
    if let Some(msg) = empty {
        let line = Line::styled(format!(" {msg}"), theme.dim());
        frame.render_widget(Paragraph::new(line), inner);
        return;
    }

    let wide = inner.width >= WIDE;
    let agent_w = if wide { AGENT_W } else { AGENT_NARROW_W };
    // Name (and description when wide) share what the fixed columns leave.
    let fixed = 2 + STATUS_W + SUB_W * 2 + AGE_W + MARK_W + agent_w + 7;
    let flexible = inner.width.saturating_sub(fixed);
    let (name_w, desc_w) = if wide {
        (flexible * 2 / 5, flexible - flexible * 2 / 5 - 1)
    } else {
        (flexible, 0)
    };
    let mut widths = vec![
        Constraint::Length(name_w),
        Constraint::Length(STATUS_W),
        Constraint::Length(SUB_W),
        Constraint::Length(SUB_W),
        Constraint::Length(AGE_W),
        Constraint::Length(MARK_W),
        Constraint::Length(agent_w),
    ];
    let mut head = vec!["NAME", "STATUS", "SANDBOX", "DATABASE", "AGE", "!", "AGENT"];
    if wide {
        widths.push(Constraint::Length(desc_w));
        head.push("DESCRIPTION");
    }
    let rows = visible
        .iter()
        .map(|v| row(ctx, theme, v, agents, name_w.into(), desc_w.into(), wide));
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(theme.title()))
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶ ")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

fn row<'a>(
    ctx: Ctx,
    theme: Theme,
    v: &ProjectView,
    agents: &AgentsScreen,
    name_w: usize,
    desc_w: usize,
    wide: bool,
) -> Row<'a> {
    let p = &v.project;
    let sub = |kind: ResourceKind| -> Cell<'a> {
        match v.resources.iter().find(|r| r.kind == kind) {
            Some(r) => {
                let s = ProjectStatus::from(r.status);
                Cell::from(Span::styled(status_label(s, ctx.tick), theme.status(s)))
            }
            None => Cell::from(Span::styled("–", theme.dim())),
        }
    };
    let failed = v.resources.iter().any(|r| r.last_error.is_some());
    let mut cells = vec![
        Cell::from(text::fit(&p.name, name_w)),
        Cell::from(Span::styled(
            status_label(p.status, ctx.tick),
            theme.status(p.status),
        )),
        sub(ResourceKind::Sandbox),
        sub(ResourceKind::Database),
        Cell::from(age(ctx.now, p.created_at)),
        Cell::from(if failed {
            Span::styled("!", theme.error())
        } else {
            Span::raw(" ")
        }),
        Cell::from(Line::from(vec![
            // A muted project's agents ring no bell: marked by a shape of its own.
            if p.agent_muted {
                Span::styled(format!("{MUTED} "), theme.dim())
            } else {
                Span::raw("")
            },
            match agents.headline(p.id) {
                Some(a) if wide => agent_span(ctx, theme, a),
                Some(a) => Span::styled(
                    format!(
                        "{} {}",
                        a.state.glyph(),
                        crate::model::agent::short_duration((ctx.now - a.entered_at).num_seconds())
                    ),
                    theme.agent(a.state),
                ),
                None => Span::styled("·", theme.dim()),
            },
        ])),
    ];
    if wide {
        // Descriptions may hold newlines; `fit` turns them into `?` on one row.
        cells.push(Cell::from(Span::styled(
            text::fit(&p.description, desc_w),
            theme.dim(),
        )));
    }
    Row::new(cells)
}

/// Before a muted project's agent state on the list.
pub const MUTED: char = '⊘';

/// `! needs_input 12m`: the glyph (its shape tells the state without
/// colour), the state, and how long it has held.
pub fn agent_span<'a>(ctx: Ctx, theme: Theme, a: &crate::store::agents::AgentRow) -> Span<'a> {
    let since = crate::model::agent::short_duration((ctx.now - a.entered_at).num_seconds());
    Span::styled(
        format!("{} {} {since}", a.state.glyph(), a.state),
        theme.agent(a.state),
    )
}
