//! How the dashboard's frames reach the client: the screen set-up and
//! restore sequences, synchronized output around each frame, the pacing
//! of frames, and the echo preview sent ahead of a full frame.

use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::Backend;

use crate::ssh::terminal::SshBackend;
use crate::tui::App;

/// Enter the alternate screen, hide the cursor, enable bracketed paste, clear.
pub(super) const SCREEN_ON: &[u8] = b"\x1b[?1049h\x1b[?25l\x1b[?2004h\x1b[2J";
/// Undo all of it, so the client's terminal is as it was.
pub(super) const SCREEN_OFF: &[u8] = b"\x1b[?2004l\x1b[0m\x1b[?25h\x1b[?1049l";
/// Synchronized output (DEC 2026): the client paints a frame whole.
const FRAME_BEGIN: &[u8] = b"\x1b[?2026h";
const FRAME_END: &[u8] = b"\x1b[?2026l";
/// The shortest time between two frames (about 120 per second) while
/// someone types.
pub(super) const FRAME_GAP: Duration = Duration::from_millis(8);
/// The shortest time between two frames (about 60 per second) while output
/// streams in on its own: as smooth as a terminal shows it, at half the
/// rendering of the typing pace.
const OUTPUT_FRAME_GAP: Duration = Duration::from_millis(16);
/// How long after a keystroke output is drawn without waiting for the frame gap.
pub(super) const ECHO_WINDOW: Duration = Duration::from_millis(50);

/// How long a changed screen waits before its frame, `since` the last
/// frame (or the echo preview that went ahead of it). Right after a
/// keystroke it is drawn at once: that is the echo a person waits for.
pub(super) fn frame_wait(typing: bool, previewed: bool, since: Duration) -> Duration {
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

/// Draws one full frame of `app`; `touched` are the cells echo previews
/// drew since the last frame (redrawn, since the diff does not know them).
pub(super) fn draw(
    terminal: &mut Terminal<SshBackend>,
    app: &mut App,
    touched: &mut Vec<(u16, u16)>,
) -> std::io::Result<()> {
    app.set_now(chrono::Utc::now());
    terminal.backend_mut().begin_frame(FRAME_BEGIN)?;
    let frame = terminal.draw(|f| app.view(f))?;
    let again = crate::tui::echo_preview::repaint(frame.buffer, touched);
    touched.clear();
    if !again.is_empty() {
        let backend = terminal.backend_mut();
        backend.draw(again.iter().map(|(x, y, c)| (*x, *y, c)))?;
        // Back to where the frame put the cursor.
        let at = backend.get_cursor_position()?;
        backend.set_cursor_position(at)?;
    }
    terminal.backend_mut().end_frame(FRAME_END)?;
    app.frame_drawn();
    Ok(())
}

/// An echo preview as one frame of its own (the bytes, not yet sent).
pub(super) fn preview(
    backend: &mut SshBackend,
    p: &crate::tui::echo_preview::Preview,
) -> std::io::Result<Vec<u8>> {
    backend.begin_frame(FRAME_BEGIN)?;
    backend.draw(p.cells.iter().map(|(x, y, c)| (*x, *y, c)))?;
    if let Some(at) = p.cursor {
        backend.set_cursor_position(at)?;
    }
    backend.end_frame_taken(FRAME_END)
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
}
