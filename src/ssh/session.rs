//! One dashboard session: owns the TUI state, turns SSH input and change
//! notifications into messages, performs the app's effects against the
//! store (always scoped to the logged-in user), and draws coalesced frames.

use crate::store::user_configs::KUBECONFIG;
use std::sync::Arc;
use std::time::Duration;

use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::{broadcast, mpsc};

use super::input::{Input, InputDecoder};
use super::pane_keys::PaneKeys;
use super::terminal::{ChannelWriter, SshBackend};
use crate::driver::{Attachment, SessionAttach};
use crate::store::Store;
use crate::store::activity::ActivityRecorder;
use crate::store::notify::Change;
use crate::store::users::User;
use crate::tui::prefix::PrefixKey;
use crate::tui::{App, Effect, Msg, PaneCommand, ProjectDetail, Reply, SessionChoice};

pub enum SessionInput {
    Bytes(Vec<u8>),
    Resize(u16, u16),
}

pub struct DashboardParams {
    pub store: Store,
    pub user: User,
    pub changes: broadcast::Receiver<Change>,
    pub handle: Handle,
    pub channel: ChannelId,
    pub cols: u16,
    pub rows: u16,
    pub no_color: bool,
    pub notice: String,
    /// How to reach sandbox sessions for the pane (`None`: attach unavailable).
    pub attach: Option<Arc<dyn SessionAttach>>,
    /// How to follow sandbox logs for the log screen (`None`: unavailable).
    pub logs: Option<Arc<dyn crate::driver::SandboxLogs>>,
    /// Leads from the pane back to the dashboard's pane commands.
    pub prefix: PrefixKey,
    /// Where the pane notes terminal activity (for the idle policy).
    pub activity: ActivityRecorder,
}

/// Enter the alternate screen, hide the cursor, enable bracketed paste, clear.
const SCREEN_ON: &[u8] = b"\x1b[?1049h\x1b[?25l\x1b[?2004h\x1b[2J";
/// Undo all of it, so the client's terminal is as it was.
const SCREEN_OFF: &[u8] = b"\x1b[?2004l\x1b[0m\x1b[?25h\x1b[?1049l";
/// Synchronized output (DEC 2026): the client paints a frame whole.
const FRAME_BEGIN: &[u8] = b"\x1b[?2026h";
const FRAME_END: &[u8] = b"\x1b[?2026l";
/// Lines of history the log screen opens with.
const LOG_TAIL: i64 = 500;
/// Lines taken into one frame before drawing.
const LOG_BATCH: usize = 1000;
const TICK: Duration = Duration::from_millis(100);
/// How often the detail screen's session list is refreshed (one
/// `tmux list-sessions`, or one pod exec, per open detail screen).
const SESSION_POLL: Duration = Duration::from_secs(3);
/// The shortest time between two frames (about 120 per second) while
/// someone types.
const FRAME_GAP: Duration = Duration::from_millis(8);
/// The shortest time between two frames (about 60 per second) while output
/// streams in on its own: as smooth as a terminal shows it, at half the
/// rendering of the typing pace.
const OUTPUT_FRAME_GAP: Duration = Duration::from_millis(16);
/// How long after a keystroke output is drawn without waiting for the frame gap.
const ECHO_WINDOW: Duration = Duration::from_millis(50);

/// How long a changed screen waits before its frame, `since` the last
/// frame (or the echo preview that went ahead of it). Right after a
/// keystroke it is drawn at once: that is the echo a person waits for.
fn frame_wait(typing: bool, previewed: bool, since: Duration) -> Duration {
    if typing && !previewed {
        return Duration::ZERO;
    }
    let gap = if typing || previewed {
        FRAME_GAP
    } else {
        OUTPUT_FRAME_GAP
    };
    gap.saturating_sub(since)
}

/// Client input for a dashboard session. Dropping it (the channel closed)
/// ends the session.
pub struct DashboardInput {
    tx: mpsc::Sender<SessionInput>,
    keys: PaneKeys,
}

