//! What a Claude Code session in a sandbox is doing, as its own hooks
//! report it (never guessed from the screen): the states, the hook events
//! that move them, and the checks an untrusted hook report passes before
//! anything is stored.
//!
//! A report comes from inside a sandbox, so everything in it is hostile
//! until shown otherwise: its size is bounded before it is parsed, only
//! the fields Kiln uses are read, and the message is cut and stripped of
//! control characters before it is stored (it is shown on dashboards).

use serde::{Deserialize, Serialize};

use super::naming::printable;

/// The largest hook payload Kiln reads, in bytes. Claude Code's own
/// payloads are well under this (a `PreToolUse` carries the tool's input,
/// which Kiln ignores, so a larger one is cut, not refused, by the sender).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The longest message kept (characters), e.g. Claude's permission prompt.
pub const MAX_MESSAGE: usize = 300;

/// The longest session name a report may carry (tmux's own names are short).
pub const MAX_SESSION: usize = 64;

/// A session's agent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// A prompt was submitted or a tool is running.
    Working,
    /// A permission prompt or an elicitation waits for the user.
    NeedsInput,
    /// Waiting for a new prompt.
    Idle,
    /// Claude finished its turn (`Stop`).
    Done,
    /// The session ended (`SessionEnd`).
    Ended,
    /// No hook heard (a plain shell, or nothing reported yet).
    Unknown,
}

impl AgentState {
    pub const ALL: [AgentState; 6] = [
        AgentState::Working,
        AgentState::NeedsInput,
        AgentState::Idle,
        AgentState::Done,
        AgentState::Ended,
        AgentState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Working => "working",
            AgentState::NeedsInput => "needs_input",
            AgentState::Idle => "idle",
            AgentState::Done => "done",
            AgentState::Ended => "ended",
            AgentState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<AgentState> {
        AgentState::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// A glyph per state that differs by shape, so the states read the
    /// same without colour (NO_COLOR, colour blindness).
    pub fn glyph(self) -> char {
        match self {
            AgentState::Working => '»',
            AgentState::NeedsInput => '?',
            AgentState::Idle => '○',
            AgentState::Done => '✓',
            AgentState::Ended => '■',
            AgentState::Unknown => '·',
        }
    }

    /// Whether a person is needed (the inbox, the header count).
    pub fn needs_you(self) -> bool {
        self == AgentState::NeedsInput
    }

    /// Whether entering this state is news worth a notification and a bell.
    pub fn notifies(self) -> bool {
        matches!(self, AgentState::NeedsInput | AgentState::Done)
    }

    /// Whether the agent is busy or waiting on a person: such a session is
    /// never idle for an idle policy.
    pub fn is_active(self) -> bool {
        matches!(self, AgentState::Working | AgentState::NeedsInput)
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The event Kiln itself reports when a session's program exits without
/// saying `SessionEnd` (killed, crashed): tmux's `pane-died` hook runs
/// `kiln hook --exited` in the sandbox (see `agent_settings::pane_died_hook`).
pub const PROGRAM_EXITED: &str = "KilnProgramExited";

/// A state to enter, as a hook report asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: AgentState,
    /// Claude's message (permission prompts), made printable and cut.
    pub message: String,
    /// Only a session whose agent has reported before moves: a program that
    /// exits is news about an agent, but a plain shell that exits stays
    /// `unknown` (no hook was ever heard from it).
    pub if_reported: bool,
}

impl Transition {
    fn to(state: AgentState) -> Transition {
        Transition {
            state,
            message: String::new(),
            if_reported: false,
        }
    }
}

/// Why a hook report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the hook payload is larger than {MAX_PAYLOAD} bytes")]
    TooLarge,
    #[error("the hook payload is not a JSON object: {0}")]
    NotJson(String),
    #[error("the hook payload has no hook_event_name")]
    NoEvent,
    #[error("the session name is invalid")]
    BadSession,
}

/// The fields Kiln reads from a hook's JSON payload; everything else
/// (tool inputs, transcript paths) is ignored.
#[derive(Debug, Deserialize)]
struct Payload {
    hook_event_name: Option<String>,
    notification_type: Option<String>,
    message: Option<String>,
}

/// Parses one hook payload and says which state it moves the session to;
/// `Ok(None)` for events that move nothing (`SubagentStop`, an unknown
/// notification type, an event Kiln does not follow).
pub fn transition(payload: &[u8]) -> Result<Option<Transition>, ReportError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ReportError::TooLarge);
    }
    let p: Payload =
        serde_json::from_slice(payload).map_err(|e| ReportError::NotJson(e.to_string()))?;
    let event = p.hook_event_name.ok_or(ReportError::NoEvent)?;
    let message = || printable(p.message.as_deref().unwrap_or("").trim(), MAX_MESSAGE);
    let state = match event.as_str() {
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" => AgentState::Working,
        "Notification" => match p.notification_type.as_deref() {
            Some("permission_prompt" | "elicitation_dialog") => {
                return Ok(Some(Transition {
                    message: message(),
                    ..Transition::to(AgentState::NeedsInput)
                }));
            }
            Some("idle_prompt") => AgentState::Idle,
            _ => return Ok(None),
        },
        "Stop" => AgentState::Done,
        "SessionStart" => AgentState::Idle,
        "SessionEnd" => AgentState::Ended,
        PROGRAM_EXITED => {
            return Ok(Some(Transition {
                if_reported: true,
                ..Transition::to(AgentState::Ended)
            }));
        }
        _ => return Ok(None),
    };
    Ok(Some(Transition::to(state)))
}

