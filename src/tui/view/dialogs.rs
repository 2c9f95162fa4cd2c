//! Modals drawn over the screen: create, env form, confirmations, help.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::style::Theme;
use crate::tui::keys::Binding;
use crate::tui::screens::dialogs::Overlay;
use crate::tui::screens::forms::{
    ConfigForm, CreateField, CreateForm, EnvField, EnvForm, KeyForm, PasswordField, PasswordForm,
};
use crate::tui::screens::settings::SettingsData;
use crate::tui::text;

const CURSOR: &str = "▏";

/// What the dialogs show of the screen under them.
pub struct Under<'a> {
    /// The open project (env dialogs).
    pub project: Option<&'a str>,
    /// The settings screen's data (key and password dialogs).
    pub settings: Option<&'a SettingsData>,
}

pub fn draw(overlay: Option<&Overlay>, under: &Under, theme: Theme, frame: &mut Frame, body: Rect) {
    match overlay {
        Some(Overlay::Create(f)) => create(f, theme, frame, body),
        Some(Overlay::EnvForm(f)) => env_form(under, f, theme, frame, body),
        Some(Overlay::KeyForm(f)) => key_form(under, f, theme, frame, body),
        Some(Overlay::PasswordForm(f)) => password_form(under, f, theme, frame, body),
        Some(Overlay::ConfigForm(f)) => config_form(f, theme, frame, body),
        Some(Overlay::ConfirmRemoveKey { fingerprint }) => {
            let comment = under
                .settings
                .iter()
                .flat_map(|d| &d.keys)
                .find(|k| &k.fingerprint == fingerprint)
                .map(|k| k.comment.as_str())
                .unwrap_or("");
            confirm(
                theme,
                frame,
                body,
                " Remove SSH key ",
                "yes, remove",
                vec![
                    format!("Remove the key {}?", text::fit(fingerprint, 51)),
                    format!("({})", text::fit(comment, 56)),
                    "You will no longer be able to log in with it.".into(),
                ],
            )
        }
        Some(Overlay::ConfirmUnsetConfig { key }) => confirm(
            theme,
            frame,
            body,
            " Remove setting ",
            "yes, remove",
            vec![
                format!("Remove your setting {}?", text::fit(key, 40)),
                "Its stored value is deleted; this cannot be undone.".into(),
            ],
        ),
        Some(Overlay::ConfirmDelete { project }) => confirm(
            theme,
            frame,
            body,
            " Delete project ",
            "yes, delete",
            vec![
                format!("Delete project “{}”?", text::fit(project, 50)),
                "Its sandbox and database (with all data) will be removed.".into(),
                "This cannot be undone.".into(),
            ],
        ),
        Some(Overlay::ConfirmUnset { key }) => confirm(
            theme,
            frame,
            body,
            " Remove variable ",
            "yes, delete",
            vec![
                format!(
                    "Remove {} from “{}”?",
                    text::fit(key, 40),
                    text::fit(under.project.unwrap_or(""), 30)
                ),
                "The running sandbox picks the change up on its next sync.".into(),
            ],
        ),
        Some(Overlay::ConfirmStartAttach {
            project,
            status,
            read_only,
        }) => confirm(
            theme,
            frame,
            body,
            " Not running ",
            if *read_only {
                "start and view"
            } else {
                "start and attach"
            },
            vec![
                format!("“{}” is {status}.", text::fit(project, 40)),
                "Start it and open the session once its sandbox runs?".into(),
            ],
        ),
        Some(Overlay::ConfirmRestart {
            session,
            state,
            read_only,
            ..
        }) => confirm(
            theme,
            frame,
            body,
            " Session exited ",
            if *read_only {
                "restart and view"
            } else {
                "restart and attach"
            },
            vec![
                format!(
                    "Session {} has {}.",
                    text::fit(session.as_deref().unwrap_or("default"), 20),
                    state.describe()
                ),
                "Restart its program (same session, same name) and attach?".into(),
            ],
        ),
        None => {}
    }
}

/// A centred box of at most `w`×`h` inside `area`, cleared and bordered;
/// returns the inner area.
fn modal(frame: &mut Frame, area: Rect, w: u16, h: u16, title: Line<'_>) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(title);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    inner
}

/// `label: value▏` with the tail of the value visible while typing.
fn field(label: &str, value: &str, focused: bool, theme: Theme, w: usize) -> Line<'static> {
    let label = format!(" {label:<13}");
    let room = w.saturating_sub(label.len() + 2);
    let mut spans = vec![Span::styled(
        label,
        if focused { theme.key() } else { theme.title() },
    )];
    spans.push(Span::raw(text::tail(value, room)));
    if focused {
        spans.push(Span::raw(CURSOR));
    }
    Line::from(spans)
}

