//! The create dialog's owner field: `Owner  ◂ acme ▸` and where the
//! project will be named.

use ratatui::text::{Line, Span};

use super::style::Theme;
use crate::tui::screens::owner::OwnerChoice;
use crate::tui::text;

/// The field's lines: the choice (arrows while focused), then a hint.
pub fn field(
    o: &OwnerChoice,
    focused: bool,
    name: &str,
    theme: Theme,
    w: usize,
) -> Vec<Line<'static>> {
    let label = format!(" {:<13}", "Owner");
    let choice = if focused {
        format!("◂ {} ▸", o.label())
    } else {
        o.label().to_string()
    };
    let room = w.saturating_sub(label.len() + 2);
    let line = Line::from(vec![
        Span::styled(label, if focused { theme.key() } else { theme.title() }),
        Span::raw(text::fit(&choice, room)),
    ]);
    let hint = match (o.team(), name.trim()) {
        (Some(_), n) if !n.is_empty() => format!("   named {}", o.qualified(n)),
        (Some(t), _) => format!("   a project of team {t}"),
        (None, _) => "   your own project (← → choose a team)".to_string(),
    };
    vec![
        Line::raw(""),
        line,
        Line::styled(text::fit(&hint, w), theme.dim()),
    ]
}
