//! One dashboard session: owns the TUI state, turns SSH input, change
//! notifications and the answers of its tasks into messages, and draws
//! coalesced frames. It never awaits I/O (DESIGN §7): every effect that
//! needs the console runs as a task ([`effects`]) and answers with a tagged
//! [`effects::Reply`] that the loop selects on like any other input. The
//! keystroke fast path (the pane's shortcut and echo preview) is the one
//! thing that bypasses `App::update`, for latency; it lives in
//! [`crate::ssh::pane_keys`] and [`frames::preview`].

mod dashboard;
mod effects;
mod frames;
mod pane;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::input::{Input, InputDecoder};
use super::pane_keys::PaneKeys;
use super::terminal::{ChannelWriter, SshBackend};
use crate::console::UserConsole;
use crate::driver::LogEvent;
use crate::ssh::project_lists::Listing;
use crate::store::activity::ActivityRecorder;
use crate::tui::prefix::PrefixKey;
use crate::tui::{App, Msg};
use dashboard::Dashboard;
use pane::AttachedPane;

pub enum SessionInput {
    Bytes(Vec<u8>),
    Resize(u16, u16),
}

pub struct DashboardParams {
    /// The signed-in user's console: every action of the dashboard.
    pub console: UserConsole,
    /// The user's project list, kept by the server for all their dashboards.
    pub projects: watch::Receiver<Listing>,
    pub handle: Handle,
    pub channel: ChannelId,
    pub cols: u16,
    pub rows: u16,
    pub no_color: bool,
    pub notice: String,
    /// Leads from the pane back to the dashboard's pane commands.
    pub prefix: PrefixKey,
    /// Where the pane notes terminal activity (for the idle policy).
    pub activity: ActivityRecorder,
}

/// Lines of a log burst taken into one frame before drawing.
const LOG_BATCH: usize = 1000;
const TICK: Duration = Duration::from_millis(100);
/// How often the detail screen's session list is refreshed (one
/// `tmux list-sessions`, or one pod exec, per open detail screen).
const SESSION_POLL: Duration = Duration::from_secs(3);

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

/// What the dashboard writes when it closes: back to the user's own screen.
pub(crate) const LEAVE_SCREEN: &[u8] = frames::SCREEN_OFF;

