//! The embedded terminal pane: a vt100 screen fed by the sandbox session's
//! output, drawn with tui-term inside the dashboard frame. While it is open
//! the session sends keystrokes straight to the sandbox; only the prefix
//! (Ctrl-] unless configured) followed by a command key comes back to the
//! dashboard.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders};
use tui_term::widget::PseudoTerminal;

use super::text;

/// The pane keeps no history of its own: `[` opens the session's (tmux keeps
/// 50,000 lines), which survives detaching and is the same for every viewer.
const SCROLLBACK: usize = 0;

pub struct Pane {
    pub project: String,
    /// As shown in the title.
    pub session: String,
    /// The session's name (`None`: the default one).
    pub name: Option<String>,
    pub read_only: bool,
    pub zoomed: bool,
    /// Shown in the title: the key that leads to the pane's commands.
    pub prefix: super::prefix::PrefixKey,
    parser: vt100::Parser,
    /// The screen as the last full frame drew it, for the echo preview.
    shown: Option<vt100::Screen>,
    /// Output or a resize since `shown` was taken.
    changed: bool,
    /// The rows output has changed since `shown` was taken, when every
    /// chunk since then stayed on its row (`None`: not known).
    changed_rows: Option<Vec<u16>>,
    rows_scan: super::row_scan::RowScan,
}

impl std::fmt::Debug for Pane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pane")
            .field("project", &self.project)
            .field("session", &self.session)
            .field("read_only", &self.read_only)
            .field("zoomed", &self.zoomed)
            .finish()
    }
}

impl Pane {
    pub fn new(project: &str, session: &str, read_only: bool, cols: u16, rows: u16) -> Pane {
        Pane {
            project: project.to_string(),
            session: session.to_string(),
            name: None,
            read_only,
            zoomed: false,
            prefix: super::prefix::PrefixKey::default(),
            parser: vt100::Parser::new(rows.max(1), cols.max(1), SCROLLBACK),
            shown: None,
            changed: true,
            changed_rows: None,
            rows_scan: Default::default(),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        let screen = self.parser.screen();
        let (row, col) = screen.cursor_position();
        let in_line = self.rows_scan.stays_on_row(bytes, col, screen.size().1);
        self.parser.process(bytes);
        self.changed = true;
        match &mut self.changed_rows {
            Some(rows) if in_line && self.parser.screen().cursor_position().0 == row => {
                if !rows.contains(&row) {
                    rows.push(row);
                }
            }
            unknown => *unknown = None,
        }
    }

    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.parser.screen_mut().set_size(rows.max(1), cols.max(1));
        self.changed = true;
        self.changed_rows = None;
    }

    /// The rows a small change of the screen touched, drawn as the next full
    /// frame will draw them (see [`echo_preview`](super::echo_preview)).
    pub fn echo_preview(&self, width: u16, height: u16) -> Option<super::echo_preview::Preview> {
        if width < super::view::MIN_WIDTH || height < super::view::MIN_HEIGHT {
            return None;
        }
        super::echo_preview::preview(
            self.shown.as_ref()?,
            self.parser.screen(),
            self.area(width, height),
            !self.read_only,
            self.changed_rows.as_deref(),
        )
    }

    /// A full frame has drawn the current screen.
    pub fn drawn(&mut self) {
        if self.changed {
            self.shown = Some(self.parser.screen().clone());
            self.changed = false;
        }
        self.changed_rows = Some(Vec::new());
    }

    /// The program in the pane asked for bracketed paste (tmux passes the
    /// request on to its terminal, this screen).
    pub fn wants_paste_markers(&self) -> bool {
        self.parser.screen().bracketed_paste()
    }

    pub fn screen_text(&self) -> String {
        self.parser.screen().contents()
    }

    /// Where the pane goes in a `width`×`height` window: the whole window when
    /// zoomed (title on the top row), else inside the dashboard's frame.
    pub fn area(&self, width: u16, height: u16) -> Rect {
        if self.zoomed {
            Rect::new(0, 1, width, height.saturating_sub(1))
        } else {
            // header row, bordered block, status and footer rows
            Rect::new(1, 2, width.saturating_sub(2), height.saturating_sub(5))
        }
    }

