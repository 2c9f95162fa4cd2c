//! ratatui over an SSH channel: a writer that ships whole frames to the
//! channel, and a backend that knows the *client's* size (never the server
//! process's tty, which `CrosstermBackend::size` would read).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use tokio::sync::mpsc;

/// Buffers writes; `flush` hands the buffer to the channel task as one
/// message, except inside a frame, which goes out whole when it ends (one
/// SSH packet per frame, not one for the frame and one for its end marker).
pub struct ChannelWriter {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    buf: Vec<u8>,
    /// Shared with the backend, which owns the writer but cannot reach it.
    in_frame: Arc<AtomicBool>,
    /// When set, a flush leaves the bytes here for the backend to take.
    captured: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    /// Messages handed to the channel task and not yet sent by it.
    queued: Arc<AtomicUsize>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::UnboundedSender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(16 * 1024),
            in_frame: Arc::new(AtomicBool::new(false)),
            captured: Arc::default(),
            queued: Arc::default(),
        }
    }

    /// The channel task's count of messages not yet sent: it decrements it
    /// after sending each one.
    pub fn queued(&self) -> Arc<AtomicUsize> {
        self.queued.clone()
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.in_frame.load(Ordering::Relaxed) {
            return Ok(());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some(taken) = self.captured.lock().expect("capture lock").as_mut() {
            taken.append(&mut self.buf);
            return Ok(());
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.tx
            .send(std::mem::take(&mut self.buf))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the SSH channel is gone"))?;
        Ok(())
    }
}

pub struct SshBackend {
    inner: CrosstermBackend<ChannelWriter>,
    pub size: Size,
    cursor: Position,
    in_frame: Arc<AtomicBool>,
    captured: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

impl SshBackend {
    pub fn new(writer: ChannelWriter, cols: u16, rows: u16) -> Self {
        Self {
            in_frame: writer.in_frame.clone(),
            captured: writer.captured.clone(),
            inner: CrosstermBackend::new(writer),
            size: Size::new(cols, rows),
            cursor: Position::ORIGIN,
        }
    }

    /// Opens a frame: `begin` is written first and nothing is sent until
    /// [`SshBackend::end_frame`].
    pub fn begin_frame(&mut self, begin: &[u8]) -> io::Result<()> {
        self.inner.write_all(begin)?;
        self.in_frame.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the frame with `end` and sends all of it as one message.
    pub fn end_frame(&mut self, end: &[u8]) -> io::Result<()> {
        self.inner.write_all(end)?;
        self.in_frame.store(false, Ordering::Relaxed);
        Write::flush(&mut self.inner)
    }

    /// Closes the frame with `end` and returns it instead of sending it, for
    /// a caller that can send it sooner than the channel task.
    pub fn end_frame_taken(&mut self, end: &[u8]) -> io::Result<Vec<u8>> {
        *self.captured.lock().expect("capture lock") = Some(Vec::new());
        let flushed = self.end_frame(end);
        let bytes = self.captured.lock().expect("capture lock").take();
        flushed.map(|_| bytes.unwrap_or_default())
    }

    /// Raw bytes (mode switches) straight to the client, outside a frame.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        Write::flush(&mut self.inner)
    }
}

impl Write for SshBackend {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner.write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Write::flush(&mut self.inner)
    }
}

impl Backend for SshBackend {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }
    fn hide_cursor(&mut self) -> io::Result<()> {
        self.inner.hide_cursor()
    }
    fn show_cursor(&mut self) -> io::Result<()> {
        self.inner.show_cursor()
    }
    fn get_cursor_position(&mut self) -> io::Result<Position> {
        // Asking the terminal would be a round trip on the SSH channel.
        Ok(self.cursor)
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        self.cursor = position.into();
        self.inner.set_cursor_position(self.cursor)
    }
    fn clear(&mut self) -> io::Result<()> {
        self.inner.clear()
    }
    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        self.inner.clear_region(clear_type)
    }
    fn size(&self) -> io::Result<Size> {
        Ok(self.size)
    }
    fn window_size(&mut self) -> io::Result<WindowSize> {
        Ok(WindowSize {
            columns_rows: self.size,
            pixels: Size::default(),
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        Backend::flush(&mut self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::widgets::Paragraph;
    use ratatui::{Terminal, TerminalOptions, Viewport};

    #[test]
    fn a_frame_goes_out_as_one_message_with_its_markers() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let backend = SshBackend::new(ChannelWriter::new(tx), 20, 3);
        let mut t = Terminal::with_options(
            backend,
            TerminalOptions {
                viewport: Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 20, 3)),
            },
        )
        .unwrap();
        t.backend_mut().begin_frame(b"<begin>").unwrap();
        t.draw(|f| f.render_widget(Paragraph::new("hello"), f.area()))
            .unwrap();
        // Drawing flushed the backend, yet nothing left before the end.
        assert!(rx.try_recv().is_err());
        t.backend_mut().end_frame(b"<end>").unwrap();
        let frame = rx.try_recv().expect("the frame");
        assert!(rx.try_recv().is_err(), "more than one message per frame");
        let text = String::from_utf8_lossy(&frame);
        assert!(text.starts_with("<begin>"), "{text:?}");
        assert!(text.ends_with("<end>"), "{text:?}");
        assert!(text.contains("hello"), "{text:?}");
        // Outside a frame, a flush sends at once.
        t.backend_mut().write_raw(b"raw").unwrap();
        assert_eq!(rx.try_recv().unwrap(), b"raw");
        // A frame can be taken instead of queued.
        t.backend_mut().begin_frame(b"<b>").unwrap();
        t.backend_mut().write_raw(b"x").unwrap();
        let taken = t.backend_mut().end_frame_taken(b"<e>").unwrap();
        assert_eq!(taken, b"<b>x<e>");
        assert!(rx.try_recv().is_err(), "a taken frame is not also queued");
        t.backend_mut().write_raw(b"after").unwrap();
        assert_eq!(rx.try_recv().unwrap(), b"after");
    }
}
