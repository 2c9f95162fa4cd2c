//! Rendering: `draw` lays out header, body, status line and footer, then the
//! screen's body and any overlay. One module per screen; all text that came
//! from outside goes through `tui::text` first.

mod detail;
mod dialogs;
mod env;
mod list;
mod settings;
pub mod style;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::{App, Screen};
use crate::tui::keys::Binding;
use crate::tui::text;
use style::Theme;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn draw(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let theme = Theme {
        no_color: app.no_color,
    };
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        // A broken layout is worse than none: one line that says what to do.
        let msg = format!(
            "window too small: {}×{} (need {MIN_WIDTH}×{MIN_HEIGHT})",
            area.width, area.height
        );
        let line = Line::styled(text::fit(&msg, area.width.into()), theme.warn());
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    if let Some(pane) = &app.pane {
        // The pane owns the window; the header and footer stay for orientation.
        if !pane.zoomed {
            let [header, _, status, footer] = Layout::vertical([
                Constraint::Length(1),
                Constraint::Min(0),
                Constraint::Length(1),
                Constraint::Length(1),
            ])
            .areas(area);
            draw_header(app, theme, frame, header);
            draw_status(app, theme, frame, status);
            let hint = pane_hint(&app.prefix.label(), pane.read_only);
            frame.render_widget(
                Paragraph::new(text::fit(&hint, area.width.into())).style(theme.dim()),
                footer,
            );
        }
        pane.draw(frame, area);
        return;
    }
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(app, theme, frame, header);
    match app.screen {
        Screen::List => list::draw(app, theme, frame, body),
        Screen::Detail => detail::draw(app, theme, frame, body),
        Screen::Env => env::draw(app, theme, frame, body),
        Screen::Settings => settings::draw(app, theme, frame, body),
        Screen::Logs => {
            if let Some(l) = &app.logs {
                l.draw(theme, frame, body);
            }
        }
    }
    draw_status(app, theme, frame, status);
    draw_footer(&app.bindings(), theme, frame, footer);
    dialogs::draw(app, theme, frame, body);
}

/// The footer under an open pane: where keys go, and the prefix commands
/// this viewer has (a read-only one sends no keys, so it has fewer).
fn pane_hint(p: &str, read_only: bool) -> String {
    if read_only {
        format!(" read-only: your keys are not sent · {p} d detach · {p} z zoom · {p} w switch")
    } else {
        format!(
            " keys go to the session · {p} d detach · {p} z zoom · {p} [ history (q leaves) · {p} n new session · {p} w switch · {p} r restart · {p} {p} sends {p}"
        )
    }
}

fn draw_header(app: &App, theme: Theme, frame: &mut Frame, area: Rect) {
    let width = usize::from(area.width);
    let left = format!(" Kiln · {}", text::fit(&app.username, 32));
    let mut spans = vec![Span::styled(left.clone(), theme.title())];
    if let Some(notice) = &app.notice {
        let room = width.saturating_sub(text::width(&left) + 3);
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(text::fit(notice, room), theme.warn()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_status(app: &App, theme: Theme, frame: &mut Frame, area: Rect) {
    let Some(status) = &app.status else {
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
fn draw_footer(bindings: &[Binding], theme: Theme, frame: &mut Frame, area: Rect) {
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
