//! Colours and symbols. Every status carries a symbol and its name, so it stays
//! readable with NO_COLOR (where only bold/dim/reverse are used).

use chrono::{DateTime, Utc};
use ratatui::style::{Color, Modifier, Style};

use crate::model::ProjectStatus;

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub no_color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.no_color {
            Style::new()
        } else {
            Style::new().fg(c)
        }
    }

    pub fn status(self, s: ProjectStatus) -> Style {
        use ProjectStatus as P;
        match s {
            P::Running => self.fg(Color::Green),
            P::Stopped => self.fg(Color::Gray),
            P::Error => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            P::Partial => self.fg(Color::Yellow),
            P::Creating => self.fg(Color::Cyan),
            P::Starting => self.fg(Color::LightGreen),
            P::Stopping => self.fg(Color::LightYellow),
            P::Terminating => self.fg(Color::Magenta),
            P::Terminated => self.dim(),
        }
    }

    /// Disabled keys and secondary text.
    pub fn dim(self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            Style::new().fg(Color::DarkGray)
        }
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn ok(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// An agent's state; the glyph beside it carries the state without colour.
    pub fn agent(self, s: crate::model::agent::AgentState) -> Style {
        use crate::model::agent::AgentState as A;
        match s {
            A::NeedsInput => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            A::Working => self.fg(Color::Cyan),
            A::Done => self.fg(Color::Green),
            A::Idle => Style::new(),
            A::Ended | A::Unknown => self.dim(),
        }
    }

    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
}

/// "● RUNNING", or a spinner frame for a status that is still moving.
pub fn status_label(s: ProjectStatus, tick: usize) -> String {
    use ProjectStatus as P;
    let symbol = match s {
        P::Running => '●',
        P::Stopped => '○',
        P::Error => '✗',
        P::Partial => '◐',
        P::Terminated => '·',
        P::Creating | P::Starting | P::Stopping | P::Terminating => SPINNER[tick % SPINNER.len()],
    };
    format!("{symbol} {}", s.as_str())
}

/// "12s", "5m", "3h", "4d": how long ago `t` was (never negative).
pub fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// "in 12s" / "now" for a time that may be due.
pub fn until(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    if t <= now {
        "now".into()
    } else {
        format!("in {}", age(t, now))
    }
}
