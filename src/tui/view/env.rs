//! The env editor: the project's variables, secrets masked.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};

use super::style::Theme;
use crate::store::env::EnvVar;
use crate::tui::screens::detail::DetailScreen;
use crate::tui::screens::env::EnvScreen;
use crate::tui::text;

/// `KEY=value` for one line of `w` columns; secrets never show their value.
pub fn var_text(var: &EnvVar, w: usize) -> String {
    let key = text::fit(&var.key, 40);
    if var.is_secret {
        format!("{key}={}  (secret)", text::MASK)
    } else {
        let room = w.saturating_sub(text::width(&key) + 6);
        format!("{key}={}", text::fit(var.value.expose_str(), room))
    }
}

pub fn draw(env: &EnvScreen, app: &DetailScreen, theme: Theme, frame: &mut Frame, area: Rect) {
    let name = app.open.as_deref().unwrap_or("");
    let block = Block::bordered().title(Span::styled(
        format!(" Environment — {} ", text::fit(name, 50)),
        theme.title(),
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(d) = &app.data else {
        frame.render_widget(
            Paragraph::new(Line::styled(" Loading…", theme.dim())),
            inner,
        );
        return;
    };
    let [state, hint, list] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let w = usize::from(inner.width);
    let line = app.env_state().unwrap_or_else(|| "no sandbox".into());
    frame.render_widget(
        Paragraph::new(Line::raw(text::fit(&format!(" {line}"), w))),
        state,
    );
    frame.render_widget(
        Paragraph::new(Line::styled(
            text::fit(
                " DATABASE_URL and PROJECT_NAME are set by Kiln and not listed here",
                w,
            ),
            theme.dim(),
        )),
        hint,
    );
    if d.env.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                " No variables yet — press a to add one",
                theme.dim(),
            )),
            list,
        );
        return;
    }
    let items: Vec<ListItem> = d
        .env
        .iter()
        .map(|v| ListItem::new(Line::raw(var_text(v, w.saturating_sub(2)))))
        .collect();
    let widget = List::new(items)
        .highlight_style(theme.selected())
        .highlight_symbol("▶ ")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut st = ListState::default().with_selected(Some(env.selected));
    frame.render_stateful_widget(widget, list, &mut st);
}
