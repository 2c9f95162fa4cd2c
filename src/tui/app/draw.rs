//! `App::view`: the current screen drawn from its own state, inside the
//! header, status line and footer; the dialog and help on top.

use ratatui::Frame;
use ratatui::widgets::Paragraph;

use super::{App, Screen};
use crate::tui::screens::Ctx;
use crate::tui::screens::notifications::coming_stops;
use crate::tui::text;
use crate::tui::view::{self, dialogs, style::Theme};

pub(super) fn draw(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let theme = Theme {
        no_color: app.no_color,
    };
    if view::too_small(theme, frame) {
        return;
    }
    let ctx = Ctx {
        now: app.now,
        tick: app.tick,
    };
    let [header, body, status, footer] = view::rows(area);
    let stale = app.stale.as_ref().map(|why| format!("⚠ {why}"));
    let notice = stale.as_deref().or(app.notice.as_deref());
    let draw_header = |frame: &mut Frame| {
        view::draw_header(
            &app.username,
            notice,
            app.agents.need_you(),
            app.notifications.unread,
            theme,
            frame,
            header,
        )
    };
    if let Some(pane) = &app.pane {
        // The pane owns the window; the header and footer stay for orientation.
        if !pane.zoomed {
            draw_header(frame);
            view::draw_status(app.status.as_ref(), theme, frame, status);
            let hint = view::pane_hint(&app.prefix.label(), pane.read_only);
            frame.render_widget(
                Paragraph::new(text::fit(&hint, area.width.into())).style(theme.dim()),
                footer,
            );
        }
        pane.draw(frame, area);
        return;
    }
    draw_header(frame);
    // An idle stop coming is announced above the list and the detail screen.
    let stops = match app.screen {
        Screen::List => coming_stops(app.list.projects.iter().flatten()),
        Screen::Detail => coming_stops(app.target()),
        _ => Vec::new(),
    };
    let body = view::notifications::draw_idle_banner(&stops, app.now, theme, frame, body);
    match app.screen {
        Screen::Notifications => {
            view::notifications::draw(&app.notifications, ctx, theme, frame, body)
        }
        Screen::List => view::list::draw(&app.list, &app.agents, ctx, theme, frame, body),
        Screen::Detail => view::detail::draw(&app.detail, &app.agents, ctx, theme, frame, body),
        Screen::Inbox => view::inbox::draw(&app.agents, ctx, theme, frame, body),
        Screen::Admin => {
            if let Some(a) = &app.admin {
                view::admin::draw(a, ctx, theme, frame, body);
            }
        }
        Screen::Env => view::env::draw(&app.env, &app.detail, theme, frame, body),
        Screen::Settings => view::settings::draw(&app.settings, ctx, theme, frame, body),
        Screen::Logs => {
            if let Some(l) = &app.logs {
                l.draw(theme, frame, body);
            }
        }
    }
    view::draw_status(app.status.as_ref(), theme, frame, status);
    view::draw_footer(&app.bindings(), theme, frame, footer);
    let under = dialogs::Under {
        project: app.detail.open.as_deref(),
        settings: app.settings.data.as_ref(),
    };
    dialogs::draw(app.overlay.as_ref(), &under, theme, frame, body);
    if app.help {
        let typing = app.overlay.is_some() || app.list.filtering;
        dialogs::help(&app.help_bindings(), typing, theme, frame, body);
    }
}