/// A session name from a report: empty for the sandbox's default session,
/// else a tmux-style name (the rule of `model::session`).
pub fn check_report_session(s: &str) -> Result<Option<String>, ReportError> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > MAX_SESSION || super::session::check_session_name(s).is_err() {
        return Err(ReportError::BadSession);
    }
    Ok(Some(s.to_owned()))
}

/// How long a state has lasted, short: `12s`, `4m`, `3h`, `2d`.
pub fn short_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(json: &str) -> Option<Transition> {
        transition(json.as_bytes()).unwrap()
    }

    #[test]
    fn every_followed_hook_moves_to_its_state() {
        let cases = [
            (
                r#"{"hook_event_name":"UserPromptSubmit","prompt":"hi"}"#,
                AgentState::Working,
            ),
            (
                r#"{"hook_event_name":"PreToolUse","tool_name":"Bash"}"#,
                AgentState::Working,
            ),
            (r#"{"hook_event_name":"PostToolUse"}"#, AgentState::Working),
            (
                r#"{"hook_event_name":"Notification","notification_type":"idle_prompt","message":"x"}"#,
                AgentState::Idle,
            ),
            (
                r#"{"hook_event_name":"Stop","stop_hook_active":false}"#,
                AgentState::Done,
            ),
            (
                r#"{"hook_event_name":"SessionStart","source":"startup"}"#,
                AgentState::Idle,
            ),
            (
                r#"{"hook_event_name":"SessionEnd","reason":"exit"}"#,
                AgentState::Ended,
            ),
        ];
        for (json, state) in cases {
            assert_eq!(t(json).map(|t| t.state), Some(state), "{json}");
        }
    }

    #[test]
    fn a_permission_prompt_needs_input_with_its_message_made_printable() {
        let got = t(r#"{"hook_event_name":"Notification","notification_type":"permission_prompt","message":"Claude needs your permission to use \u001b[2JBash"}"#).unwrap();
        assert_eq!(got.state, AgentState::NeedsInput);
        assert_eq!(got.message, "Claude needs your permission to use ?[2JBash");
        let long = format!(
            r#"{{"hook_event_name":"Notification","notification_type":"elicitation_dialog","message":"{}"}}"#,
            "a".repeat(5000)
        );
        let got = t(&long).unwrap();
        assert_eq!(got.state, AgentState::NeedsInput);
        assert_eq!(got.message.chars().count(), MAX_MESSAGE + 1);
    }

    #[test]
    fn a_program_that_exited_ends_only_a_session_that_reported() {
        let exited = t(&format!(r#"{{"hook_event_name":"{PROGRAM_EXITED}"}}"#)).unwrap();
        assert_eq!(exited.state, AgentState::Ended);
        assert!(exited.if_reported);
        let end = t(r#"{"hook_event_name":"SessionEnd"}"#).unwrap();
        assert!(!end.if_reported);
    }

    #[test]
    fn events_kiln_does_not_follow_move_nothing() {
        assert_eq!(t(r#"{"hook_event_name":"SubagentStop"}"#), None);
        assert_eq!(
            t(r#"{"hook_event_name":"Notification","notification_type":"auth_success"}"#),
            None
        );
        assert_eq!(t(r#"{"hook_event_name":"Notification"}"#), None);
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert_eq!(transition(b"{}"), Err(ReportError::NoEvent));
        assert!(matches!(transition(b"nope"), Err(ReportError::NotJson(_))));
        assert!(matches!(transition(b"[1]"), Err(ReportError::NotJson(_))));
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(transition(&big), Err(ReportError::TooLarge));
        assert!(matches!(
            transition(br#"{"hook_event_name":7}"#),
            Err(ReportError::NotJson(_))
        ));
    }

    #[test]
    fn report_sessions_are_default_or_valid_names() {
        assert_eq!(check_report_session(""), Ok(None));
        assert_eq!(check_report_session("s1"), Ok(Some("s1".into())));
        assert_eq!(check_report_session("a:b"), Err(ReportError::BadSession));
        assert_eq!(
            check_report_session(&"x".repeat(65)),
            Err(ReportError::BadSession)
        );
    }

    #[test]
    fn glyphs_differ_by_shape_and_states_round_trip() {
        let glyphs: std::collections::HashSet<char> =
            AgentState::ALL.iter().map(|s| s.glyph()).collect();
        assert_eq!(glyphs.len(), AgentState::ALL.len());
        for s in AgentState::ALL {
            assert_eq!(AgentState::parse(s.as_str()), Some(s));
        }
        assert!(AgentState::NeedsInput.notifies() && AgentState::Done.notifies());
        assert!(!AgentState::Working.notifies());
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(-3), "0s");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(61), "1m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(200000), "2d");
    }
}
