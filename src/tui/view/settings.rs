//! The settings screen: SSH keys, password, settings and secrets, and where
//! sandboxes run (kubeconfig). Secret values are never drawn.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, HighlightSpacing, List, ListItem, ListState, Paragraph};

use super::style::{self, Theme};
use crate::store::keys::SshKey;
use crate::store::user_configs::KUBECONFIG;
use crate::store::webhooks::{WEBHOOK_URL, WebhookStatus};
use crate::tui::screens::Ctx;
use crate::tui::screens::settings::{ConfigRow, SettingsFocus, SettingsScreen};
use crate::tui::text;

/// `text` cut to `w` columns and padded to exactly `w`.
fn col(s: &str, w: usize) -> String {
    let cut = text::fit(s, w);
    let pad = w.saturating_sub(text::width(&cut));
    format!("{cut}{}", " ".repeat(pad))
}

fn key_text(ctx: Ctx, k: &SshKey, alg_w: usize, w: usize) -> String {
    // A full fingerprint is 50 columns; on a narrow screen its start is enough
    // to tell keys apart (and `ssh … keys list` prints it in full).
    let fp_w = if w >= 110 { 51 } else { 27 };
    let added = format!("added {} ago", style::age(ctx.now, k.created_at));
    let head = format!(
        "{} {} {} ",
        col(&k.fingerprint, fp_w),
        col(&k.algorithm, alg_w),
        col(&added, 13)
    );
    let room = w.saturating_sub(text::width(&head));
    format!("{head}{}", text::fit(&k.comment, room))
}

fn config_text(ctx: Ctx, row: &ConfigRow, w: usize) -> (String, bool) {
    let key = col(row.key, 24);
    let Some(c) = row.config else {
        return (format!("{key} not set"), false);
    };
    let age = format!("  updated {} ago", style::age(ctx.now, c.updated_at));
    if c.is_secret {
        return (format!("{key} {}  (secret){age}", text::MASK), true);
    }
    let room = w.saturating_sub(text::width(&key) + 1 + text::width(&age));
    (
        format!("{key} {}{age}", text::fit(c.value.expose_str(), room)),
        true,
    )
}

fn section_title(title: String, focused: bool, theme: Theme) -> Line<'static> {
    let marker = if focused { "▸ " } else { "  " };
    let style = if focused { theme.key() } else { theme.title() };
    Line::styled(format!("{marker}{title}"), style)
}

fn list<'a>(
    items: Vec<ListItem<'a>>,
    selected: usize,
    focused: bool,
    theme: Theme,
) -> (List<'a>, ListState) {
    let widget = List::new(items)
        .highlight_style(theme.selected())
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    let state = ListState::default().with_selected(focused.then_some(selected));
    (widget, state)
}

