//! Non-blocking I/O on a pseudo-terminal's master side, driven by tokio's
//! reactor. A keystroke's echo crosses this twice; blocking reader and writer
//! threads made each crossing a wake-up of another thread (on a small
//! machine, often of another idle CPU), which showed in the echo latency.
//! Here both directions are tasks woken by the reactor on the thread that
//! polled it, and a keystroke is written to the terminal right where it
//! arrives when nothing is queued ahead of it (measured: the hop to the
//! writer task was about 20 µs of every echo).
//!
//! When the reader pauses is decided in `pacing`; the system calls on the
//! descriptors are in `fd`.

mod fd;
mod pacing;

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::driver::{InputSink, SessionInput};
use fd::{duplicate, read_burst, set_nonblocking, write};
use pacing::{READ_CHUNK, ReadPacing};

/// Asked for once paced output has ended (see [`relay`]).
pub type CatchUp = Box<dyn Fn() + Send + Sync>;

/// Keys queued for the writer task at most (messages, not bytes).
const INPUT_QUEUE: usize = 256;

/// Bytes read from the terminal, and where bytes to write to it go.
pub struct PtyStreams {
    pub output: mpsc::Receiver<Vec<u8>>,
    pub input: SessionInput,
}

/// The terminal's input: bytes are written at once, without waiting for a
/// task, unless earlier ones are still queued; whatever the terminal cannot
/// take right now is queued for the writer task, which waits for room.
struct PtyInput {
    fd: Arc<AsyncFd<OwnedFd>>,
    queue: mpsc::Sender<Vec<u8>>,
    /// Messages handed to the writer task and not yet fully written. Held
    /// while writing at once, so no write overtakes a queued one.
    queued: Arc<Mutex<usize>>,
    read_only: bool,
}

impl InputSink for PtyInput {
    fn try_send(&self, bytes: Vec<u8>) -> bool {
        if self.read_only {
            return true;
        }
        let mut queued = self.queued.lock().expect("pty input lock");
        let mut rest = &bytes[..];
        if *queued == 0 {
            match write(self.fd.get_ref(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
            if rest.is_empty() {
                return true;
            }
        }
        if self.queue.try_send(rest.to_vec()).is_err() {
            return false;
        }
        *queued += 1;
        true
    }
}

/// Starts relaying a duplicate of `master` (the caller keeps its own
/// descriptor for resizing). Must run inside a tokio runtime.
///
/// `catch_up` runs when output that the reader paced has gone quiet. tmux
/// stops drawing for a viewer that falls behind a flood and draws its screen
/// again only on a 100 ms timer, so the flood's last screen would reach the
/// viewer up to 100 ms after the program stopped: the caller asks tmux for
/// that screen at once instead.
///
/// The duplicate stays open until the program on the other side has closed
/// the terminal, even when the receiver of the output is dropped first:
/// pulling the terminal from under an attached tmux client can leave an
/// end-of-file in the session it shows.
pub fn relay(master: RawFd, read_only: bool, catch_up: Option<CatchUp>) -> io::Result<PtyStreams> {
    // Reading and writing each get their own descriptor and registration:
    // the reader drops its registration while it pauses (see `read_loop`),
    // and neither is woken by the other's readiness.
    let read_fd = duplicate(master)?;
    set_nonblocking(&read_fd)?;
    let write_fd = Arc::new(register(duplicate(master)?, Interest::WRITABLE)?);

    let (out_tx, output) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(read_loop(read_fd, out_tx, catch_up));

    let (queue, mut in_rx) = mpsc::channel::<Vec<u8>>(INPUT_QUEUE);
    let queued = Arc::new(Mutex::new(0usize));
    let input = SessionInput::new(PtyInput {
        fd: write_fd.clone(),
        queue,
        queued: queued.clone(),
        read_only,
    });
    tokio::spawn(async move {
        while let Some(bytes) = in_rx.recv().await {
            let written = write_all(&write_fd, &bytes).await;
            *queued.lock().expect("pty input lock") -= 1;
            if written.is_err() {
                break;
            }
        }
    });
    Ok(PtyStreams { output, input })
}

/// Relays the terminal's output to `out` until the terminal closes; keeps
/// reading (and dropping it) once the viewer has gone, so the terminal
/// stays open as long as the program on the other side.
async fn read_loop(fd: OwnedFd, out: mpsc::Sender<Vec<u8>>, catch_up: Option<CatchUp>) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut viewer_gone = false;
    let mut pacing = ReadPacing::default();
    let mut fd = Some(fd);
    while let Some(owned) = fd.take() {
        let Ok(reader) = register(owned, Interest::READABLE) else {
            break;
        };
        let pause = loop {
            let ready = match (pacing.settle_after(), &catch_up) {
                (Some(quiet), Some(catch_up)) => {
                    match tokio::time::timeout(quiet, reader.readable()).await {
                        Ok(ready) => ready,
                        Err(_quiet) => {
                            if pacing.settled(Instant::now()) && !viewer_gone {
                                catch_up();
                            }
                            continue;
                        }
                    }
                }
                _ => reader.readable().await,
            };
            let Ok(mut ready) = ready else {
                return;
            };
            match ready.try_io(|fd| read_burst(fd.get_ref(), &mut buf)) {
                // End of file, or EIO once the other side has closed.
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => {
                    if !viewer_gone {
                        viewer_gone = out.send(buf[..n].to_vec()).await.is_err();
                    }
                    if let Some(pause) = pacing.after_read(n, Instant::now()) {
                        break pause;
                    }
                }
                Err(_would_block) => {}
            }
        };
        // Registered, the descriptor would wake the runtime at every write
        // from the other side (thousands a second when tmux is busy), only
        // to be left unread: unregistered, the pause costs nothing.
        let owned = reader.into_inner();
        tokio::time::sleep(pause).await;
        fd = Some(owned);
    }
}

/// `fd` in the runtime's reactor, woken for `interest` only.
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd stays open and is the same descriptor for as long
    // as the AsyncFd owns it.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut ready = fd.writable().await?;
        match ready.try_io(|fd| write(fd.get_ref(), bytes)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacing::SETTLE_QUIET;
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};