/// An inline check result under a field: ✓ what it gives, or ✗ why not.
fn verdict(result: Result<String, String>, theme: Theme, w: usize) -> Line<'static> {
    match result {
        Ok(s) => Line::styled(text::fit(&format!("   ✓ {s}"), w), theme.ok()),
        Err(e) => Line::styled(text::fit(&format!("   ✗ {e}"), w), theme.error()),
    }
}

/// `Template      ◂ python ▸  Python 3 with …`; `(none)` until one is chosen.
fn template_line(f: &CreateForm, theme: Theme, w: usize) -> Line<'static> {
    let focused = f.focus == CreateField::Template;
    let (name, about) = match f.chosen() {
        Some(t) => (
            t.name.clone(),
            format!("{} ({})", t.description, t.scope.as_str()),
        ),
        None if f.templates.is_empty() => ("(none)".into(), String::new()),
        None => (
            "(none)".into(),
            format!("↑/↓ chooses one of {}", f.templates.len()),
        ),
    };
    let label = format!(" {:<13}", "Template");
    let chosen = format!("◂ {name} ▸  ");
    let room = w.saturating_sub(label.len() + chosen.chars().count());
    Line::from(vec![
        Span::styled(label, if focused { theme.key() } else { theme.title() }),
        Span::styled(
            chosen,
            if focused {
                theme.key()
            } else {
                Style::default()
            },
        ),
        Span::styled(text::fit(&about, room), theme.dim()),
    ])
}

fn create(f: &CreateForm, theme: Theme, frame: &mut Frame, body: Rect) {
    let width = body.width.saturating_sub(4).min(96);
    let title = Line::styled(" New project ", theme.title());
    let owner_rows = if f.owner.has_teams() { 3 } else { 0 };
    let inner = modal(frame, body, width, 15 + owner_rows, title);
    let w = usize::from(inner.width);
    let slug = if f.name.is_empty() {
        Err("type a name; the slug is made of its letters and digits".into())
    } else {
        f.slug().map(|s| format!("slug: {s}"))
    };
    let mut lines = vec![
        field("Name", &f.name, f.focus == CreateField::Name, theme, w),
        verdict(slug, theme, w),
        Line::raw(""),
        field(
            "Description",
            &f.description,
            f.focus == CreateField::Description,
            theme,
            w,
        ),
        match f.description_check() {
            Ok(()) => Line::styled("   (optional)", theme.dim()),
            Err(e) => verdict(Err(e), theme, w),
        },
    ];
    if f.owner.has_teams() {
        lines.extend(super::owner::field(
            &f.owner,
            f.focus == CreateField::Owner,
            &f.name,
            theme,
            w,
        ));
    }
    lines.extend([
        Line::raw(""),
        field(
            "Repository",
            &f.repo,
            f.focus == CreateField::Repo,
            theme,
            w,
        ),
        field(
            "Branch",
            &f.branch,
            f.focus == CreateField::Branch,
            theme,
            w,
        ),
        match f.repo_check() {
            Ok(None) => Line::styled(
                text::fit(
                    "   (optional) https://, ssh:// or git:// URL; GIT_TOKEN for private ones",
                    w,
                ),
                theme.dim(),
            ),
            Ok(Some(s)) => verdict(Ok(s), theme, w),
            Err(e) => verdict(Err(e), theme, w),
        },
        Line::raw(""),
        template_line(f, theme, w),
        Line::raw(""),
        Line::styled(
            " Enter creates · Tab switches field · Esc cancels",
            theme.dim(),
        ),
    ]);
    frame.render_widget(Paragraph::new(lines), inner);
}