/// Starts the session task.
pub fn spawn(p: DashboardParams) -> DashboardInput {
    let (tx, rx) = mpsc::channel(256);
    let keys = PaneKeys::default();
    let shortcut = keys.clone();
    tokio::spawn(async move {
        let _open =
            crate::ops::metrics::OpenSession::open(crate::ops::metrics::SessionKind::Dashboard);
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
        console,
        mut projects,
        handle,
        channel,
        cols,
        rows,
        no_color,
        notice,
        prefix,
        activity,
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
            writer_queued.fetch_sub(1, Ordering::SeqCst);
            if sent.is_err() {
                break;
            }
        }
    });

    let mut backend = SshBackend::new(channel_writer, cols, rows);
    backend.write_raw(frames::SCREEN_ON)?;
    let mut terminal = Terminal::with_options(
        backend,
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, cols, rows)),
        },
    )?;
    let mut app = App::new(&console.user().username, cols, rows);
    app.set_no_color(no_color);
    app.set_prefix(prefix);
    app.set_admin(console.admin().is_some());
    if !notice.is_empty() {
        app.set_notice(&notice);
    }
    let mut d = Dashboard {
        app,
        console,
        reads: JoinSet::new(),
        changes: JoinSet::new(),
        pane_ticket: 0,
        log_ticket: 0,
        pane: None,
        prefix_armed: false,
        prefix,
        activity,
        log_rx: None,
        quit: false,
        bell: false,
        size: (cols, rows),
    };

    let mut decoder = InputDecoder::new();
    let mut feed_open = true;
    let mut dirty = true;
    let mut last_draw = Instant::now() - frames::FRAME_GAP;
    // When an echo preview went out ahead of the full frame: that frame then
    // waits for the frame gap, off the path of the next keystroke's echo.
    let mut previewed: Option<Instant> = None;
    // Cells drawn by previews since the last full frame.
    let mut touched: Vec<(u16, u16)> = Vec::new();
    // A program exiting changes nothing in the store: the detail screen's
    // session list is refreshed on a timer while it is on screen.
    let mut session_poll = tokio::time::interval(SESSION_POLL);
    session_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    while !d.quit {
        // Keys may reach the pane without passing here (the shortcut):
        // reopen it once everything that came this way is handled.
        keys.sync(
            d.pane
                .as_ref()
                .filter(|_| d.app.pane_open() && !d.prefix_armed)
                .map(|p| {
                    (
                        &p.attachment.input,
                        prefix.byte(),
                        d.app.pane_strips_paste(),
                    )
                }),
            input.is_empty(),
        );
        // At most one frame per gap; right after a keystroke, at once.
        let wait = frames::frame_wait(
            keys.typed_within(frames::ECHO_WINDOW),
            previewed.is_some(),
            previewed.unwrap_or(last_draw).elapsed(),
        );
        if std::mem::take(&mut d.bell) {
            terminal.backend_mut().write_raw(b"\x07")?;
        }
        if dirty && wait.is_zero() {
            frames::draw(&mut terminal, &mut d.app, &mut touched)?;
            dirty = false;
            last_draw = Instant::now();
            previewed = None;
        }

        tokio::select! {
            _ = tokio::time::sleep(wait), if dirty => {}
            got = input.recv() => {
                let Some(first) = got else { break };
                // Take everything already queued: one frame for a burst.
                let mut batch = vec![first];
                while let Ok(more) = input.try_recv() {
                    batch.push(more);
                }
                for item in batch {
                    match item {
                        // Keystrokes that only go to the session change
                        // nothing on screen until its echo arrives.
                        SessionInput::Bytes(bytes) if d.app.pane_open() => {
                            dirty |= d.pane_bytes(&bytes, &keys);
                        }
                        SessionInput::Bytes(bytes) => {
                            dirty = true;
                            for i in decoder.feed(&bytes) {
                                d.update(match i {
                                    Input::Key(k) => Msg::Key(k),
                                    Input::Paste(s) => Msg::Paste(s),
                                });
                            }
                        }
                        SessionInput::Resize(c, r) => {
                            dirty = true;
                            d.size = (c, r);
                            terminal.backend_mut().size = ratatui::layout::Size::new(c, r);
                            terminal.resize(Rect::new(0, 0, c, r))?;
                            d.update(Msg::Resize(c, r));
                        }
                    }
                }
            }
            Some(done) = d.reads.join_next(), if !d.reads.is_empty() => {
                d.on_task(done);
                dirty = true;
            }
            Some(done) = d.changes.join_next(), if !d.changes.is_empty() => {
                d.on_task(done);
                dirty = true;
            }
            changed = projects.changed(), if feed_open => {
                feed_open = changed.is_ok();
                // Only the newest list matters; a dashboard that fell behind
                // skips the ones in between.
                let listing = projects.borrow_and_update().clone();
                match (listing.problem, listing.projects) {
                    (Some(why), _) => d.update(Msg::ProjectsStale(why)),
                    // The app asks for the open project's detail itself (LoadDetail).
                    (None, Some(list)) => {
                        d.update(Msg::Projects(list.as_ref().clone()));
                        if let Some(agents) = listing.agents {
                            d.update(Msg::Agents(agents.as_ref().clone()));
                        }
                        if let Some(unread) = listing.unread {
                            d.update(Msg::Unread(unread));
                        }
                    }
                    (None, None) => {}
                }
                dirty = true;
            }
            out = AttachedPane::output(&mut d.pane) => {
                match out {
                    Some(first) => {
                        // Everything already waiting goes into this one frame.
                        let mut bytes = first;
                        if let Some(p) = &mut d.pane {
                            p.attachment.take_waiting(&mut bytes, 1 << 20);
                            p.activity.touch();
                        }
                        d.update(Msg::PaneOutput(bytes));
                        // The echo of a keystroke goes out before the full
                        // frame is rendered and diffed (which follows at once).
                        if keys.typed_within(frames::ECHO_WINDOW)
                            && let Some(p) = d.app.echo_preview()
                        {
                            let bytes = frames::preview(terminal.backend_mut(), &p)?;
                            if queued.load(Ordering::SeqCst) == 0 {
                                // Nothing queued or being sent: this frame can
                                // go straight to the connection, a task hop
                                // sooner, without overtaking anything.
                                let _ = handle.data(channel, bytes).await;
                            } else {
                                terminal.backend_mut().write_raw(&bytes)?;
                            }
                            touched.extend(p.cells.iter().map(|(x, y, _)| (*x, *y)));
                            previewed.get_or_insert_with(Instant::now);
                        }
                    }
                    None => {
                        let why = d.pane.take().map(|p| p.ended_because()).unwrap_or_default();
                        d.pane_ticket += 1;
                        d.update(Msg::PaneClosed(why));
                    }
                }
                dirty = true;
            }
            event = log_event(&mut d.log_rx) => {
                match event {
                    Some(first) => {
                        d.update(Msg::Log(first));
                        // A burst of lines becomes one frame.
                        for _ in 0..LOG_BATCH {
                            match d.log_rx.as_mut().map(|rx| rx.try_recv()) {
                                Some(Ok(more)) => d.update(Msg::Log(more)),
                                _ => break,
                            }
                        }
                    }
                    None => {
                        d.log_rx = None;
                        d.update(Msg::LogEnded(None));
                    }
                }
                dirty = true;
            }
            _ = session_poll.tick(), if d.app.polls_sessions().is_some() || d.app.polls_admin() => {
                d.update(Msg::PollSessions);
            }
            _ = ticker.tick(), if d.app.animating() => {
                d.update(Msg::Tick);
                dirty = true;
            }
        }
    }

    let quit = d.quit;
    // What the user asked for finishes without them; its answers go nowhere.
    let mut changes = std::mem::take(&mut d.changes);
    if !changes.is_empty() {
        tokio::spawn(async move { while changes.join_next().await.is_some() {} });
    }
    if quit {
        terminal.backend_mut().write_raw(frames::SCREEN_OFF)?;
    }
    drop(terminal);
    // Let the writer send what is queued (the restore sequence) before closing.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(quit)
}

async fn log_event(rx: &mut Option<mpsc::Receiver<LogEvent>>) -> Option<LogEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