    fn size() -> PtySize {
        PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        }
    }

    /// A relay of `script` run by sh, counting the catch-ups it asks for.
    fn counted_relay(
        script: &str,
    ) -> (
        Box<dyn portable_pty::Child + Send + Sync>,
        Box<dyn portable_pty::MasterPty + Send>,
        PtyStreams,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut cmd = CommandBuilder::new("sh");
        cmd.args(["-c", script]);
        let (child, master) = in_terminal(cmd);
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let catch_up: CatchUp = Box::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        let s = relay(master.as_raw_fd().unwrap(), true, Some(catch_up)).unwrap();
        (child, master, s, asked)
    }

    #[tokio::test]
    async fn a_stream_that_ends_asks_for_a_catch_up_and_then_waits() {
        use std::sync::atomic::Ordering;
        // 20 000 writes of one byte, then a second of quiet, then a line.
        let (mut child, _master, mut s, asked) = counted_relay(
            "i=0; while [ $i -lt 20000 ]; do printf x; i=$((i+1)); done; \
             sleep 1; echo after-$((40+2)); sleep 5",
        );
        let seen = read_until(&mut s.output, "after-42").await;
        assert_eq!(seen.matches('x').count(), 20000);
        tokio::time::sleep(SETTLE_QUIET * 5).await;
        // The stream was paced and then went quiet: a catch-up. A writer
        // stalled on a busy machine may add one mid-stream; but the quiet
        // second, and the lone line after it, ask for nothing more (asking
        // again at every quiet spell would have made it about 125).
        let n = asked.load(Ordering::SeqCst);
        assert!((1..=5).contains(&n), "{n} catch-ups");
        child.kill().unwrap();
        let _ = child.wait();
    }

    #[tokio::test]
    async fn lone_writes_never_ask_for_a_catch_up() {
        use std::sync::atomic::Ordering;
        // Lines a little apart, as a person's typing is echoed.
        let (mut child, _master, mut s, asked) =
            counted_relay("for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 0.05; done; sleep 5");
        read_until(&mut s.output, "line-8").await;
        tokio::time::sleep(SETTLE_QUIET * 5).await;
        assert_eq!(asked.load(Ordering::SeqCst), 0);
        child.kill().unwrap();
        let _ = child.wait();
    }

    async fn read_until(out: &mut mpsc::Receiver<Vec<u8>>, needle: &str) -> String {
        let mut seen = String::new();
        while !seen.contains(needle) {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), out.recv())
                .await
                .expect("output in time")
                .expect("terminal open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen
    }

    /// `cat` in a fresh terminal, relayed; the master is returned so it
    /// stays open for the test.
    fn cat_relay(
        read_only: bool,
    ) -> (
        Box<dyn portable_pty::Child + Send + Sync>,
        Box<dyn portable_pty::MasterPty + Send>,
        PtyStreams,
    ) {
        let (child, master) = in_terminal(CommandBuilder::new("cat"));
        let s = relay(master.as_raw_fd().unwrap(), read_only, None).unwrap();
        (child, master, s)
    }

    /// `cmd` running in a fresh terminal, and that terminal's master side.
    fn in_terminal(
        cmd: CommandBuilder,
    ) -> (
        Box<dyn portable_pty::Child + Send + Sync>,
        Box<dyn portable_pty::MasterPty + Send>,
    ) {
        let pty = native_pty_system().openpty(size()).unwrap();
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        (child, pty.master)
    }

    #[tokio::test]
    async fn bytes_go_both_ways_and_the_end_closes_the_output() {
        let (mut child, _master, mut s) = cat_relay(false);
        // A write larger than the terminal's buffer exercises the wait for
        // writability (cat echoes it back while we read).
        let big = format!("{}\r", "y".repeat(99)).repeat(700);
        // Keys sent meanwhile wait behind it: what the terminal could not
        // take at once is queued, and later keys queue behind that.
        assert!(s.input.try_send(big.clone().into_bytes()));
        // Block this (single-threaded) runtime so the writer task cannot
        // run, while cat makes room in the terminal: a later key written at
        // once would now land before the queued rest.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(s.input.try_send(b"after-".to_vec()));
        assert!(s.input.try_send(b"marker-42\r".to_vec()));
        let seen = read_until(&mut s.output, "marker-42").await;
        assert!(seen.contains("yyyy"));
        // Every line of the big write is echoed before the later keys.
        let later = seen.find("after-marker-42").expect("the later keys, whole");
        let lines_before = seen[..later].matches(&"y".repeat(99)).count();
        assert!(
            lines_before >= 700,
            "keys overtook the queue after {lines_before} lines"
        );
        child.kill().unwrap();
        let _ = child.wait();
        // The other side is gone: the output ends rather than hanging.
        while tokio::time::timeout(std::time::Duration::from_secs(10), s.output.recv())
            .await
            .expect("the output ends")
            .is_some()
        {}
    }

    #[tokio::test]
    async fn output_waiting_in_the_terminal_comes_in_few_large_messages() {
        let written = std::env::temp_dir().join(format!("kiln-burst-{}", uuid::Uuid::new_v4()));
        let mut cmd = CommandBuilder::new("sh");
        cmd.args([
            "-c",
            "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 12000; touch \"$1\"; sleep 5",
            "sh",
        ]);
        cmd.arg(written.as_os_str());
        let (mut child, master) = in_terminal(cmd);
        let mut s = relay(master.as_raw_fd().unwrap(), true, None).unwrap();
        // The reader cannot run while this runtime waits: the output piles
        // up in the terminal, as it does while a busy server catches up.
        for _ in 0..200 {
            if written.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&written);
        let first = s.output.recv().await.expect("output");
        // One read takes at most the terminal's 4 KiB line buffer. The
        // 12000 bytes fit in what the terminal holds, so the program is done
        // before the reader runs.
        assert!(first.len() > 8192, "first message {} bytes", first.len());
        child.kill().unwrap();
        let _ = child.wait();
    }

    #[tokio::test]
    async fn a_read_only_relay_writes_nothing() {
        let (mut child, _master, mut s) = cat_relay(true);
        assert!(s.input.try_send(b"typed-by-a-viewer\r".to_vec()));
        let got =
            tokio::time::timeout(std::time::Duration::from_millis(500), s.output.recv()).await;
        assert!(got.is_err(), "a read-only relay wrote: {got:?}");
        child.kill().unwrap();
        let _ = child.wait();
    }
}