fn env_form(under: &Under, f: &EnvForm, theme: Theme, frame: &mut Frame, body: Rect) {
    let width = body.width.saturating_sub(4).min(96);
    let verb = if f.editing {
        " Edit variable "
    } else {
        " Add variable "
    };
    let project = text::fit(under.project.unwrap_or(""), 30);
    let title = Line::styled(format!("{verb}— {project} "), theme.title());
    let inner = modal(frame, body, width, 9, title);
    let w = usize::from(inner.width);
    let value_shown = if f.secret {
        // Typed blind: the length confirms keystrokes without showing the value.
        format!(
            "{} ({} chars)",
            text::MASK,
            f.value.expose().chars().count()
        )
    } else {
        f.value.expose().to_string()
    };
    let key_line = if f.editing {
        Line::from(vec![
            Span::styled(format!(" {:<13}", "Name"), theme.title()),
            Span::raw(text::fit(&f.key, w.saturating_sub(16))),
            Span::styled("  (fixed)", theme.dim()),
        ])
    } else {
        field("Name", &f.key, f.focus == EnvField::Key, theme, w)
    };
    let key_check = if f.key.is_empty() {
        Line::styled(
            "   letters, digits and _; not starting with a digit",
            theme.dim(),
        )
    } else {
        verdict(f.key_check().map(|()| "valid name".into()), theme, w)
    };
    let checkbox = format!("[{}] secret", if f.secret { "x" } else { " " });
    let secret_style = if f.focus == EnvField::Secret {
        theme.selected()
    } else {
        ratatui::style::Style::new()
    };
    let lines = vec![
        key_line,
        key_check,
        field("Value", &value_shown, f.focus == EnvField::Value, theme, w),
        match f.value_check() {
            Ok(()) => Line::raw(""),
            Err(e) => verdict(Err(e), theme, w),
        },
        Line::from(vec![
            Span::raw(format!(" {:<13}", "")),
            Span::styled(checkbox, secret_style),
            Span::styled("  (space here, or ^S anywhere)", theme.dim()),
        ]),
        Line::raw(""),
        Line::styled(
            " Enter saves · Tab next field · ^S secret · Esc cancels",
            theme.dim(),
        ),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

fn confirm(
    theme: Theme,
    frame: &mut Frame,
    body: Rect,
    title: &str,
    yes: &str,
    text_lines: Vec<String>,
) {
    let title = Line::styled(title.to_string(), theme.error());
    let inner = modal(frame, body, 66, text_lines.len() as u16 + 4, title);
    let w = usize::from(inner.width);
    let mut lines: Vec<Line> = text_lines
        .iter()
        .map(|l| Line::raw(text::fit(&format!(" {l}"), w)))
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled(" y", theme.key()),
        Span::raw(format!(" {yes}    ")),
        Span::styled("n", theme.key()),
        Span::raw("/"),
        Span::styled("Esc", theme.key()),
        Span::raw(" cancel"),
    ]));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Every binding of the screen under the overlay, with why a key is off;
/// `typing` when other keys type into a field there.
pub fn help(bindings: &[Binding], typing: bool, theme: Theme, frame: &mut Frame, body: Rect) {
    let mut lines: Vec<Line> = Vec::new();
    let width = body.width.saturating_sub(8).min(90);
    let w = usize::from(width.saturating_sub(2));
    // Aliases (↑ and k, q and ^C) share one row: same action, same label.
    let mut rows: Vec<(String, &crate::tui::keys::Binding)> = Vec::new();
    for b in bindings {
        match rows
            .iter_mut()
            .find(|(_, o)| o.action == b.action && o.label == b.label)
        {
            Some((keys, _)) => {
                keys.push('/');
                keys.push_str(&b.key.label());
            }
            None => rows.push((b.key.label(), b)),
        }
    }
    // Too many keys for one column (a small window): two side by side,
    // each with less room for the reason a key is off.
    let room_rows = usize::from(body.height.saturating_sub(2)).saturating_sub(usize::from(typing));
    let columns = if rows.len() > room_rows && w >= 60 {
        2
    } else {
        1
    };
    let cell = w / columns;
    let cells: Vec<Vec<Span>> = rows
        .iter()
        .map(|(keys, b)| help_cell(keys, b, cell, theme))
        .collect();
    let per_column = cells.len().div_ceil(columns);
    for i in 0..per_column {
        let mut spans = cells[i].clone();
        if let Some(right) = cells.get(i + per_column).filter(|_| columns == 2) {
            let used: usize = spans.iter().map(|s| text::width(&s.content)).sum();
            spans.push(Span::raw(" ".repeat(cell.saturating_sub(used))));
            spans.extend(right.iter().cloned());
        }
        lines.push(Line::from(spans));
    }
    if typing {
        lines.push(Line::styled(" other keys type into the field", theme.dim()));
    }
    let h = (lines.len() as u16 + 2).min(body.height);
    let title = Line::styled(" Keys (Esc closes) ", theme.title());
    let inner = modal(frame, body, width, h, title);
    frame.render_widget(Paragraph::new(lines), inner);
}

/// One key's row of the help, at most `width` wide: its keys, what it does,
/// and why it is off when it is.
fn help_cell<'a>(
    keys: &str,
    b: &crate::tui::keys::Binding,
    width: usize,
    theme: Theme,
) -> Vec<Span<'a>> {
    let mut spans = vec![
        Span::styled(format!(" {keys:<10}"), theme.key()),
        Span::raw(format!(
            "{:<16}",
            text::fit(b.label, width.saturating_sub(12))
        )),
    ];
    if let Err(why) = &b.enabled {
        let room = width.saturating_sub(27);
        spans[0].style = theme.dim();
        spans.push(Span::styled(
            text::fit(&format!("off: {why}"), room),
            theme.dim(),
        ));
    }
    spans
}

