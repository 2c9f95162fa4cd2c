//! What flows between the dashboard and its SSH session: `Msg`s in,
//! `Effect`s out. An effect that is answered says with what (`Effect::tag`),
//! and the session copies that tag into its `Msg::Done`, so a reply is
//! matched by what it says, never by the order replies arrive in.

use crate::model::intent::Intent;
use crate::store::projects::ProjectView;

pub use crate::tui::keys::Key;
pub use crate::tui::secret::SecretText;

use super::{ProjectDetail, SettingsData};

pub enum Msg {
    Key(Key),
    Paste(String),
    Resize(u16, u16),
    /// Full refresh of the user's projects (after any change notification).
    Projects(Vec<ProjectView>),
    /// The project list could not be refreshed (the reason, said until a
    /// refresh succeeds): the list on screen may be out of date.
    ProjectsStale(String),
    /// Answer to Effect::LoadDetail.
    Detail(Box<ProjectDetail>),
    /// Outcome of an effect: `Ok(info line)` or `Err(one-line error to show)`,
    /// tagged with what it answers (the effect's [`Effect::tag`]).
    Done(Reply, Result<String, String>),
    /// Animation tick (spinners); only sent while App::animating() is true.
    Tick,
    /// Answer to Effect::LoadSettings.
    Settings(Box<SettingsData>),
    /// Effect::Attach or Effect::SwitchSession succeeded: the pane opens on
    /// this session.
    PaneOpened {
        project: String,
        /// As shown on screen.
        session: String,
        /// The session's name (`None`: the default one), for switching and
        /// restarting from the pane.
        name: Option<String>,
        read_only: bool,
    },
    /// Output of the attached session.
    PaneOutput(Vec<u8>),
    /// The attachment ended (the reason is shown in the status line).
    PaneClosed(String),
    /// A line about the pane; the pane stays. `Err` is a refusal or a
    /// failure (a session switch failed), shown as an error.
    PaneNotice(Result<String, String>),
    /// The key typed after the pane's prefix key.
    PaneCommand(PaneCommand),
    /// From the log follower of Effect::FollowLogs.
    Log(crate::driver::LogEvent),
    /// The log follower has stopped (or could not start: the reason).
    LogEnded(Option<String>),
    /// Time to refresh the open project's session list (sent every few
    /// seconds; answered with `Effect::LoadSessions` while it is on screen).
    PollSessions,
    /// Answer to Effect::LoadSessions.
    Sessions {
        project: String,
        sessions: Vec<crate::driver::SessionInfo>,
    },
    /// The agent states of the user's sessions (loaded with the projects).
    Agents(Vec<crate::store::agents::AgentRow>),
    /// Answer to Effect::LoadTeams: the teams the user may create in.
    Teams(Vec<String>),
    /// Answer to Effect::LoadAdmin.
    Admin(Box<crate::console::AdminOverview>),
    /// How many notifications are unread (counted with the projects).
    Unread(i64),
    /// Answer to Effect::LoadNotifications (they are read now).
    Notifications(Vec<crate::store::agents::Notification>),
    /// Answer to Effect::LoadGit: the working tree's state (`None`: not a
    /// repository) or why it could not be read.
    Git {
        project: String,
        state: Result<Option<crate::model::git::GitState>, String>,
    },
    /// Answer to Effect::LoadTemplates.
    Templates(Vec<crate::console::TemplateInfo>),
}

/// What a `Msg::Done` answers, and so what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A change to a project (intent, create, restart): the open project reloads.
    Change,
    /// A change to the open project's env: it also marks the env as changed.
    Env,
    /// A change on the settings screen: the settings reload, after failures too.
    Settings,
    /// A restart asked for from the pane: a line about the pane, like `Msg::PaneNotice`.
    Pane,
    /// A load that failed (detail, settings): the error is shown, nothing follows.
    Load,
    /// Nobody asked (the project list failed to load): shown, nothing follows.
    Unsolicited,
    /// An admin's intent from the admin screen: its data reloads.
    Admin,
}

