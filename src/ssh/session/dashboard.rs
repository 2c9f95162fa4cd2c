//! What one dashboard session holds besides its terminal (the app, its
//! tasks, the attached pane, the log follower) and how it carries out the
//! app's effects: at once when they touch only the session, as tasks when
//! they need the console; and how a task's answer is taken back.

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::effects::{self, Answer, Job, PaneTarget, SwitchTo};
use super::pane::{self, AttachedPane};
use crate::console::UserConsole;
use crate::driver::LogEvent;
use crate::ssh::pane_keys::PaneKeys;
use crate::store::activity::ActivityRecorder;
use crate::tui::prefix::PrefixKey;
use crate::tui::{App, Effect, Msg, PaneCommand, Reply, SessionChoice};

/// Everything one dashboard session holds besides the terminal.
pub(super) struct Dashboard {
    pub(super) app: App,
    pub(super) console: UserConsole,
    /// The tasks reading for the screen; aborted when the session ends.
    pub(super) reads: JoinSet<Answer>,
    /// The tasks changing something the user asked for; they finish even
    /// if the user quits at once (nothing asked for is lost).
    pub(super) changes: JoinSet<Answer>,
    /// Tags the pane's and the log screen's requests: an answer to an
    /// older one (the pane was closed meanwhile) is dropped.
    pub(super) pane_ticket: u64,
    pub(super) log_ticket: u64,
    pub(super) pane: Option<AttachedPane>,
    pub(super) prefix_armed: bool,
    pub(super) prefix: PrefixKey,
    pub(super) activity: ActivityRecorder,
    pub(super) log_rx: Option<mpsc::Receiver<LogEvent>>,
    pub(super) quit: bool,
    /// The bell is due (rung with the next frame, once).
    pub(super) bell: bool,
    /// The window size, for a pane opened before the app knows its layout.
    pub(super) size: (u16, u16),
}

impl Dashboard {
    fn spawn(&mut self, tag: Reply, job: Job) {
        let changes = job.changes_something();
        let task = effects::run(self.console.clone(), tag, job);
        if changes {
            self.changes.spawn(task);
        } else {
            self.reads.spawn(task);
        }
    }

    /// The pane's size for a session about to open.
    fn pane_size(&self) -> (u16, u16) {
        let (cols, rows) = self.size;
        self.app
            .pane_size()
            .unwrap_or((cols.max(3) - 2, rows.max(6) - 5))
    }

    pub(super) fn update(&mut self, msg: Msg) {
        let effects = self.app.update(msg);
        self.perform(effects);
    }