    pub fn title(&self) -> String {
        let size = self.parser.screen().size();
        // A read-only viewer sends no keys: no history (tmux's copy mode is
        // driven by keys), no new session, no restart.
        let commands = if self.read_only {
            "d detach · z zoom · w switch"
        } else {
            "d detach · z zoom · [ history · n new · w switch · r restart"
        };
        format!(
            " {} · {} · {}×{}{} · {} {commands} ",
            text::fit(&self.project, 30),
            text::fit(&self.session, 30),
            size.1,
            size.0,
            if self.read_only { " · READ-ONLY" } else { "" },
            self.prefix.label(),
        )
    }

    pub fn draw(&self, frame: &mut Frame, window: Rect) {
        let inner = self.area(window.width, window.height);
        let title = self.title();
        let block_area = if self.zoomed {
            let top = Rect::new(0, 0, window.width, 1);
            frame.render_widget(
                ratatui::widgets::Paragraph::new(text::fit(&title, window.width.into()))
                    .style(Style::default().add_modifier(Modifier::REVERSED)),
                top,
            );
            inner
        } else {
            Rect::new(inner.x - 1, inner.y - 1, inner.width + 2, inner.height + 2)
        };
        let widget = PseudoTerminal::new(self.parser.screen());
        if self.zoomed {
            frame.render_widget(widget, block_area);
        } else {
            frame.render_widget(
                widget.block(Block::default().borders(Borders::ALL).title(title)),
                block_area,
            );
        }
        let screen = self.parser.screen();
        if !screen.hide_cursor() && !self.read_only {
            let (row, col) = screen.cursor_position();
            frame.set_cursor_position((inner.x + col, inner.y + row));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn rows_changed_since_the_last_frame_are_known_only_while_output_stays_in_line() {
        let mut pane = Pane::new("blog", "s", false, 78, 19);
        pane.feed(b"one\r\n$ ");
        assert_eq!(pane.changed_rows, None, "nothing drawn yet");
        pane.drawn();
        assert_eq!(pane.changed_rows.as_deref(), Some(&[][..]));
        pane.feed(b"l");
        pane.feed(b"s\x08 \x08");
        assert_eq!(pane.changed_rows.as_deref(), Some(&[1][..]));
        // A new line may scroll: unknown until the next full frame.
        pane.feed(b"\r\n");
        assert_eq!(pane.changed_rows, None);
        pane.feed(b"x");
        assert_eq!(pane.changed_rows, None);
        pane.drawn();
        pane.feed(b"x");
        assert_eq!(pane.changed_rows.as_deref(), Some(&[2][..]));
        pane.resize(60, 10);
        assert_eq!(pane.changed_rows, None);
    }

    #[test]
    fn output_is_drawn_inside_the_frame_with_the_detach_key_in_the_title() {
        let mut pane = Pane::new("blog", "blog-agentruntime-abc123", false, 78, 19);
        pane.feed(b"\x1b[31mhello\x1b[0m world\r\n$ ");
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| pane.draw(f, f.area())).unwrap();
        let text: String = t
            .backend()
            .buffer()
            .content()
            .chunks(80)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
            .collect();
        assert!(text.contains("hello world"), "{text}");
        assert!(text.contains("Ctrl-] d detach"), "{text}");
        let fg = t.backend().buffer()[(1, 2)].fg;
        assert!(
            matches!(
                fg,
                ratatui::style::Color::Red | ratatui::style::Color::Indexed(1)
            ),
            "{fg:?}"
        );
    }

    #[test]
    fn zoom_takes_the_whole_window() {
        let mut pane = Pane::new("p", "s", true, 10, 10);
        assert_eq!(pane.area(100, 30), Rect::new(1, 2, 98, 25));
        pane.zoomed = true;
        assert_eq!(pane.area(100, 30), Rect::new(0, 1, 100, 29));
        assert!(pane.title().contains("READ-ONLY"));
    }

    #[test]
    fn a_read_only_title_lists_only_the_commands_a_viewer_has() {
        let viewer = Pane::new("p", "s", true, 80, 20).title();
        assert!(
            viewer.contains("READ-ONLY · Ctrl-] d detach · z zoom · w switch"),
            "{viewer}"
        );
        assert!(
            !viewer.contains("history") && !viewer.contains("restart"),
            "{viewer}"
        );
        let writer = Pane::new("p", "s", false, 80, 20).title();
        assert!(!writer.contains("READ-ONLY"), "{writer}");
        assert!(
            writer.contains("[ history · n new · w switch · r restart"),
            "{writer}"
        );
    }
}