/// Secrets are `SecretText`, so the derived `Debug` never shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Quit,
    Intent {
        project: String,
        intent: Intent,
    },
    Create {
        name: String,
        description: String,
        /// A repository to clone, and its branch (empty: none).
        repo: String,
        branch: String,
        /// The template it starts from (empty: none).
        template: String,
        /// The team to create it in; `None`: the user's own.
        team: Option<String>,
    },
    /// The teams the user may create in, for the create dialog; answered
    /// with `Msg::Teams`.
    LoadTeams,
    /// The admin screen's data; answered with `Msg::Admin`.
    LoadAdmin,
    /// An admin's intent on any project (`OWNER/NAME`).
    AdminIntent {
        project: String,
        intent: Intent,
    },
    LoadDetail {
        project: String,
    },
    SetEnv {
        project: String,
        key: String,
        value: SecretText,
        secret: bool,
    },
    UnsetEnv {
        project: String,
        key: String,
    },
    /// Load the settings screen's data; answered with `Msg::Settings`.
    LoadSettings,
    /// Add an SSH key from one OpenSSH public key line.
    AddKey {
        line: String,
    },
    RemoveKey {
        fingerprint: String,
    },
    SetPassword {
        password: SecretText,
    },
    SetUserConfig {
        key: String,
        value: SecretText,
        secret: bool,
    },
    UnsetUserConfig {
        key: String,
    },
    /// Mute (or unmute) the project's agent notifications.
    MuteAgent {
        project: String,
        muted: bool,
    },
    /// Open the terminal pane on a session of the project's sandbox
    /// (`None`: the default session); answered with `Msg::PaneOpened` or
    /// `Msg::PaneClosed`.
    Attach {
        project: String,
        session: Option<String>,
        read_only: bool,
    },
    /// Restart an exited session (`None`: the default one); answered with
    /// `Msg::Done(self.tag(), ..)`. With `attach: Some(read_only)`, attach
    /// to it afterwards.
    Restart {
        project: String,
        session: Option<String>,
        attach: Option<bool>,
        /// Asked for from the pane: the answer is a line about the pane.
        from_pane: bool,
    },
    /// Move the pane to another session of the project's sandbox: the
    /// session lists the sessions and picks; answered with
    /// `Msg::PaneOpened` or `Msg::PaneNotice(Err(..))`.
    SwitchSession {
        project: String,
        to: SessionChoice,
        read_only: bool,
    },
    /// Tell the attached session its new size (columns, rows).
    ResizePane(u16, u16),
    /// Send these bytes to the attached session.
    PaneInput(Vec<u8>),
    /// Reload the open project's session list; answered with `Msg::Sessions`.
    LoadSessions {
        project: String,
    },
    /// Read the open project's git state; answered with `Msg::Git`.
    LoadGit {
        project: String,
    },
    /// List the templates the create dialog offers; answered with `Msg::Templates`.
    LoadTemplates,
    /// Close the pane; the session keeps running.
    Detach,
    /// Follow the project's sandbox log; answered with `Msg::Log`s.
    FollowLogs {
        project: String,
    },
    /// Stop following (the log screen closed).
    StopLogs,
    /// Ring the terminal bell (a session entered needs_input or done).
    Bell,
    /// Load the notifications screen (marking them read); answered with
    /// `Msg::Notifications`.
    LoadNotifications,
    /// Postpone the project's coming idle stop; answered with `Msg::Done`.
    ExtendIdle {
        project: String,
    },
}

impl Effect {
    /// What the answer to this effect is tagged with, when it is a `Msg::Done`.
    pub fn tag(&self) -> Reply {
        match self {
            Effect::Intent { .. }
            | Effect::Create { .. }
            | Effect::MuteAgent { .. }
            | Effect::ExtendIdle { .. } => Reply::Change,
            Effect::Restart {
                from_pane: true, ..
            } => Reply::Pane,
            Effect::Restart { .. } => Reply::Change,
            Effect::SetEnv { .. } | Effect::UnsetEnv { .. } => Reply::Env,
            Effect::AddKey { .. }
            | Effect::RemoveKey { .. }
            | Effect::SetPassword { .. }
            | Effect::SetUserConfig { .. }
            | Effect::UnsetUserConfig { .. } => Reply::Settings,
            Effect::LoadDetail { .. }
            | Effect::LoadSettings
            | Effect::LoadSessions { .. }
            | Effect::LoadTeams
            | Effect::LoadAdmin
            | Effect::LoadNotifications
            | Effect::LoadGit { .. }
            | Effect::LoadTemplates => Reply::Load,
            Effect::AdminIntent { .. } => Reply::Admin,
            Effect::Quit
            | Effect::Attach { .. }
            | Effect::SwitchSession { .. }
            | Effect::ResizePane(..)
            | Effect::PaneInput(_)
            | Effect::Detach
            | Effect::FollowLogs { .. }
            | Effect::StopLogs
            | Effect::Bell => Reply::Unsolicited,
        }
    }
}

/// Which session `Effect::SwitchSession` moves the pane to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChoice {
    /// A new one, under the next free name.
    New,
    /// The one after `current` (`None`: the default one) in the sandbox's list.
    Next { current: Option<String> },
}

/// tmux's prefix (C-b; Kiln's tmux config keeps the default) and `[`:
/// copy mode, where PgUp/PgDn/arrows scroll the session's history and q leaves.
pub const TMUX_COPY_MODE: &[u8] = b"\x02[";

/// A command key typed after the pane's prefix key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaneCommand {
    /// `d`: close the pane; the session keeps running.
    Detach,
    /// `z`: the pane takes the whole window, or gives it back.
    Zoom,
    /// `[`: the session's history (tmux's copy mode).
    History,
    /// `n`: a new session of the same sandbox.
    NewSession,
    /// `w`: the next session of the same sandbox.
    NextSession,
    /// `r`: restart the attached session (if its program has exited).
    Restart,
    /// The prefix key again: send it to the session.
    SendPrefix,
    /// Any other key: ignored.
    Unknown(u8),
}

impl PaneCommand {
    /// The command for `key`, typed after the prefix key `prefix`.
    pub fn from_key(key: u8, prefix: u8) -> PaneCommand {
        match key {
            k if k == prefix => PaneCommand::SendPrefix,
            b'd' => PaneCommand::Detach,
            b'z' => PaneCommand::Zoom,
            b'[' => PaneCommand::History,
            b'n' => PaneCommand::NewSession,
            b'w' => PaneCommand::NextSession,
            b'r' => PaneCommand::Restart,
            other => PaneCommand::Unknown(other),
        }
    }

    /// Why a read-only viewer cannot have this command, for those that need
    /// keys in the session: a new session or a restart starts a program,
    /// and tmux's history (copy mode) is driven by keys.
    pub fn read_only_refusal(self) -> Option<&'static str> {
        match self {
            PaneCommand::NewSession => {
                Some("a read-only viewer cannot start a session: attach without read-only for that")
            }
            PaneCommand::Restart => Some("a read-only viewer cannot restart the session"),
            PaneCommand::History => Some(
                "a read-only viewer has no history: tmux scrolls it with keys, and this view sends none",
            ),
            PaneCommand::Detach
            | PaneCommand::Zoom
            | PaneCommand::NextSession
            | PaneCommand::SendPrefix
            | PaneCommand::Unknown(_) => None,
        }
    }
}