pub fn draw(app: &SettingsScreen, ctx: Ctx, theme: Theme, frame: &mut Frame, area: Rect) {
    let block = Block::bordered().title(Span::styled(" Settings ", theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(d) = &app.data else {
        frame.render_widget(
            Paragraph::new(Line::styled(" Loading…", theme.dim())),
            inner,
        );
        return;
    };
    let w = usize::from(inner.width);
    let rows = app.config_rows();
    let keys_h = d.keys.len().clamp(1, usize::from(inner.height / 3).max(1)) as u16;
    // The kubeconfig line follows the list; long lists scroll, it stays.
    // The quota: the user's own line, then one per team (a few at most;
    // `ssh … quota` lists them all).
    let quota_h = 1 + d.team_quotas.len().min(MAX_TEAM_QUOTAS) as u16;
    let fixed = 10 + keys_h + quota_h;
    let list_h = (rows.len().max(1) as u16).min(inner.height.saturating_sub(fixed).max(1));
    let [
        keys_title,
        keys_list,
        keys_note,
        _,
        password,
        _,
        configs_title,
        configs_list,
        _,
        kube,
        webhook,
        quota,
        _,
    ] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(keys_h),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(list_h),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(quota_h),
        Constraint::Min(0),
    ])
    .areas(inner);

    let keys_focused = app.focus == SettingsFocus::Keys;
    frame.render_widget(
        Paragraph::new(section_title(
            format!("SSH keys ({})", d.keys.len()),
            keys_focused,
            theme,
        )),
        keys_title,
    );
    if d.keys.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "   No keys — press a to paste a public key (~/.ssh/id_ed25519.pub)",
                theme.dim(),
            )),
            keys_list,
        );
    } else {
        let alg_w = d
            .keys
            .iter()
            .map(|k| text::width(&text::clean(&k.algorithm)))
            .max()
            .unwrap_or(0)
            .min(20);
        let items = d
            .keys
            .iter()
            .map(|k| ListItem::new(Line::raw(key_text(ctx, k, alg_w, w.saturating_sub(3)))))
            .collect();
        let (widget, mut st) = list(items, app.key_selected, keys_focused, theme);
        frame.render_stateful_widget(widget, pad_left(keys_list), &mut st);
    }
    // The last way in is greyed with its reason, whichever section has focus.
    if d.keys.len() == 1 && !d.has_password {
        frame.render_widget(
            Paragraph::new(Line::styled(
                text::fit(
                    "   ✗ your only key cannot be removed while you have no password",
                    w,
                ),
                theme.dim(),
            )),
            keys_note,
        );
    }

    let (state, note) = if d.has_password {
        ("set", "p changes it")
    } else {
        ("not set", "you log in with a key only; p sets one")
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("  Password   ", theme.title()),
            Span::raw(state),
            Span::styled(text::fit(&format!(" — {note}"), w), theme.dim()),
        ])),
        password,
    );

    frame.render_widget(
        Paragraph::new(section_title(
            "Settings and secrets".into(),
            !keys_focused,
            theme,
        )),
        configs_title,
    );
    let items = rows
        .iter()
        .map(|r| {
            let (line, set) = config_text(ctx, r, w.saturating_sub(3));
            let style = if set { Style::new() } else { theme.dim() };
            ListItem::new(Line::styled(line, style))
        })
        .collect();
    let (widget, mut st) = list(items, app.config_selected, !keys_focused, theme);
    frame.render_stateful_widget(widget, pad_left(configs_list), &mut st);

    let kubeconfig = d.configs.iter().find(|c| c.key == KUBECONFIG);
    let (state, note) = match kubeconfig {
        Some(c) => (
            "set".to_string(),
            format!(" — updated {} ago", style::age(ctx.now, c.updated_at)),
        ),
        None => (
            "not set".to_string(),
            " — sandboxes run on this host".into(),
        ),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("  Kubeconfig ", theme.title()),
            Span::raw(state),
            Span::styled(text::fit(&note, w.saturating_sub(18)), theme.dim()),
        ])),
        kube,
    );
    let webhook_set = d.configs.iter().any(|c| c.key == WEBHOOK_URL);
    if let Some(line) = webhook_line(webhook_set, d.webhook.as_ref(), ctx.now)
        .filter(|_| d.webhook.is_some() || webhook_set)
    {
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("  Webhook    ", theme.title()),
                Span::raw(text::fit(&text::clean(&line), w.saturating_sub(13))),
            ])),
            webhook,
        );
    }
    if let Some((limits, usage)) = &d.quota {
        let lines: Vec<Line> = quota_lines(*limits, *usage, &d.team_quotas)
            .into_iter()
            .enumerate()
            .map(|(i, line)| {
                let label = if i == 0 {
                    "  Quota      "
                } else {
                    "             "
                };
                Line::from(vec![
                    Span::styled(label, theme.title()),
                    Span::raw(text::fit(&text::clean(&line), w.saturating_sub(13))),
                ])
            })
            .collect();
        frame.render_widget(Paragraph::new(lines), quota);
    }
}

/// How many teams' quotas the settings screen lists under the user's own.
const MAX_TEAM_QUOTAS: usize = 3;

/// The quota lines: the user's own, then each team's (at most
/// [`MAX_TEAM_QUOTAS`], the rest counted).
pub fn quota_lines(
    limits: crate::model::quota::Limits,
    usage: crate::model::quota::Usage,
    teams: &[crate::console::TeamQuota],
) -> Vec<String> {
    use crate::model::quota::summary;
    let mut lines = vec![format!("you: {}", summary(limits, usage))];
    let shown = if teams.len() > MAX_TEAM_QUOTAS {
        MAX_TEAM_QUOTAS - 1
    } else {
        teams.len()
    };
    for t in &teams[..shown] {
        lines.push(format!("team {}: {}", t.team, summary(t.limits, t.usage)));
    }
    if shown < teams.len() {
        lines.push(format!(
            "and {} more teams (ssh … quota lists them all)",
            teams.len() - shown
        ));
    }
    lines
}

