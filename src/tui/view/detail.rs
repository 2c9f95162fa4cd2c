//! The project detail: resources with the reason for anything stuck or failed
//! ("say why"), connection info, env vars and the event history.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::style::{Theme, age, status_label, until};
use crate::model::{ProjectStatus, ResourceStatus};
use crate::store::projects::ResourceSummary;
use crate::tui::screens::Ctx;
use crate::tui::screens::agents::AgentsScreen;
use crate::tui::screens::detail::{DetailScreen, ProjectDetail, session_label};
use crate::tui::text;

pub fn draw(
    app: &DetailScreen,
    agents: &AgentsScreen,
    ctx: Ctx,
    theme: Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let name = app.open.as_deref().unwrap_or("");
    let Some(d) = &app.data else {
        let block = Block::bordered().title(format!(" {} ", text::fit(name, 60)));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new(Line::styled(" Loading…", theme.dim())),
            inner,
        );
        return;
    };
    let status = d.view.project.status;
    let title = Line::from(vec![
        Span::styled(format!(" {} ", text::fit(name, 50)), theme.title()),
        Span::styled(
            format!("{} ", status_label(status, ctx.tick)),
            theme.status(status),
        ),
    ]);
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let w = usize::from(inner.width);

    let mut resources = resource_lines(ctx, theme, d, w);
    let session_rows = if inner.height >= 40 { 8 } else { 3 };
    resources.extend(session_lines(app, agents, ctx, theme, d, w, session_rows));
    let env_rows = if inner.height >= 40 { 8 } else { 2 };
    let env = env_lines(app, theme, d, w, env_rows);
    let git = git_line(app, theme, d, w);
    let [top, res, conn, env_area, events] = Layout::vertical([
        Constraint::Length(1 + u16::from(git.is_some())),
        Constraint::Length(resources.len() as u16),
        Constraint::Length(if d.app.is_some() { 3 } else { 2 }),
        Constraint::Length(env.len() as u16),
        Constraint::Min(2),
    ])
    .areas(inner);

    let desc = if d.view.project.description.is_empty() {
        Span::styled(" (no description)", theme.dim())
    } else {
        Span::raw(format!(
            " {}",
            text::fit(&d.view.project.description, w - 1)
        ))
    };
    let mut top_line = vec![desc];
    if let Some(idle) = &d.idle {
        let used = top_line
            .iter()
            .map(|s| text::width(&s.content))
            .sum::<usize>();
        let room = w.saturating_sub(used + 3);
        if room > 10 {
            top_line.push(Span::styled(
                format!(
                    " · {}",
                    text::fit(&super::notifications::idle_summary(idle, ctx.now), room)
                ),
                theme.dim(),
            ));
        }
    }
    let mut top_lines = vec![Line::from(top_line)];
    top_lines.extend(git);
    frame.render_widget(Paragraph::new(top_lines), top);
    frame.render_widget(Paragraph::new(resources), res);
    frame.render_widget(Paragraph::new(connection(app, theme, d, w)), conn);
    frame.render_widget(Paragraph::new(env), env_area);
    frame.render_widget(
        Paragraph::new(event_lines(app, ctx, theme, d, w, events.height)),
        events,
    );
}

/// ` git  main ↑1, 3 changed · https://host/repo`: shown once the project
/// has a repository or its working tree turned out to be one.
fn git_line(
    app: &DetailScreen,
    theme: Theme,
    d: &ProjectDetail,
    w: usize,
) -> Option<Line<'static>> {
    let repo = d.view.project.git_repo.as_deref();
    let state = match &app.git {
        Some(Ok(Some(s))) => Span::raw(s.summary()),
        Some(Ok(None)) if repo.is_some() => Span::styled("no repository yet", theme.dim()),
        Some(Err(e)) if repo.is_some() => Span::styled(format!("unknown: {e}"), theme.dim()),
        None if repo.is_some() => Span::styled("reading…", theme.dim()),
        _ => return None,
    };
    let room = w.saturating_sub(6);
    let mut text_state = state.content.to_string();
    if let Some(r) = repo {
        text_state.push_str(" · ");
        text_state.push_str(r);
    }
    Some(Line::from(vec![
        Span::styled(" git  ", theme.title()),
        Span::styled(text::fit(&text_state, room), state.style),
    ]))
}

fn heading(theme: Theme, text: &str) -> Line<'static> {
    Line::styled(text.to_string(), theme.title())
}

