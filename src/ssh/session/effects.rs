//! The dashboard's I/O, off its loop (DESIGN §7): every effect that needs
//! the console runs as a task of the session, and its answer comes back as
//! a [`Answer`] that says what it answers. The loop never awaits one.

use tokio::sync::mpsc;

use crate::console::{Attached, ConfigSet, ConsoleError, UserConsole};
use crate::driver::{LogEvent, Viewer};
use crate::model::intent::Intent;
use crate::tui::secret::SecretText;
use crate::tui::{Msg, Reply, SettingsData};

/// Lines of history the log screen opens with.
const LOG_TAIL: i64 = 500;

/// How many notifications the notifications screen shows.
const NOTIFICATIONS_SHOWN: i64 = 200;

/// What the pane shows: a project's session (`None`: the default one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PaneTarget {
    pub project: String,
    pub session: Option<String>,
    pub read_only: bool,
}

/// Which session a pane command switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SwitchTo {
    /// A new shell session, named after the first free `sN`.
    New,
    /// The one after the current session in the sandbox's list.
    Next,
}

/// One piece of I/O for a task. Jobs whose answer can go stale carry the
/// ticket the loop gave them; the loop drops an answer whose ticket is no
/// longer current (the pane was closed, another attach started).
pub(super) enum Job {
    Detail {
        project: String,
    },
    Sessions {
        project: String,
    },
    Git {
        project: String,
    },
    Templates,
    Settings,
    Request {
        project: String,
        intent: Intent,
    },
    Create {
        name: String,
        new: crate::console::NewProject,
    },
    /// The teams the user may create in.
    Teams,
    /// The admin screen's data.
    Admin,
    /// An admin's intent on any project.
    AdminIntent {
        project: String,
        intent: Intent,
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
    AddKey {
        line: String,
    },
    RemoveKey {
        fingerprint: String,
    },
    SetPassword {
        password: SecretText,
    },
    SetConfig {
        key: String,
        value: SecretText,
        secret: bool,
    },
    UnsetConfig {
        key: String,
    },
    Mute {
        project: String,
        muted: bool,
    },
    /// Restart an exited session; with `then_attach`, open it afterwards.
    Restart {
        target: PaneTarget,
        then_attach: bool,
    },
    Attach {
        ticket: u64,
        target: PaneTarget,
        size: (u16, u16),
    },
    Switch {
        ticket: u64,
        from: PaneTarget,
        to: SwitchTo,
        size: (u16, u16),
    },
    FollowLogs {
        ticket: u64,
        project: String,
    },
    /// Read the user's notifications (which marks them read).
    Notifications,
    ExtendIdle {
        project: String,
    },
}

impl Job {
    /// Whether the job changes something the user asked for (as opposed
    /// to reading for the screen or opening a stream).
    pub(super) fn changes_something(&self) -> bool {
        match self {
            Job::Detail { .. }
            | Job::Sessions { .. }
            | Job::Git { .. }
            | Job::Templates
            | Job::Settings
            | Job::Teams
            | Job::Admin
            | Job::Attach { .. }
            | Job::Switch { .. }
            | Job::FollowLogs { .. }
            | Job::Notifications => false,
            Job::Request { .. }
            | Job::AdminIntent { .. }
            | Job::Create { .. }
            | Job::SetEnv { .. }
            | Job::UnsetEnv { .. }
            | Job::AddKey { .. }
            | Job::RemoveKey { .. }
            | Job::SetPassword { .. }
            | Job::SetConfig { .. }
            | Job::UnsetConfig { .. }
            | Job::Mute { .. }
            | Job::Restart { .. }
            | Job::ExtendIdle { .. } => true,
        }
    }
}

/// A task's answer.
pub(super) enum Answer {
    /// A message the app takes as it is.
    Msg(Msg),
    /// A restart's outcome; the pane opens on the session afterwards when
    /// `then` says so.
    Restarted {
        done: Msg,
        then: Option<PaneTarget>,
    },
    Attached {
        ticket: u64,
        target: PaneTarget,
        attached: Attached,
    },
    /// Opening the pane failed: `switching` says the pane stays (a switch).
    AttachFailed {
        ticket: u64,
        why: String,
        switching: bool,
    },
    LogsOpened {
        ticket: u64,
        rx: mpsc::Receiver<LogEvent>,
    },
    LogsFailed {
        ticket: u64,
        why: String,
    },
    /// Nothing to tell (a session list that could not be read keeps the one on screen).
    Nothing,
}

fn line(e: ConsoleError) -> String {
    e.to_string()
}

/// Does `job` as the session's user; a `Msg::Done` it answers with is
/// tagged `tag` (what the effect said it answers).
pub(super) async fn run(console: UserConsole, tag: Reply, job: Job) -> Answer {
    let c = &console;
    let done =
        |result: Result<String, ConsoleError>| Answer::Msg(Msg::Done(tag, result.map_err(line)));
    match job {
        Job::Detail { project } => Answer::Msg(match c.project_detail(&project).await {
            Ok(d) => Msg::Detail(Box::new(d)),
            Err(e) => Msg::Done(Reply::Load, Err(line(e))),
        }),
        Job::Sessions { project } => match c.sessions(&project).await {
            Ok(sessions) => Answer::Msg(Msg::Sessions { project, sessions }),
            Err(_) => Answer::Nothing,
        },
        Job::Git { project } => {
            let state = c.git_state(&project).await.map_err(line);
            Answer::Msg(Msg::Git { project, state })
        }
        // Without the list the dialog still creates (without a template).
        Job::Templates => match c.templates().await {
            Ok(list) => Answer::Msg(Msg::Templates(list)),
            Err(_) => Answer::Nothing,
        },
        Job::Settings => Answer::Msg(match c.settings().await {
            Ok(s) => Msg::Settings(Box::new(SettingsData {
                keys: s.keys,
                has_password: s.has_password,
                configs: s.configs,
                quota: Some(s.quota),
                team_quotas: s.team_quotas,
                webhook: Some(s.webhook),
            })),
            Err(e) => Msg::Done(tag, Err(format!("cannot load settings: {e}"))),
        }),
        Job::Request { project, intent } => done(
            c.request(&project, intent)
                .await
                .map(|s| format!("{intent} requested for {project}: now {s}")),
        ),
        Job::Teams => match c.creatable_teams().await {
            Ok(teams) => Answer::Msg(Msg::Teams(teams)),
            // The dialog still offers "me"; the rest of it works.
            Err(_) => Answer::Nothing,
        },
        Job::Admin => Answer::Msg(match c.admin() {
            Some(admin) => match admin.overview().await {
                Ok(d) => Msg::Admin(Box::new(d)),
                Err(e) => Msg::Done(
                    Reply::Load,
                    Err(format!("cannot load the admin screen: {e}")),
                ),
            },
            None => Msg::Done(
                Reply::Load,
                Err(line(ConsoleError::refused(
                    "admin.view needs the admin role",
                ))),
            ),
        }),
        Job::AdminIntent { project, intent } => match c.admin() {
            Some(admin) => done(
                admin
                    .request(&project, intent)
                    .await
                    .map(|s| format!("{intent} requested for {project}: now {s}")),
            ),
            None => done(Err(ConsoleError::refused(
                "admin intents need the admin role",
            ))),
        },
        Job::Create { name, new } => done(c.create_from(&name, &new).await.map(|v| {
            match (&v.project.name, &v.project.slug) {
                // A team's project is named by its slug already.
                (name, slug) if name == slug => format!("created {name}"),
                (name, slug) => format!("created {name} (slug {slug})"),
            }
        })),
        Job::SetEnv {
            project,
            key,
            value,
            secret,
        } => done(
            c.set_env(&project, &key, value.expose(), secret)
                .await
                .map(|()| format!("set {key}; the sandbox picks it up shortly")),
        ),
        Job::UnsetEnv { project, key } => done(
            c.unset_env(&project, &key)
                .await
                .map(|()| format!("removed {key}")),
        ),
        Job::AddKey { line } => done(c.add_key(&line).await.map(|k| {
            let pending = if k.pending {
                " (pending until you sign in with it once)"
            } else {
                ""
            };
            format!("added {} {}{pending}", k.algorithm, k.fingerprint)
        })),
        Job::RemoveKey { fingerprint } => done(
            c.remove_key(&fingerprint)
                .await
                .map(|_| format!("removed {fingerprint}")),
        ),
        Job::SetPassword { password } => done(
            c.set_password(password.expose())
                .await
                .map(|()| "password changed".to_string()),
        ),
        Job::SetConfig { key, value, secret } => done(
            c.set_config(&key, value.expose(), secret)
                .await
                .map(|set| match set {
                    ConfigSet::Kubeconfig(k) => format!(
                        "kubeconfig stored: namespace {} on {}",
                        k.namespace, k.server
                    ),
                    ConfigSet::Value => format!("set {key}"),
                }),
        ),
        Job::Mute { project, muted } => done(c.mute_agent(&project, muted).await.map(|()| {
            let verb = if muted { "muted" } else { "unmuted" };
            format!(
                "{verb} agent notifications of {}",
                crate::model::naming::printable(&project, 60)
            )
        })),
        Job::UnsetConfig { key } => done(c.unset_config(&key).await.map(|()| {
            if key == crate::store::user_configs::KUBECONFIG {
                "kubeconfig removed".to_string()
            } else {
                format!("removed {key}")
            }
        })),
        Job::Restart {
            target,
            then_attach,
        } => {
            let result = c.restart(&target.project, target.session.as_deref()).await;
            let then = (result.is_ok() && then_attach).then_some(target);
            Answer::Restarted {
                done: Msg::Done(tag, result.map(restarted_line).map_err(line)),
                then,
            }
        }
        Job::Attach {
            ticket,
            target,
            size: (cols, rows),
        } => {
            let viewer = Viewer::pane(cols, rows, target.read_only);
            match c
                .attach(&target.project, target.session.as_deref(), &viewer)
                .await
            {
                Ok(attached) => Answer::Attached {
                    ticket,
                    target,
                    attached,
                },
                Err(e) => Answer::AttachFailed {
                    ticket,
                    why: line(e),
                    switching: false,
                },
            }
        }
        Job::Switch {
            ticket,
            from,
            to,
            size: (cols, rows),
        } => match switch(c, &from, to, cols, rows).await {
            Ok((target, attached)) => Answer::Attached {
                ticket,
                target,
                attached,
            },
            Err(why) => Answer::AttachFailed {
                ticket,
                why,
                switching: true,
            },
        },
        Job::Notifications => Answer::Msg(match c.notifications(NOTIFICATIONS_SHOWN, true).await {
            Ok(rows) => Msg::Notifications(rows),
            Err(e) => Msg::Done(tag, Err(format!("cannot load notifications: {e}"))),
        }),
        Job::ExtendIdle { project } => done(c.extend_idle(&project, None).await.map(|until| {
            format!(
                "{project} keeps running at least until {} unless stopped",
                until.format("%H:%M:%S UTC")
            )
        })),
        Job::FollowLogs { ticket, project } => match c.logs(&project, Some(LOG_TAIL), true).await {
            Ok(rx) => Answer::LogsOpened { ticket, rx },
            Err(e) => Answer::LogsFailed {
                ticket,
                why: line(e),
            },
        },
    }
}

fn restarted_line(r: crate::console::Restarted) -> String {
    use crate::model::naming::printable;
    format!(
        "restarted session {} of {}",
        printable(r.session.as_deref().unwrap_or("default"), 30),
        printable(&r.project, 60)
    )
}

/// Another session of the pane's sandbox: a new shell or the next one.
async fn switch(
    c: &UserConsole,
    from: &PaneTarget,
    to: SwitchTo,
    cols: u16,
    rows: u16,
) -> Result<(PaneTarget, Attached), String> {
    let list = c.sessions(&from.project).await.map_err(line)?;
    let session = match to {
        SwitchTo::New => Some(crate::console::next_session_name(&list)),
        SwitchTo::Next => {
            crate::console::next_session(&list, from.session.as_deref()).ok_or_else(|| {
                "no other session to switch to: this is the sandbox's only one".to_string()
            })?
        }
    };
    let target = PaneTarget {
        project: from.project.clone(),
        session,
        read_only: from.read_only,
    };
    let viewer = Viewer::pane(cols, rows, target.read_only);
    let attached = c
        .attach(&target.project, target.session.as_deref(), &viewer)
        .await
        .map_err(line)?;
    Ok((target, attached))
}