fn key_form(under: &Under, f: &KeyForm, theme: Theme, frame: &mut Frame, body: Rect) {
    let width = body.width.saturating_sub(4).min(110);
    let title = Line::styled(" Add SSH key ", theme.title());
    let inner = modal(frame, body, width, 8, title);
    let w = usize::from(inner.width);
    let known = under.settings.map_or(&[][..], |d| &d.keys[..]);
    let check = if f.line.trim().is_empty() {
        Line::styled(
            "   paste one line, e.g. the contents of ~/.ssh/id_ed25519.pub",
            theme.dim(),
        )
    } else {
        verdict(f.check(known), theme, w)
    };
    let lines = vec![
        field("Public key", &f.line, true, theme, w),
        check,
        Line::raw(""),
        Line::styled(
            text::fit(" Never paste a private key: the public one ends in .pub", w),
            theme.dim(),
        ),
        Line::raw(""),
        Line::styled(" Enter adds · Esc cancels", theme.dim()),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Never echoed: one dot per character typed, so keystrokes are confirmed.
fn dots(s: &str) -> String {
    "•".repeat(s.chars().count())
}

fn password_form(under: &Under, f: &PasswordForm, theme: Theme, frame: &mut Frame, body: Rect) {
    let width = body.width.saturating_sub(4).min(80);
    let verb = match under.settings {
        Some(d) if d.has_password => " Change password ",
        _ => " Set password ",
    };
    let inner = modal(frame, body, width, 8, Line::styled(verb, theme.title()));
    let w = usize::from(inner.width);
    let first = if f.password.is_empty() {
        Line::styled("   at least 8 characters", theme.dim())
    } else {
        verdict(f.password_check().map(|()| "long enough".into()), theme, w)
    };
    let second = if f.repeat.is_empty() {
        Line::styled("   type it again", theme.dim())
    } else {
        verdict(f.repeat_check().map(|()| "the two match".into()), theme, w)
    };
    let lines = vec![
        field(
            "New password",
            &dots(f.password.expose()),
            f.focus == PasswordField::Password,
            theme,
            w,
        ),
        first,
        field(
            "Repeat",
            &dots(f.repeat.expose()),
            f.focus == PasswordField::Repeat,
            theme,
            w,
        ),
        second,
        Line::raw(""),
        Line::styled(
            " Enter saves · Tab switches field · Esc cancels",
            theme.dim(),
        ),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

fn config_form(f: &ConfigForm, theme: Theme, frame: &mut Frame, body: Rect) {
    let width = body.width.saturating_sub(4).min(96);
    let title = if f.editing {
        format!(" Set {} ", text::fit(&f.key, 60))
    } else {
        " Add setting ".into()
    };
    let inner = modal(frame, body, width, 9, Line::styled(title, theme.title()));
    let w = usize::from(inner.width);
    let value_shown = if f.is_secret() {
        format!(
            "{} ({} chars)",
            text::MASK,
            f.value.expose().chars().count()
        )
    } else {
        f.value.expose().to_string()
    };
    let key_line = if f.editing {
        Line::from(vec![
            Span::styled(format!(" {:<13}", "Name"), theme.title()),
            Span::raw(text::fit(&f.key, w.saturating_sub(16))),
            Span::styled("  (fixed)", theme.dim()),
        ])
    } else {
        field("Name", &f.key, f.focus == EnvField::Key, theme, w)
    };
    let key_check = if f.key.is_empty() {
        Line::styled(
            text::fit("   e.g. ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL", w),
            theme.dim(),
        )
    } else {
        verdict(f.key_check().map(|()| "valid name".into()), theme, w)
    };
    let value_check = match f.value_check() {
        Ok(()) => Line::raw(""),
        Err(_) if f.value.is_empty() && f.editing => Line::styled(
            "   type the new value; Esc keeps the current one",
            theme.dim(),
        ),
        Err(e) => verdict(Err(e), theme, w),
    };
    let checkbox = format!("[{}] secret", if f.is_secret() { "x" } else { " " });
    let secret_style = if f.focus == EnvField::Secret {
        theme.selected()
    } else {
        ratatui::style::Style::new()
    };
    let lines = vec![
        key_line,
        key_check,
        field("Value", &value_shown, f.focus == EnvField::Value, theme, w),
        value_check,
        Line::from(vec![
            Span::raw(format!(" {:<13}", "")),
            Span::styled(checkbox, secret_style),
            Span::styled("  (space here, or ^S anywhere)", theme.dim()),
        ]),
        Line::raw(""),
        Line::styled(
            " Enter saves · Tab next field · ^S secret · Esc cancels",
            theme.dim(),
        ),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}
