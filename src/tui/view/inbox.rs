//! The inbox: every session that needs the user, across their projects,
//! oldest wait first, with Claude's message. Enter attaches to it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::style::Theme;
use crate::model::agent::short_duration;
use crate::tui::screens::Ctx;
use crate::tui::screens::agents::AgentsScreen;
use crate::tui::text;

const PROJECT_W: u16 = 24;
const SESSION_W: u16 = 10;
const WAIT_W: u16 = 8;

pub fn draw(agents: &AgentsScreen, ctx: Ctx, theme: Theme, frame: &mut Frame, area: Rect) {
    let inbox = agents.inbox();
    let title = format!(" Inbox ({}) — sessions that need you ", inbox.len());
    let block = Block::bordered().title(Span::styled(title, theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inbox.is_empty() {
        let msg = match agents.rows {
            None => " Loading…",
            Some(_) => " Nothing needs you. Esc goes back.",
        };
        frame.render_widget(Paragraph::new(Line::styled(msg, theme.dim())), inner);
        return;
    }
    let message_w = inner
        .width
        .saturating_sub(2 + PROJECT_W + SESSION_W + WAIT_W + 3);
    let rows = inbox.iter().map(|r| {
        let wait = short_duration((ctx.now - r.entered_at).num_seconds());
        Row::new(vec![
            Cell::from(text::fit(&r.project, PROJECT_W.into())),
            Cell::from(text::fit(
                r.session.as_deref().unwrap_or("default"),
                SESSION_W.into(),
            )),
            Cell::from(Span::styled(
                format!("{} {wait}", r.state.glyph()),
                theme.agent(r.state),
            )),
            Cell::from(text::fit(&r.message, message_w.into())),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(PROJECT_W),
            Constraint::Length(SESSION_W),
            Constraint::Length(WAIT_W),
            Constraint::Length(message_w),
        ],
    )
    .header(Row::new(vec!["PROJECT", "SESSION", "WAITING", "MESSAGE"]).style(theme.title()))
    .row_highlight_style(theme.selected())
    .highlight_symbol("▶ ")
    .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(Some(agents.selected));
    frame.render_stateful_widget(table, inner, &mut state);
}
