//! The sandbox log screen: what the sandbox printed, followed live. Pure:
//! the session feeds it `LogEvent`s and keys; it keeps a bounded window of
//! lines (a chatty sandbox cannot grow the console's memory) and a scroll
//! position that sticks to the end unless the reader scrolled back.

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::driver::LogEvent;
use crate::tui::keys::{Action, Binding, Key};
use crate::tui::text;
use crate::tui::view::style::Theme;

/// Lines kept; older ones are dropped (the full log stays in the cluster).
pub const MAX_LINES: usize = 5000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogView {
    pub project: String,
    lines: VecDeque<String>,
    /// Lines dropped from the front since the view opened.
    dropped: u64,
    /// Lines scrolled back from the newest; 0 = following the end.
    scroll: usize,
    /// What the follower last said (waiting for the pod, reconnecting).
    notice: Option<String>,
    /// The follower has stopped (the stream ended without follow).
    ended: bool,
}

impl LogView {
    /// The log screen's keys.
    pub fn bindings() -> Vec<Binding> {
        let mut v = vec![
            Binding::new(Key::Esc, "back", Action::Back),
            Binding::new(Key::Char('q'), "back", Action::Back).help_only(),
            Binding::new(Key::PageUp, "scroll back", Action::PageUp),
            Binding::new(Key::End, "follow", Action::Bottom),
        ];
        v.extend(crate::tui::screens::bindings::movement("list"));
        v.push(Binding::new(Key::Char('G'), "follow", Action::Bottom).help_only());
        v.push(Binding::new(Key::Char('?'), "help", Action::Help));
        v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
        v
    }

    pub fn new(project: &str) -> LogView {
        LogView {
            project: project.to_string(),
            lines: VecDeque::new(),
            dropped: 0,
            scroll: 0,
            notice: None,
            ended: false,
        }
    }

    /// One event from the follower. A line is cleaned of control
    /// sequences first: a sandbox must not be able to drive the console's
    /// terminal. A reader scrolled back keeps looking at the same lines.
    pub fn push(&mut self, event: LogEvent) {
        match event {
            LogEvent::Line(l) => {
                self.lines.push_back(text::clean(&l));
                if self.lines.len() > MAX_LINES {
                    self.lines.pop_front();
                    self.dropped += 1;
                } else if self.scroll > 0 {
                    self.scroll += 1;
                }
                self.notice = None;
            }
            LogEvent::Notice(n) => self.notice = Some(text::clean(&n)),
        }
    }

    /// The follower is gone.
    pub fn end(&mut self) {
        self.ended = true;
    }

    pub fn following(&self) -> bool {
        self.scroll == 0
    }

    pub fn scroll_up(&mut self, n: usize) {
        self.scroll = (self.scroll + n).min(self.lines.len().saturating_sub(1));
    }

    pub fn scroll_down(&mut self, n: usize) {
        self.scroll = self.scroll.saturating_sub(n);
    }

    pub fn top(&mut self) {
        self.scroll = self.lines.len().saturating_sub(1);
    }

    pub fn follow(&mut self) {
        self.scroll = 0;
    }

    /// The lines a window of `height` rows shows, oldest first.
    pub fn visible(&self, height: usize) -> impl Iterator<Item = &str> {
        let end = self.lines.len().saturating_sub(self.scroll);
        let start = end.saturating_sub(height);
        self.lines.range(start..end).map(String::as_str)
    }

    /// The line under the title: where the reader is and what the follower does.
    pub fn state_line(&self) -> String {
        let position = if self.ended && self.following() {
            "stopped".to_string()
        } else if self.following() {
            "following".to_string()
        } else {
            format!("{} lines back (End follows)", self.scroll)
        };
        let mut s = format!("{} lines · {position}", self.lines.len());
        if self.dropped > 0 {
            s.push_str(&format!(" · {} older dropped", self.dropped));
        }
        match (&self.notice, self.ended) {
            // An empty log shows its notice in the body; once is enough.
            (Some(n), _) if !self.lines.is_empty() => s.push_str(&format!(" · {n}")),
            (None, true) => s.push_str(" · end of log"),
            _ => {}
        }
        s
    }

    pub fn draw(&self, theme: Theme, frame: &mut Frame, area: Rect) {
        let block = Block::bordered().title(Span::styled(
            format!(" Sandbox log — {} ", text::fit(&self.project, 50)),
            theme.title(),
        ));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let [state, body] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        let w = usize::from(inner.width);
        frame.render_widget(
            Paragraph::new(Line::styled(
                text::fit(&format!(" {}", self.state_line()), w),
                theme.dim(),
            )),
            state,
        );
        if self.lines.is_empty() {
            let msg = match (&self.notice, self.ended) {
                (Some(n), _) => format!(" {n}"),
                (None, true) => " The log is empty".to_string(),
                (None, false) => " Waiting for output…".to_string(),
            };
            frame.render_widget(Paragraph::new(Line::styled(msg, theme.dim())), body);
            return;
        }
        let lines: Vec<Line> = self
            .visible(usize::from(body.height))
            .map(|l| Line::raw(text::fit(l, w)))
            .collect();
        frame.render_widget(Paragraph::new(lines), body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> LogEvent {
        LogEvent::Line(s.into())
    }

    #[test]
    fn follows_the_end_until_scrolled_back_then_holds_still() {
        let mut v = LogView::new("shop");
        for i in 0..10 {
            v.push(line(&format!("l{i}")));
        }
        assert_eq!(v.visible(3).collect::<Vec<_>>(), ["l7", "l8", "l9"]);
        v.scroll_up(2);
        assert_eq!(v.visible(3).collect::<Vec<_>>(), ["l5", "l6", "l7"]);
        v.push(line("l10"));
        assert_eq!(
            v.visible(3).collect::<Vec<_>>(),
            ["l5", "l6", "l7"],
            "new lines do not move a reader who scrolled back"
        );
        v.follow();
        assert_eq!(v.visible(3).collect::<Vec<_>>(), ["l8", "l9", "l10"]);
        v.scroll_up(1000);
        assert_eq!(v.visible(2).collect::<Vec<_>>(), ["l0"]);
        v.top();
        v.scroll_down(1000);
        assert!(v.following());
    }

    #[test]
    fn memory_is_bounded_and_drops_are_counted() {
        let mut v = LogView::new("shop");
        for i in 0..(MAX_LINES + 7) {
            v.push(line(&i.to_string()));
        }
        assert_eq!(v.visible(usize::MAX).count(), MAX_LINES);
        assert_eq!(
            v.visible(1).next(),
            Some((MAX_LINES + 6).to_string().as_str())
        );
        assert!(
            v.state_line().contains("7 older dropped"),
            "{}",
            v.state_line()
        );
    }

    #[test]
    fn control_sequences_from_the_sandbox_are_neutralised() {
        let mut v = LogView::new("shop");
        v.push(line("\x1b[2J\x1b]0;pwned\x07hello"));
        let shown: Vec<&str> = v.visible(1).collect();
        assert!(!shown[0].contains('\x1b'), "{shown:?}");
        assert!(shown[0].contains("hello"));
    }

    #[test]
    fn notices_show_until_the_next_line() {
        let mut v = LogView::new("shop");
        v.push(line("booting"));
        v.push(LogEvent::Notice("waiting for pod shop-0…".into()));
        assert!(v.state_line().contains("waiting for pod"));
        v.push(line("up"));
        assert!(!v.state_line().contains("waiting"));
        v.end();
        assert!(v.state_line().ends_with("end of log"));
    }
}