/// The sandbox's terminal sessions, one row each, the selected one marked:
/// `▸ default   running             1 viewer   active 5s ago`. An exited
/// session says so, with its status, in the error style. At most `rows`
/// rows, in a window that keeps the selection visible.
fn session_lines(
    app: &DetailScreen,
    agents: &AgentsScreen,
    ctx: Ctx,
    theme: Theme,
    d: &ProjectDetail,
    w: usize,
    rows: usize,
) -> Vec<Line<'static>> {
    if d.sessions.is_empty() {
        return Vec::new();
    }
    let n = d.sessions.len();
    let selected = app.session_selected.min(n - 1);
    let start = selected
        .saturating_sub(rows.saturating_sub(1))
        .min(n.saturating_sub(rows));
    let end = (start + rows).min(n);
    let more = if n > rows {
        format!(" · {} of {}", end - start, n)
    } else {
        String::new()
    };
    let exited = d.sessions.iter().any(|s| s.state.is_exited());
    let hint = format!(
        "  Tab selects · a/Enter attaches{}{more}",
        if exited {
            " · R restarts an exited one"
        } else {
            ""
        }
    );
    let mut lines = vec![Line::from(vec![
        Span::styled(" Sessions", theme.title()),
        Span::styled(text::fit(&hint, w.saturating_sub(9)), theme.dim()),
    ])];
    let now = ctx.now.timestamp();
    for (i, s) in d.sessions.iter().enumerate().take(end).skip(start) {
        let mark = if i == selected { "▸" } else { " " };
        let viewers = match s.viewers {
            0 => String::new(),
            1 => "1 viewer".into(),
            v => format!("{v} viewers"),
        };
        let active = s
            .last_activity
            .map(|t| format!("active {} ago", short_age(now - t)))
            .unwrap_or_default();
        let name = format!("  {mark} {:<20} ", session_label(s));
        // A running program shows what its agent is doing when its hooks
        // have said (`» working 5s`), else plainly that it runs; an exited
        // one says so, whatever its hooks last said.
        let agent = agents.session(d.view.project.id, s.name.as_deref());
        let (state, state_style) = match agent {
            Some(a) if !s.state.is_exited() => {
                let span = super::list::agent_span(ctx, theme, a);
                (format!("{:<20}", span.content), span.style)
            }
            _ if s.state.is_exited() => (format!("{:<20}", s.state.describe()), theme.error()),
            _ => (format!("{:<20}", s.state.describe()), theme.ok()),
        };
        let rest = format!("{viewers:<11}{active}");
        let name_style = if i == selected {
            theme.selected()
        } else {
            Style::new()
        };
        let room = w.saturating_sub(text::width(&name));
        lines.push(Line::from(vec![
            Span::styled(name, name_style),
            Span::styled(text::fit(&state, room), state_style),
            Span::raw(text::fit(&rest, room.saturating_sub(20))),
        ]));
    }
    lines
}

fn short_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn resource_lines(ctx: Ctx, theme: Theme, d: &ProjectDetail, w: usize) -> Vec<Line<'static>> {
    let wide = w >= 120;
    let mut lines = vec![heading(theme, " Resources")];
    for r in &d.view.resources {
        let s = ProjectStatus::from(r.status);
        let mut spans = vec![
            Span::raw(format!("  {:<9}", r.kind.as_str())),
            Span::styled(
                format!("{:<14}", status_label(s, ctx.tick)),
                theme.status(s),
            ),
            Span::raw(format!("want {:<11}", r.desired.as_str())),
            Span::raw(format!("tries {:<4}", r.attempts)),
            // 51 columns precede the lease; it gets what is left of the row.
            Span::raw(text::fit(
                &format!("lease {}", lease(ctx, r)),
                w.saturating_sub(52),
            )),
        ];
        if wide {
            spans.push(Span::styled(
                format!("  {}", text::fit(&r.resource_name, 60)),
                theme.dim(),
            ));
        }
        lines.push(Line::from(spans));
        if let Some((why, style)) = why(ctx, theme, r) {
            lines.push(Line::styled(text::fit(&format!("    ↳ {why}"), w), style));
        }
    }
    if d.view.resources.is_empty() {
        lines.push(Line::styled("  (none left)", theme.dim()));
    }
    lines
}

/// Who holds the resource right now; an expired lease is nobody's.
fn lease(ctx: Ctx, r: &ResourceSummary) -> String {
    match (&r.lease_owner, r.lease_until) {
        (Some(owner), Some(until)) if until > ctx.now => {
            format!(
                "{} ({} left)",
                text::fit(owner, 24),
                super::style::age(until, ctx.now)
            )
        }
        _ => "–".into(),
    }
}