impl DashboardInput {
    pub fn bytes(&self, data: &[u8]) {
        if !self.keys.send(data) {
            // A full queue means the session is far behind: drop the
            // keystrokes rather than stall the whole connection.
            let _ = self.tx.try_send(SessionInput::Bytes(data.to_vec()));
        }
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        let _ = self.tx.try_send(SessionInput::Resize(cols, rows));
    }
}

/// Starts the session task.
pub fn spawn(p: DashboardParams) -> DashboardInput {
    let (tx, rx) = mpsc::channel(256);
    let keys = PaneKeys::default();
    let shortcut = keys.clone();
    tokio::spawn(async move {
        let handle = p.handle.clone();
        let channel = p.channel;
        let quit = run(p, rx, shortcut).await;
        if let Err(e) = &quit {
            tracing::debug!("dashboard session ended: {e}");
        }
        if matches!(quit, Ok(true)) {
            let _ = handle.exit_status_request(channel, 0).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        }
    });
    DashboardInput { tx, keys }
}

/// Returns Ok(true) when the user quit (the channel should be closed).
async fn run(
    p: DashboardParams,
    mut input: mpsc::Receiver<SessionInput>,
    keys: PaneKeys,
) -> anyhow::Result<bool> {
    let DashboardParams {
        store,
        user,
        mut changes,
        handle,
        channel,
        cols,
        rows,
        no_color,
        notice,
        attach,
        logs,
        prefix,
        activity: activity_recorder,
    } = p;

    // Frames go out through one writer task, in order.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let channel_writer = ChannelWriter::new(out_tx);
    let queued = channel_writer.queued();
    let writer_queued = queued.clone();
    let writer_handle = handle.clone();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            let sent = writer_handle.data(channel, bytes).await;
            writer_queued.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            if sent.is_err() {
                break;
            }
        }
    });

    let mut backend = SshBackend::new(channel_writer, cols, rows);
    backend.write_raw(SCREEN_ON)?;
    let mut terminal = Terminal::with_options(
        backend,
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, cols, rows)),
        },
    )?;
    let mut app = App::new(&user.username, cols, rows);
    app.set_no_color(no_color);
    app.set_prefix(prefix);
    if !notice.is_empty() {
        app.set_notice(&notice);
    }
    let ctx = Ctx {
        store: &store,
        user: &user,
        attach: attach.as_ref(),
    };
    // The attached session, while the pane is open.
    let mut pane: Option<Attachment> = None;
    let mut activity: Option<crate::store::activity::ActivityTracker> = None;
    let mut prefix_armed = false;
    // The log screen's follower, while it is open.
    let mut log_rx: Option<mpsc::Receiver<crate::driver::LogEvent>> = None;
    let mut pending: Vec<Effect> = Vec::new();
    let projects = ctx.projects().await;
    pending.extend(app.update(projects));

    let mut decoder = InputDecoder::new();
    let mut quit = false;
    let mut dirty = true;
    let mut last_draw = std::time::Instant::now() - FRAME_GAP;
    // When an echo preview went out ahead of the full frame: that frame then
    // waits for the frame gap, off the path of the next keystroke's echo.
    let mut previewed: Option<std::time::Instant> = None;
    // Cells drawn by previews since the last full frame.
    let mut touched: Vec<(u16, u16)> = Vec::new();
    // A program exiting changes nothing in the store: the detail screen's
    // session list is refreshed on a timer while it is on screen.
    let mut session_poll = tokio::time::interval(SESSION_POLL);
    session_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    while !quit {
        // Effects first: they may produce messages (and more effects).
        while !pending.is_empty() {
            for effect in std::mem::take(&mut pending) {
                // What a `Msg::Done` answering this effect is tagged with.
                let tag = effect.tag();
                match effect {
                    Effect::Quit => quit = true,
                    Effect::Attach {
                        project,
                        session: named,
                        read_only,
                    } => {
                        // Open at the pane's size: the app knows the layout.
                        let (cols, rows) = app
                            .pane_size()
                            .unwrap_or((cols.max(3) - 2, rows.max(6) - 5));
                        match ctx
                            .attach(&project, named.as_deref(), read_only, cols, rows)
                            .await
                        {
                            Ok((attachment, resource)) => {
                                let shown = match &named {
                                    Some(n) => format!("{n} (of {resource})"),
                                    None => resource.clone(),
                                };
                                pane = Some(attachment);
                                activity = Some(activity_recorder.tracker(resource));
                                prefix_armed = false;
                                pending.extend(app.update(Msg::PaneOpened {
                                    project,
                                    session: shown,
                                    name: named,
                                    read_only,
                                }));
                            }
                            Err(why) => pending.extend(app.update(Msg::PaneClosed(why))),
                        }
                    }
                    Effect::Detach => pane = None,
                    Effect::ResizePane(c, r) => {
                        if let Some(a) = &pane {
                            let _ = a.resize.send((c, r)).await;
                        }
                    }
                    Effect::PaneInput(bytes) => {
                        if let Some(a) = &pane {
                            a.input.try_send(bytes);
                        }
                    }
                    Effect::SwitchSession {
                        project,
                        to,
                        read_only,
                    } => {
                        // Another session of the same sandbox: a new shell
                        // or the next one in the list.
                        let Some(a) = ctx.attach else { continue };
                        let target = match super::attach::project_sessions(
                            &store,
                            &user,
                            a.as_ref(),
                            &project,
                        )
                        .await
                        {
                            Ok(list) => match to {
                                SessionChoice::New => {
                                    Ok(Some(super::attach::next_session_name(&list)))
                                }
                                SessionChoice::Next { current } => super::attach::next_session(
                                    &list,
                                    current.as_deref(),
                                )
                                .ok_or_else(|| {
                                    "no other session to switch to: this is the sandbox's only one"
                                        .to_string()
                                }),
                            },
                            Err(e) => Err(e),
                        };
                        let (cols, rows) = app.pane_size().unwrap_or((80, 24));
                        let switched = match target {
                            Ok(session) => super::attach::attach_project(
                                &store,
                                &user,
                                a.as_ref(),
                                &project,
                                session.as_deref(),
                                &crate::driver::Viewer::pane(cols, rows, read_only),
                            )
                            .await
                            .map(|(att, name)| (att, name, session)),
                            Err(e) => Err(e),
                        };
                        match switched {
                            Ok((attachment, resource, session)) => {
                                let shown = match &session {
                                    Some(n) => format!("{n} (of {resource})"),
                                    None => resource.clone(),
                                };
                                pane = Some(attachment);
                                activity = Some(activity_recorder.tracker(resource));
                                pending.extend(app.update(Msg::PaneOpened {
                                    project,
                                    session: shown,
                                    name: session,
                                    read_only,
                                }));
                            }
                            Err(e) => pending.extend(app.update(Msg::PaneNotice(Err(e)))),
                        }
                    }
                    Effect::FollowLogs { project } => {
                        let opened = match &logs {
                            Some(l) => {
                                super::logs::open(
                                    &store,
                                    &user,
                                    l.as_ref(),
                                    &project,
                                    Some(LOG_TAIL),
                                    true,
                                )
                                .await
                            }
                            None => Err("logs are not available on this server".into()),
                        };
                        match opened {
                            Ok(rx) => log_rx = Some(rx),
                            Err(why) => {
                                log_rx = None;
                                pending.extend(app.update(Msg::LogEnded(Some(why))));
                            }
                        }
                    }
                    Effect::StopLogs => log_rx = None,
                    Effect::LoadDetail { project } => {
                        let msg = ctx.detail(&project).await;
                        pending.extend(app.update(msg));
                    }
                    Effect::LoadSessions { project } => {
                        if let Some(msg) = ctx.sessions(&project).await {
                            pending.extend(app.update(msg));
                        }
                    }
                    Effect::Restart {
                        project,
                        session,
                        attach: then_attach,
                        ..
                    } => {
                        let done = ctx.restart(&project, session.as_deref()).await;
                        if let (Ok(_), Some(read_only)) = (&done, then_attach) {
                            pending.push(Effect::Attach {
                                project,
                                session,
                                read_only,
                            });
                        }
                        pending.extend(app.update(Msg::Done(tag, done)));
                    }
                    other => {
                        let msg = ctx.perform(other).await;
                        pending.extend(app.update(msg));
                    }
                }
            }
            dirty = true;
        }
        if quit {
            break;
        }
        // At most one frame per gap (FRAME_GAP while typing, else
        // OUTPUT_FRAME_GAP): a flood of output becomes a steady frame rate,
        // while a keystroke after a pause draws at once.
        // Right after a keystroke, draw at once: that is the echo a person waits for.
        // Keys may reach the pane without passing here (the shortcut):
        // reopen it once everything that came this way is handled.
        keys.sync(
            pane.as_ref()
                .filter(|_| app.pane_open() && !prefix_armed)
                .map(|a| (&a.input, prefix.byte(), app.pane_strips_paste())),
            input.is_empty(),
        );
        let wait = frame_wait(
            keys.typed_within(ECHO_WINDOW),
            previewed.is_some(),
            previewed.unwrap_or(last_draw).elapsed(),
        );
        if dirty && wait.is_zero() {
            app.set_now(chrono::Utc::now());
            terminal.backend_mut().begin_frame(FRAME_BEGIN)?;
            let frame = terminal.draw(|f| app.view(f))?;
            let again = crate::tui::echo_preview::repaint(frame.buffer, &mut touched);
            touched.clear();
            if !again.is_empty() {
                use ratatui::backend::Backend;
                let backend = terminal.backend_mut();
                backend.draw(again.iter().map(|(x, y, c)| (*x, *y, c)))?;
                // Back to where the frame put the cursor.
                let at = backend.get_cursor_position()?;
                backend.set_cursor_position(at)?;
            }
            terminal.backend_mut().end_frame(FRAME_END)?;
            app.frame_drawn();
            dirty = false;
            last_draw = std::time::Instant::now();
            previewed = None;
        }

        let mut refresh = false;
        tokio::select! {
            _ = tokio::time::sleep(wait), if dirty => {}
            got = input.recv() => {
                let Some(first) = got else { break };
                // Take everything already queued: one frame for a burst.
                let mut batch = vec![first];
                while let Ok(more) = input.try_recv() {
                    batch.push(more);
                }
                // Keystrokes that only go to the session change nothing on
                // screen until its echo arrives: no frame for them.
                let mut redraw = false;
                for item in batch {
                    match item {
                        SessionInput::Bytes(bytes) if app.pane_open() => {
                            let (to_session, commands) = split_prefix(&bytes, &mut prefix_armed, prefix.byte());
                            redraw |= !commands.is_empty();
                            if let Some(a) = &pane && !to_session.is_empty() {
                                keys.note_typed();
                                let keys = super::pane_keys::for_pane(&to_session, app.pane_strips_paste());
                                // Dropped when the session is far behind, as
                                // the handler's shortcut does.
                                a.input.try_send(keys);
                                if let Some(t) = &mut activity {
                                    t.touch();
                                }
                            }
                            for c in commands {
                                let cmd = PaneCommand::from_key(c, prefix.byte());
                                pending.extend(app.update(Msg::PaneCommand(cmd)));
                            }
                        }
                        SessionInput::Bytes(bytes) => {
                            redraw = true;
                            for i in decoder.feed(&bytes) {
                                let msg = match i {
                                    Input::Key(k) => Msg::Key(k),
                                    Input::Paste(s) => Msg::Paste(s),
                                };
                                pending.extend(app.update(msg));
                            }
                        }
                        SessionInput::Resize(c, r) => {
                            redraw = true;
                            terminal.backend_mut().size = ratatui::layout::Size::new(c, r);
                            terminal.resize(Rect::new(0, 0, c, r))?;
                            pending.extend(app.update(Msg::Resize(c, r)));
                        }
                    }
                }
                dirty |= redraw;
            }
            change = changes.recv() => {
                refresh |= relevant(&change, &user);
                // Coalesce a burst of notifications into one reload.
                while let Ok(more) = changes.try_recv() {
                    refresh |= relevant(&Ok(more), &user);
                }
            }
            out = pane_output(&mut pane) => {
                match out {
                    Some(first) => {
                        // Everything already waiting goes into this one frame.
                        let mut bytes = first;
                        if let Some(a) = &mut pane {
                            a.take_waiting(&mut bytes, 1 << 20);
                        }
                        if let Some(t) = &mut activity {
                            t.touch();
                        }
                        pending.extend(app.update(Msg::PaneOutput(bytes)));
                        // The echo of a keystroke goes out before the full
                        // frame is rendered and diffed (which follows at once).
                        if keys.typed_within(ECHO_WINDOW)
                            && let Some(p) = app.echo_preview()
                        {
                            let bytes = preview_frame(terminal.backend_mut(), &p)?;
                            if queued.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                                // Nothing queued or being sent: this frame can
                                // go straight to the connection, a task hop
                                // sooner, without overtaking anything.
                                let _ = handle.data(channel, bytes).await;
                            } else {
                                terminal.backend_mut().write_raw(&bytes)?;
                            }
                            touched.extend(p.cells.iter().map(|(x, y, _)| (*x, *y)));
                            previewed.get_or_insert_with(std::time::Instant::now);
                        }
                    }
                    None => {
                        pane = None;
                        pending.extend(app.update(Msg::PaneClosed(
                            "the session's terminal closed".into(),
                        )));
                    }
                }
                dirty = true;
            }
            event = log_event(&mut log_rx) => {
                match event {
                    Some(first) => {
                        pending.extend(app.update(Msg::Log(first)));
                        // A burst of lines becomes one frame.
                        if let Some(rx) = &mut log_rx {
                            for _ in 0..LOG_BATCH {
                                match rx.try_recv() {
                                    Ok(more) => pending.extend(app.update(Msg::Log(more))),
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    None => {
                        log_rx = None;
                        pending.extend(app.update(Msg::LogEnded(None)));
                    }
                }
                dirty = true;
            }
            _ = session_poll.tick(), if app.polls_sessions().is_some() => {
                pending.extend(app.update(Msg::PollSessions));
            }
            _ = ticker.tick(), if app.animating() => {
                pending.extend(app.update(Msg::Tick));
                dirty = true;
            }
        }
        if refresh {
            // The app asks for the open project's detail itself (LoadDetail).
            let msg = ctx.projects().await;
            pending.extend(app.update(msg));
            dirty = true;
        }
    }

    if quit {
        terminal.backend_mut().write_raw(SCREEN_OFF)?;
    }
    drop(terminal);
    // Let the writer send what is queued (the restore sequence) before closing.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(quit)
}

/// An echo preview as one frame of its own (the bytes, not yet sent).
fn preview_frame(
    backend: &mut SshBackend,
    p: &crate::tui::echo_preview::Preview,
) -> std::io::Result<Vec<u8>> {
    use ratatui::backend::Backend;
    backend.begin_frame(FRAME_BEGIN)?;
    backend.draw(p.cells.iter().map(|(x, y, c)| (*x, *y, c)))?;
    if let Some(at) = p.cursor {
        backend.set_cursor_position(at)?;
    }
    backend.end_frame_taken(FRAME_END)
}

/// Splits keystrokes meant for the attached session from the prefix
/// commands (the byte after the prefix); the prefix twice sends it once.
fn split_prefix(bytes: &[u8], armed: &mut bool, prefix: u8) -> (Vec<u8>, Vec<u8>) {
    let mut to_session = Vec::with_capacity(bytes.len());
    let mut commands = Vec::new();
    for &b in bytes {
        if *armed {
            *armed = false;
            if b == prefix {
                to_session.push(b);
            } else {
                commands.push(b);
            }
        } else if b == prefix {
            *armed = true;
        } else {
            to_session.push(b);
        }
    }
    (to_session, commands)
}

async fn pane_output(pane: &mut Option<Attachment>) -> Option<Vec<u8>> {
    match pane {
        Some(a) => a.output.recv().await,
        None => std::future::pending().await,
    }
}

async fn log_event(
    rx: &mut Option<mpsc::Receiver<crate::driver::LogEvent>>,
) -> Option<crate::driver::LogEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

fn relevant(change: &Result<Change, broadcast::error::RecvError>, user: &User) -> bool {
    match change {
        Ok(c) => c.user_id == Some(user.id) || c.table == "*",
        // Missed some: refresh to be safe.
        Err(broadcast::error::RecvError::Lagged(_)) => true,
        Err(broadcast::error::RecvError::Closed) => false,
    }
}

/// The store, as the logged-in user: every call is scoped by `user.id`.
struct Ctx<'a> {
    store: &'a Store,
    user: &'a User,
    attach: Option<&'a Arc<dyn SessionAttach>>,
}

impl Ctx<'_> {
    /// Attaches to the project's sandbox session (the user's own project only).
    async fn attach(
        &self,
        project: &str,
        session: Option<&str>,
        read_only: bool,
        cols: u16,
        rows: u16,
    ) -> Result<(Attachment, String), String> {
        let attach = self
            .attach
            .ok_or_else(|| "attach is not available on this server".to_string())?;
        super::attach::attach_project(
            self.store,
            self.user,
            attach.as_ref(),
            project,
            session,
            &crate::driver::Viewer::pane(cols, rows, read_only),
        )
        .await
    }

    /// Restarts an exited session of the user's own project.
    async fn restart(&self, project: &str, session: Option<&str>) -> Result<String, String> {
        let attach = self
            .attach
            .ok_or_else(|| "sessions are not available on this server".to_string())?;
        super::attach::restart_session(self.store, self.user, attach.as_ref(), project, session)
            .await
    }

    /// The open project's sessions, for the detail screen; `None` when they
    /// cannot be read right now (the list on screen is kept).
    async fn sessions(&self, project: &str) -> Option<Msg> {
        let attach = self.attach?;
        let sessions =
            super::attach::project_sessions(self.store, self.user, attach.as_ref(), project)
                .await
                .ok()?;
        Some(Msg::Sessions {
            project: project.to_string(),
            sessions,
        })
    }

    async fn projects(&self) -> Msg {
        match self.store.list_projects(self.user.id).await {
            Ok(p) => Msg::Projects(p),
            Err(e) => Msg::Done(
                Reply::Unsolicited,
                Err(format!("cannot load projects: {e}")),
            ),
        }
    }

    async fn detail(&self, project: &str) -> Msg {
        let load = async {
            let view = self.store.find_project(self.user.id, project).await?;
            let env = self.store.list_env(self.user.id, project).await?;
            let events = self
                .store
                .list_events(self.user.id, view.project.id, 100)
                .await?;
            let database_url = self
                .store
                .database_url(self.user.id, view.project.id)
                .await?;
            let running_sandbox = super::attach::sandbox_ref(&view, self.user.id)
                .filter(|(_, status)| *status == crate::model::ResourceStatus::Running);
            // Best effort: a detail screen without its session list is still useful.
            let sessions = match (self.attach, running_sandbox) {
                (Some(a), Some((r, _))) => a.sessions(&r).await.unwrap_or_default(),
                _ => Vec::new(),
            };
            Ok::<_, crate::store::StoreError>(ProjectDetail {
                sessions,
                view,
                env,
                events,
                database_url,
            })
        };
        match load.await {
            Ok(d) => Msg::Detail(Box::new(d)),
            Err(e) => Msg::Done(Reply::Load, Err(e.to_string())),
        }
    }

    async fn perform(&self, effect: Effect) -> Msg {
        let (store, user) = (self.store, self.user);
        let actor = user.username.as_str();
        let tag = effect.tag();
        let result = match effect {
            Effect::Intent { project, intent } => store
                .record_intent(user.id, &project, intent, actor)
                .await
                .map(|s| format!("{intent} requested for {project}: now {s}")),
            Effect::Create { name, description } => store
                .create_project(user.id, &name, &description, actor)
                .await
                .map(|p| format!("created {} (slug {})", p.name, p.slug)),
            Effect::SetEnv {
                project,
                key,
                value,
                secret,
            } => store
                .set_env(user.id, &project, &key, value.expose(), secret)
                .await
                .map(|_| format!("set {key}; the sandbox picks it up shortly")),
            Effect::UnsetEnv { project, key } => store
                .unset_env(user.id, &project, &key)
                .await
                .map(|_| format!("removed {key}")),
            Effect::LoadSettings => {
                let load = async {
                    Ok::<_, crate::store::StoreError>(crate::tui::SettingsData {
                        keys: store.list_ssh_keys(user.id).await?,
                        has_password: store.has_password(user.id).await?,
                        configs: store.list_user_configs(user.id).await?,
                    })
                };
                return match load.await {
                    Ok(d) => Msg::Settings(Box::new(d)),
                    Err(e) => Msg::Done(tag, Err(format!("cannot load settings: {e}"))),
                };
            }
            Effect::AddKey { line } => store
                .add_ssh_key(user.id, &line)
                .await
                .map(|k| format!("added {} {}", k.algorithm, k.fingerprint)),
            Effect::RemoveKey { fingerprint } => store
                .remove_ssh_key(user.id, &fingerprint)
                .await
                .map(|_| format!("removed {fingerprint}")),
            Effect::SetPassword { password } => store
                .set_password(user.id, password.expose())
                .await
                .map(|_| "password changed".to_string()),
            // A kubeconfig is checked against its cluster before it is kept,
            // and only changes while the user has no projects.
            Effect::SetUserConfig { key, value, .. } if key == KUBECONFIG => {
                return Msg::Done(
                    tag,
                    crate::tenant_kubeconfig::set(store, user.id, value.expose())
                        .await
                        .map(|k| {
                            format!(
                                "kubeconfig stored: namespace {} on {}",
                                k.namespace, k.server
                            )
                        })
                        .map_err(|e| e.to_string()),
                );
            }
            Effect::UnsetUserConfig { key } if key == KUBECONFIG => {
                return Msg::Done(
                    tag,
                    crate::tenant_kubeconfig::unset(store, user.id)
                        .await
                        .map(|_| "kubeconfig removed".to_string())
                        .map_err(|e| e.to_string()),
                );
            }
            Effect::SetUserConfig { key, value, secret } => store
                .set_user_config(user.id, &key, value.expose(), secret)
                .await
                .map(|_| format!("set {key}")),
            Effect::UnsetUserConfig { key } => store
                .unset_user_config(user.id, &key)
                .await
                .map(|_| format!("removed {key}")),
            Effect::Quit
            | Effect::LoadDetail { .. }
            | Effect::LoadSessions { .. }
            | Effect::Restart { .. }
            | Effect::Attach { .. }
            | Effect::Detach
            | Effect::SwitchSession { .. }
            | Effect::ResizePane(..)
            | Effect::PaneInput(_)
            | Effect::FollowLogs { .. }
            | Effect::StopLogs => {
                return Msg::Done(tag, Ok(String::new()));
            }
        };
        Msg::Done(tag, result.map_err(|e| e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_at_once_after_a_key_and_paced_otherwise() {
        let ms = Duration::from_millis;
        // A keystroke's echo: at once, however recent the last frame.
        assert_eq!(frame_wait(true, false, ms(0)), Duration::ZERO);
        // The full frame after an echo preview: the typing pace.
        assert_eq!(frame_wait(true, true, ms(3)), FRAME_GAP - ms(3));
        assert_eq!(frame_wait(false, true, ms(3)), FRAME_GAP - ms(3));
        // Output on its own: the slower output pace.
        assert_eq!(frame_wait(false, false, ms(3)), OUTPUT_FRAME_GAP - ms(3));
        assert_eq!(frame_wait(false, false, OUTPUT_FRAME_GAP), Duration::ZERO);
        assert!(OUTPUT_FRAME_GAP > FRAME_GAP);
    }

    #[test]
    fn the_prefix_splits_commands_from_keystrokes_even_across_reads() {
        let mut armed = false;
        assert_eq!(
            split_prefix(b"ls\r", &mut armed, 0x1d),
            (b"ls\r".to_vec(), vec![])
        );
        assert_eq!(
            split_prefix(b"ab\x1dzcd", &mut armed, 0x1d),
            (b"abcd".to_vec(), vec![b'z'])
        );
        assert_eq!(
            split_prefix(b"x\x1d", &mut armed, 0x1d),
            (b"x".to_vec(), vec![])
        );
        assert!(armed);
        assert_eq!(split_prefix(b"d", &mut armed, 0x1d), (vec![], vec![b'd']));
        assert_eq!(
            split_prefix(b"\x1d\x1d", &mut armed, 0x1d),
            (vec![0x1d], vec![])
        );
        assert!(!armed);
    }
}
