//! The notifications screen (newest first: kind, project, text, age; Enter
//! opens the project), the header's unread count, and the banner the list
//! and detail screens show while an idle stop is coming.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::style::{Theme, age};
use crate::model::idle::time_left;
use crate::model::notice::label_of;
use crate::tui::screens::Ctx;
use crate::tui::screens::notifications::NotificationsScreen;
use crate::tui::text;

const KIND_W: u16 = 15;
const PROJECT_W: u16 = 20;
const AGE_W: u16 = 5;

pub fn draw(n: &NotificationsScreen, ctx: Ctx, theme: Theme, frame: &mut Frame, area: Rect) {
    let title = " Notifications — newest first; Enter opens the project ";
    let block = Block::bordered().title(Span::styled(title, theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = match &n.rows {
        None => {
            frame.render_widget(
                Paragraph::new(Line::styled(" Loading…", theme.dim())),
                inner,
            );
            return;
        }
        Some(rows) if rows.is_empty() => {
            let msg = " No notifications. Esc goes back.";
            frame.render_widget(Paragraph::new(Line::styled(msg, theme.dim())), inner);
            return;
        }
        Some(rows) => rows,
    };
    let text_w = inner
        .width
        .saturating_sub(2 + 2 + KIND_W + PROJECT_W + AGE_W + 3);
    let table_rows = rows.iter().map(|r| {
        let mark = if r.unread { "●" } else { " " };
        Row::new(vec![
            Cell::from(Span::styled(mark, theme.warn())),
            Cell::from(Span::styled(
                text::fit(label_of(&r.kind), KIND_W.into()),
                kind_style(&r.kind, theme),
            )),
            Cell::from(text::fit(
                r.project.as_deref().unwrap_or("(deleted)"),
                PROJECT_W.into(),
            )),
            Cell::from(text::fit(&r.message, text_w.into())),
            Cell::from(Span::styled(age(ctx.now, r.created_at), theme.dim())),
        ])
    });
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(1),
            Constraint::Length(KIND_W),
            Constraint::Length(PROJECT_W),
            Constraint::Length(text_w),
            Constraint::Length(AGE_W),
        ],
    )
    .header(Row::new(vec!["", "KIND", "PROJECT", "TEXT", "AGE"]).style(theme.title()))
    .row_highlight_style(theme.selected())
    .highlight_symbol("▶ ")
    .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(Some(n.selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

fn kind_style(kind: &str, theme: Theme) -> ratatui::style::Style {
    use crate::model::notice::NoticeKind as K;
    match K::parse(kind) {
        Some(K::ProjectFailed | K::CloneFailed | K::SetupFailed) => theme.error(),
        Some(K::IdleWarning | K::NeedsInput) => theme.warn(),
        _ => theme.ok(),
    }
}

/// The header's unread count, e.g. ` · ✉ 3 unread (N)`; empty when none.
pub fn unread_label(unread: i64) -> String {
    if unread > 0 {
        format!(" · ✉ {unread} unread (N)")
    } else {
        String::new()
    }
}

/// A project's idle stop in a few words, for the detail screen:
/// `idle stop after 1d unused, in 23h 59m` (the server's time), `… (own
/// setting) …`, or `never stopped when idle`. (Not the word "default":
/// that names the default session on this screen.)
pub fn idle_summary(s: &crate::store::idle::IdleState, now: DateTime<Utc>) -> String {
    let Some(after) = s.stop_after_secs else {
        return "never stopped when idle".into();
    };
    let after = crate::model::idle::format_duration(std::time::Duration::from_secs(after));
    let own = match s.own {
        crate::model::idle::IdleSetting::After(_) => " (own setting)",
        _ => "",
    };
    match s.stop_at.or(s.due_at) {
        Some(at) => format!(
            "idle stop after {after} unused{own}, in {}",
            time_left(now, at)
        ),
        None => format!("idle stop after {after} unused{own}"),
    }
}

/// The banner line for the coming idle stops (soonest first), e.g.
/// `⚠ idle: blog stops in 4m 12s — E extends`; `None` when none is coming.
pub fn idle_banner(stops: &[(&str, DateTime<Utc>)], now: DateTime<Utc>) -> Option<String> {
    let (name, at) = stops.first()?;
    let more = match stops.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Some(format!(
        " ⚠ idle: {} stops in {}{more} unless used — E extends it",
        text::clean(name),
        time_left(now, *at)
    ))
}

/// Draws the banner over the first row of `area`; returns the rest.
pub fn draw_idle_banner(
    stops: &[(&str, DateTime<Utc>)],
    now: DateTime<Utc>,
    theme: Theme,
    frame: &mut Frame,
    area: Rect,
) -> Rect {
    let Some(line) = idle_banner(stops, now) else {
        return area;
    };
    let [banner, rest] =
        ratatui::layout::Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    frame.render_widget(
        Paragraph::new(Line::styled(
            text::fit(&line, banner.width.into()),
            theme.warn(),
        )),
        banner,
    );
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_the_soonest_stop_and_the_key() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        let at = |s: i64| DateTime::from_timestamp(1_000 + s, 0).unwrap();
        assert_eq!(idle_banner(&[], now), None);
        let one = idle_banner(&[("blog", at(252))], now).unwrap();
        assert_eq!(
            one,
            " ⚠ idle: blog stops in 4m 12s unless used — E extends it"
        );
        let two = idle_banner(&[("blog", at(5)), ("api", at(60))], now).unwrap();
        assert!(two.contains("blog stops in 5s (and 1 more)"), "{two}");
        assert_eq!(unread_label(0), "");
        let state = crate::store::idle::IdleState {
            setting: "default".into(),
            own: crate::model::idle::IdleSetting::Default,
            stop_after_secs: Some(86_400),
            last_active_at: Some(now),
            extended_until: None,
            stop_at: None,
            due_at: Some(at(3_600)),
        };
        assert_eq!(
            idle_summary(&state, now),
            "idle stop after 1d unused, in 1h 00m"
        );
        let off = crate::store::idle::IdleState {
            setting: "off".into(),
            own: crate::model::idle::IdleSetting::Off,
            stop_after_secs: None,
            due_at: None,
            ..state
        };
        assert_eq!(idle_summary(&off, now), "never stopped when idle");
        let own = crate::store::idle::IdleState {
            own: crate::model::idle::IdleSetting::After(std::time::Duration::from_secs(60)),
            stop_after_secs: Some(60),
            due_at: None,
            ..off
        };
        assert_eq!(
            idle_summary(&own, now),
            "idle stop after 1m unused (own setting)"
        );
        assert_eq!(unread_label(3), " · ✉ 3 unread (N)");
    }
}