    /// Carries out the app's effects: those that touch only this session at
    /// once, the rest as tasks.
    pub(super) fn perform(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            let tag = effect.tag();
            let job = match effect {
                Effect::Quit => {
                    self.quit = true;
                    continue;
                }
                Effect::Bell => {
                    self.bell = true;
                    continue;
                }
                Effect::Detach => {
                    self.pane = None;
                    self.pane_ticket += 1;
                    continue;
                }
                Effect::StopLogs => {
                    self.log_rx = None;
                    self.log_ticket += 1;
                    continue;
                }
                Effect::FollowLogs { project } => {
                    self.log_rx = None;
                    self.log_ticket += 1;
                    Job::FollowLogs {
                        ticket: self.log_ticket,
                        project,
                    }
                }
                Effect::Attach {
                    project,
                    session,
                    read_only,
                } => {
                    self.pane_ticket += 1;
                    Job::Attach {
                        ticket: self.pane_ticket,
                        target: PaneTarget {
                            project,
                            session,
                            read_only,
                        },
                        size: self.pane_size(),
                    }
                }
                Effect::ResizePane(cols, rows) => {
                    if let Some(p) = &self.pane {
                        p.resize(Some((cols, rows)));
                    }
                    continue;
                }
                Effect::PaneInput(bytes) => {
                    if let Some(p) = &self.pane {
                        p.attachment.input.try_send(bytes);
                    }
                    continue;
                }
                Effect::SwitchSession {
                    project,
                    to,
                    read_only,
                } => {
                    self.pane_ticket += 1;
                    let (current, to) = match to {
                        SessionChoice::New => (None, SwitchTo::New),
                        SessionChoice::Next { current } => (current, SwitchTo::Next),
                    };
                    Job::Switch {
                        ticket: self.pane_ticket,
                        from: PaneTarget {
                            project,
                            session: current,
                            read_only,
                        },
                        to,
                        size: self.app.pane_size().unwrap_or((80, 24)),
                    }
                }
                Effect::Restart {
                    project,
                    session,
                    attach,
                    ..
                } => Job::Restart {
                    target: PaneTarget {
                        project,
                        session,
                        read_only: attach.unwrap_or(false),
                    },
                    then_attach: attach.is_some(),
                },
                Effect::LoadDetail { project } => Job::Detail { project },
                Effect::LoadSessions { project } => Job::Sessions { project },
                Effect::LoadGit { project } => Job::Git { project },
                Effect::LoadTemplates => Job::Templates,
                Effect::LoadSettings => Job::Settings,
                Effect::Intent { project, intent } => Job::Request { project, intent },
                Effect::Create {
                    name,
                    description,
                    team,
                    repo,
                    branch,
                    template,
                } => Job::Create {
                    name,
                    new: crate::console::NewProject {
                        description,
                        team,
                        repo: Some(repo),
                        branch: Some(branch),
                        template: Some(template),
                    },
                },
                Effect::LoadTeams => Job::Teams,
                Effect::LoadAdmin => Job::Admin,
                Effect::AdminIntent { project, intent } => Job::AdminIntent { project, intent },
                Effect::SetEnv {
                    project,
                    key,
                    value,
                    secret,
                } => Job::SetEnv {
                    project,
                    key,
                    value,
                    secret,
                },
                Effect::UnsetEnv { project, key } => Job::UnsetEnv { project, key },
                Effect::AddKey { line } => Job::AddKey { line },
                Effect::RemoveKey { fingerprint } => Job::RemoveKey { fingerprint },
                Effect::SetPassword { password } => Job::SetPassword { password },
                Effect::SetUserConfig { key, value, secret } => {
                    Job::SetConfig { key, value, secret }
                }
                Effect::UnsetUserConfig { key } => Job::UnsetConfig { key },
                Effect::MuteAgent { project, muted } => Job::Mute { project, muted },
                Effect::LoadNotifications => Job::Notifications,
                Effect::ExtendIdle { project } => Job::ExtendIdle { project },
            };
            self.spawn(tag, job);
        }
    }

    pub(super) fn on_task(&mut self, done: Result<Answer, tokio::task::JoinError>) {
        match done {
            Ok(reply) => self.on_reply(reply),
            Err(e) if e.is_panic() => {
                tracing::error!("a dashboard task panicked: {e}");
                self.update(Msg::Done(
                    Reply::Unsolicited,
                    Err(crate::console::ConsoleError::Internal.to_string()),
                ));
            }
            Err(_) => {}
        }
    }

    /// A task's answer, unless it answers a request that is no longer current.
    fn on_reply(&mut self, reply: Answer) {
        match reply {
            Answer::Msg(msg) => self.update(msg),
            Answer::Restarted { done, then } => {
                self.update(done);
                if let Some(target) = then {
                    self.perform(vec![Effect::Attach {
                        project: target.project,
                        session: target.session,
                        read_only: target.read_only,
                    }]);
                }
            }
            Answer::Attached {
                ticket,
                target,
                attached,
            } if ticket == self.pane_ticket => {
                let shown = match &target.session {
                    Some(n) => format!("{n} (of {})", attached.resource),
                    None => attached.resource.clone(),
                };
                let (project, name, read_only) = (
                    target.project.clone(),
                    target.session.clone(),
                    target.read_only,
                );
                self.pane = Some(AttachedPane {
                    attachment: attached.attachment,
                    activity: self.activity.tracker(attached.resource),
                    revoked: attached.revoked,
                });
                self.prefix_armed = false;
                self.update(Msg::PaneOpened {
                    project,
                    session: shown,
                    name,
                    read_only,
                });
            }
            Answer::AttachFailed {
                ticket,
                why,
                switching,
            } if ticket == self.pane_ticket => self.update(if switching {
                Msg::PaneNotice(Err(why))
            } else {
                Msg::PaneClosed(why)
            }),
            Answer::LogsOpened { ticket, rx } if ticket == self.log_ticket => {
                self.log_rx = Some(rx);
            }
            Answer::LogsFailed { ticket, why } if ticket == self.log_ticket => {
                self.update(Msg::LogEnded(Some(why)));
            }
            // An answer to a request that was replaced or withdrawn.
            Answer::Attached { .. }
            | Answer::AttachFailed { .. }
            | Answer::LogsOpened { .. }
            | Answer::LogsFailed { .. }
            | Answer::Nothing => {}
        }
    }

    /// Bytes typed while the pane is open: to the session, or after the
    /// prefix key, pane commands. Returns whether the screen changed.
    pub(super) fn pane_bytes(&mut self, bytes: &[u8], keys: &PaneKeys) -> bool {
        let (to_session, commands) =
            pane::split_prefix(bytes, &mut self.prefix_armed, self.prefix.byte());
        if let Some(p) = &mut self.pane
            && !to_session.is_empty()
        {
            keys.note_typed();
            let bytes = crate::ssh::pane_keys::for_pane(&to_session, self.app.pane_strips_paste());
            // Dropped when the session is far behind, as the handler's
            // shortcut does.
            p.attachment.input.try_send(bytes);
            p.activity.touch();
        }
        for c in &commands {
            let command = PaneCommand::from_key(*c, self.prefix.byte());
            self.update(Msg::PaneCommand(command));
        }
        !commands.is_empty()
    }
}