/// The webhook's line: its last error (and when), else its last delivery,
/// else how to set one.
pub fn webhook_line(
    set: bool,
    status: Option<&WebhookStatus>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let s = status.cloned().unwrap_or_default();
    let error = match (&s.last_error, s.last_error_at) {
        (Some(e), Some(at)) if s.last_delivered_at.is_none_or(|d| d < at) => {
            Some(format!("last error {} ago: {e}", style::age(now, at)))
        }
        _ => None,
    };
    match (set, error, s.last_delivered_at) {
        (_, Some(e), _) => Some(e),
        (true, None, Some(at)) => Some(format!("set — delivered {} ago", style::age(now, at))),
        (true, None, None) => Some("set — nothing delivered yet".into()),
        (false, None, _) => Some("not set — a, then WEBHOOK_URL and its URL".into()),
    }
}

/// The lists sit one column in, under their section titles.
fn pad_left(r: Rect) -> Rect {
    Rect {
        x: r.x + 1,
        width: r.width.saturating_sub(1),
        ..r
    }
}

#[cfg(test)]
mod webhook_tests {
    use super::*;

    #[test]
    fn the_webhook_line_shows_the_last_error_until_a_later_delivery() {
        let now = chrono::Utc::now();
        let ago = |s| now - chrono::Duration::seconds(s);
        assert_eq!(
            webhook_line(false, None, now).as_deref(),
            Some("not set — a, then WEBHOOK_URL and its URL")
        );
        assert_eq!(
            webhook_line(true, Some(&WebhookStatus::default()), now).as_deref(),
            Some("set — nothing delivered yet")
        );
        let failed = WebhookStatus {
            last_error: Some("HTTP 500 (attempt 5; given up)".into()),
            last_error_at: Some(ago(120)),
            last_delivered_at: Some(ago(600)),
        };
        assert_eq!(
            webhook_line(true, Some(&failed), now).as_deref(),
            Some("last error 2m ago: HTTP 500 (attempt 5; given up)")
        );
        let recovered = WebhookStatus {
            last_delivered_at: Some(ago(5)),
            ..failed
        };
        assert_eq!(
            webhook_line(true, Some(&recovered), now).as_deref(),
            Some("set — delivered 5s ago")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::TeamQuota;
    use crate::model::quota::{Limits, Usage};
    use crate::model::team::TeamRole;

    fn team(name: &str, projects: i64) -> TeamQuota {
        TeamQuota {
            team: name.into(),
            role: TeamRole::Member,
            limits: Limits {
                projects: Some(projects),
                ..Limits::default()
            },
            usage: Usage::of(1, 0, None),
        }
    }

    #[test]
    fn the_users_own_quota_comes_first_then_each_team() {
        let lines = quota_lines(Limits::default(), Usage::of(2, 1, None), &[team("acme", 4)]);
        assert_eq!(
            lines,
            [
                "you: 2 projects (no limit) · 1 running (no limit)",
                "team acme: 1 of 4 projects · 0 running (no limit)",
            ]
        );
    }

    #[test]
    fn past_three_teams_the_rest_are_counted_and_exec_named() {
        let teams: Vec<TeamQuota> = (0..5).map(|i| team(&format!("t{i}"), 9)).collect();
        let lines = quota_lines(Limits::default(), Usage::default(), &teams);
        assert_eq!(lines.len(), 1 + MAX_TEAM_QUOTAS);
        assert!(lines[1].starts_with("team t0: "), "{lines:?}");
        assert!(lines[2].starts_with("team t1: "), "{lines:?}");
        assert_eq!(lines[3], "and 3 more teams (ssh … quota lists them all)");
        // Exactly three teams all show.
        assert_eq!(
            quota_lines(Limits::default(), Usage::default(), &teams[..3]).len(),
            4
        );
    }
}
