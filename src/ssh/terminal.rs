//! ratatui over an SSH channel: a writer that ships whole frames to the
//! channel, and a backend that knows the *client's* size (never the server
//! process's tty, which `CrosstermBackend::size` would read).

use std::io::{self, Write};

use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use tokio::sync::mpsc;

/// Buffers writes; `flush` hands the buffer to the channel task as one message.
pub struct ChannelWriter {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::UnboundedSender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(16 * 1024),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.tx.send(std::mem::take(&mut self.buf)).map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the SSH channel is gone")
            })?;
        }
        Ok(())
    }
}

pub struct SshBackend {
    inner: CrosstermBackend<ChannelWriter>,
    pub size: Size,
    cursor: Position,
}

impl SshBackend {
    pub fn new(writer: ChannelWriter, cols: u16, rows: u16) -> Self {
        Self {
            inner: CrosstermBackend::new(writer),
            size: Size::new(cols, rows),
            cursor: Position::ORIGIN,
        }
    }

    /// Queues bytes to go out with the next frame (no flush of their own).
    pub fn write_all_frame(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)
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
