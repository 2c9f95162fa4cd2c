//! Rendering: one module per screen, each drawing from that screen's own
//! state (`tui::screens`) and never from `App`; here, the parts around every
//! screen (header, status line, footer). `App::view` puts them together.
//! All text that came from outside goes through `tui::text` first.

pub mod admin;
pub mod detail;
pub mod dialogs;
pub mod env;
pub mod inbox;
pub mod list;
pub mod notifications;
pub mod owner;
pub mod settings;
pub mod style;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::keys::Binding;
use crate::tui::screens::StatusLine;
use crate::tui::text;
use style::Theme;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Whether the window is too small for any layout; then it says so.
pub fn too_small(theme: Theme, frame: &mut Frame) -> bool {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        // A broken layout is worse than none: one line that says what to do.
        let msg = format!(
            "window too small: {}×{} (need {MIN_WIDTH}×{MIN_HEIGHT})",
            area.width, area.height
        );
        let line = Line::styled(text::fit(&msg, area.width.into()), theme.warn());
        frame.render_widget(Paragraph::new(line), area);
        return true;
    }
    false
}

/// Header, body, status line and footer rows.
pub fn rows(area: Rect) -> [Rect; 4] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// The footer under an open pane: where keys go, and the prefix commands
/// this viewer has (a read-only one sends no keys, so it has fewer).
pub fn pane_hint(p: &str, read_only: bool) -> String {
    if read_only {
        format!(" read-only: your keys are not sent · {p} d detach · {p} z zoom · {p} w switch")
    } else {
        format!(
            " keys go to the session · {p} d detach · {p} z zoom · {p} [ history (q leaves) · {p} n new session · {p} w switch · {p} r restart · {p} {p} sends {p}"
        )
    }
}

pub fn draw_header(
    username: &str,
    notice: Option<&str>,
    need_you: usize,
    unread: i64,
    theme: Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let width = usize::from(area.width);
    let mut left = format!(" Kiln · {}", text::fit(username, 32));
    let mut spans = vec![Span::styled(left.clone(), theme.title())];
    let unread = notifications::unread_label(unread);
    if !unread.is_empty() {
        left.push_str(&unread);
        spans.push(Span::styled(unread, theme.warn()));
    }
    if need_you > 0 {
        // The same `?` as the needs_input glyph: it reads without colour.
        let count = format!(
            " · ? {need_you} need{} you (i)",
            if need_you == 1 { "s" } else { "" }
        );
        left.push_str(&count);
        spans.push(Span::styled(count, theme.warn()));
    }
    if let Some(notice) = notice {
        let room = width.saturating_sub(text::width(&left) + 3);
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(text::fit(notice, room), theme.warn()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn draw_status(status: Option<&StatusLine>, theme: Theme, frame: &mut Frame, area: Rect) {
    let Some(status) = status else {
        return;
    };
    let style = if status.error {
        theme.error()
    } else {
        theme.ok()
    };
    let mark = if status.error { "✗ " } else { "✓ " };
    let line = Line::styled(
        text::fit(&format!(" {mark}{}", status.text), area.width.into()),
        style,
    );
    frame.render_widget(Paragraph::new(line), area);
}

/// The footer: the context's main keys, disabled ones greyed. Help and quit
/// are always shown; what else does not fit is left to the help overlay.
pub fn draw_footer(bindings: &[Binding], theme: Theme, frame: &mut Frame, area: Rect) {
    use crate::tui::keys::Action;
    let cost = |b: &Binding| text::width(&b.key.label()) + 1 + b.label.len() + 2;
    let shown: Vec<&Binding> = bindings.iter().filter(|b| b.footer).collect();
    let pinned = |b: &&&Binding| matches!(b.action, Action::Help | Action::Quit);
    let mut room = usize::from(area.width).saturating_sub(1);
    room = room.saturating_sub(shown.iter().filter(pinned).map(|b| cost(b)).sum());
    let mut keep = Vec::new();
    for b in shown.iter().filter(|b| !pinned(b)) {
        if cost(b) > room {
            break;
        }
        room -= cost(b);
        keep.push(*b);
    }
    keep.extend(shown.iter().filter(pinned).copied());
    let mut spans = vec![Span::raw(" ")];
    for b in keep {
        let (key_style, label_style) = match b.enabled {
            Ok(()) => (theme.key(), ratatui::style::Style::new()),
            Err(_) => (theme.dim(), theme.dim()),
        };
        spans.push(Span::styled(b.key.label(), key_style));
        spans.push(Span::styled(format!(" {}  ", b.label), label_style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests;