/// The reason a resource is not simply settled where it should be.
fn why(ctx: Ctx, theme: Theme, r: &ResourceSummary) -> Option<(String, Style)> {
    let next = r
        .next_attempt_at
        .map(|t| format!("next try {}", until(ctx.now, t)));
    if r.status == ResourceStatus::Error {
        let err = r
            .last_error
            .as_deref()
            .unwrap_or("no error message was recorded");
        return Some((
            format!("failed: {} — press r to retry", text::clean(err)),
            theme.error(),
        ));
    }
    if let Some(err) = &r.last_error {
        let mut s = format!("last error: {}", text::clean(err));
        s.push_str(&format!(" (attempt {}", r.attempts));
        if let Some(next) = &next {
            s.push_str(&format!(", {next}"));
        }
        s.push(')');
        return Some((s, theme.warn()));
    }
    if r.status.is_transition() {
        let who = match &r.lease_owner {
            Some(owner) if r.lease_until.is_some_and(|u| u > ctx.now) => {
                format!("being worked on by {}", text::clean(owner))
            }
            _ => "waiting for a worker".into(),
        };
        let tail = next.map(|n| format!("; {n}")).unwrap_or_default();
        return Some((format!("{who}{tail}"), theme.dim()));
    }
    if r.status != ResourceStatus::settled_at(r.desired) {
        return Some((format!("heading for {}", r.desired.as_str()), theme.dim()));
    }
    None
}

fn connection(app: &DetailScreen, theme: Theme, d: &ProjectDetail, w: usize) -> Vec<Line<'static>> {
    let value = match &d.database_url {
        Some(url) if app.show_password => Span::raw(text::fit(url, w - 4)),
        Some(url) => Span::raw(text::fit(&text::mask_password(url), w - 4)),
        None => Span::styled("(database not ready yet)", theme.dim()),
    };
    let hint = if d.database_url.is_some() && !app.show_password {
        "  (p shows the password)"
    } else {
        ""
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(" DATABASE_URL", theme.title()),
            Span::styled(hint, theme.dim()),
        ]),
        Line::from(vec![Span::raw("   "), value]),
    ];
    if let Some(app) = &d.app {
        lines.push(Line::from(vec![
            Span::styled(" App", theme.title()),
            Span::raw(text::fit(
                &format!(
                    "  port {} in the sandbox is http://{} on Kiln's host",
                    app.sandbox_port,
                    text::clean(&app.host_address)
                ),
                w.saturating_sub(4),
            )),
        ]));
    }
    lines
}

fn env_lines(
    app: &DetailScreen,
    theme: Theme,
    d: &ProjectDetail,
    w: usize,
    rows: usize,
) -> Vec<Line<'static>> {
    let state = app.env_state().unwrap_or_default();
    let mut lines = vec![Line::from(vec![
        Span::styled(format!(" Environment ({})", d.env.len()), theme.title()),
        Span::styled(
            text::fit(&format!("  {state} · e edits"), w.saturating_sub(18)),
            theme.dim(),
        ),
    ])];
    for var in d.env.iter().take(rows) {
        lines.push(Line::raw(text::fit(
            &format!("   {}", super::env::var_text(var, w)),
            w,
        )));
    }
    if d.env.len() > rows {
        lines.push(Line::styled(
            format!("   … {} more", d.env.len() - rows),
            theme.dim(),
        ));
    }
    lines
}

/// The events window: newest at the bottom, `event_scroll` rows back in time.
fn event_lines(
    app: &DetailScreen,
    ctx: Ctx,
    theme: Theme,
    d: &ProjectDetail,
    w: usize,
    h: u16,
) -> Vec<Line<'static>> {
    let rows = usize::from(h.saturating_sub(1));
    let end = d.events.len().saturating_sub(app.event_scroll);
    let start = end.saturating_sub(rows);
    let scrolled = if app.event_scroll > 0 {
        format!("  ({} newer below, ↓)", app.event_scroll)
    } else {
        String::new()
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(" Events", theme.title()),
        Span::styled(format!(" (newest last){scrolled}"), theme.dim()),
    ])];
    if d.events.is_empty() {
        lines.push(Line::styled("   (none yet)", theme.dim()));
    }
    for e in &d.events[start..end] {
        let change = match (&e.from_status, &e.to_status) {
            (Some(f), Some(t)) => format!("{}→{} ", text::fit(f, 12), text::fit(t, 12)),
            (None, Some(t)) => format!("→{} ", text::fit(t, 12)),
            _ => String::new(),
        };
        let body = format!(
            "{} {} {}{} ({})",
            text::fit(&e.kind, 8),
            text::fit(&e.resource, 24),
            change,
            text::clean(&e.message),
            text::clean(&e.actor)
        );
        lines.push(Line::from(vec![
            Span::styled(
                format!("   {:>4} ", age(ctx.now, e.created_at)),
                theme.dim(),
            ),
            Span::raw(text::fit(&body, w.saturating_sub(8))),
        ]));
    }
    lines
}
