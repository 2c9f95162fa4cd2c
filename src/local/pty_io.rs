//! Non-blocking I/O on a pseudo-terminal's master side, driven by tokio's
//! reactor. A keystroke's echo crosses this twice; blocking reader and writer
//! threads made each crossing a wake-up of another thread (on a small
//! machine, often of another idle CPU), which showed in the echo latency.
//! Here both directions are tasks woken by the reactor on the thread that
//! polled it, and a keystroke is written to the terminal right where it
//! arrives when nothing is queued ahead of it (measured: the hop to the
//! writer task was about 20 µs of every echo).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::driver::{InputSink, SessionInput};

/// Largest read taken from the terminal at once.
const READ_CHUNK: usize = 32 * 1024;

/// Output in a row of reads of [`BULK_READ`] or more after which it is a flood.
const FLOOD_BYTES: usize = 128 * 1024;

/// How long the reader leaves a flooding terminal alone between reads.
const FLOOD_PAUSE: Duration = Duration::from_millis(10);

/// Reads this close to the one before belong to a stream of output.
const STREAM_GAP: Duration = Duration::from_millis(4);

/// Close reads in a row (after the first) from which output is a stream.
const STREAM_READS: u32 = 3;

/// How long the reader leaves a streaming terminal alone between reads.
const STREAM_PAUSE: Duration = Duration::from_millis(2);

/// Quiet after paced output from which it has ended: well over the gap
/// between paced reads (a pause plus the wake-up), so a stream that goes
/// on is not taken for one that ended.
const SETTLE_QUIET: Duration = Duration::from_millis(8);

/// Catch-ups are asked for at most this often: tmux redraws a viewer it
/// stopped drawing for on its own 100 ms timer anyway, and each ask costs
/// a tmux command (a fork), so output that keeps stopping and starting
/// cannot turn into a stream of them.
const CATCH_UP_EVERY: Duration = Duration::from_millis(100);

/// Decides when the reader pauses, so that busy output costs a few reads
/// (and SSH packets) where each read would cost one; an echo, or a screen
/// redraw in two or three writes, never waits.
///
/// - A flood: a program pouring out its terminal (`yes`, `cat` of a large
///   file) writes far more than anyone can read. tmux, on the other side
///   of the terminal, handles a viewer that falls behind by dropping what
///   it has not sent and redrawing the whole screen once the viewer has
///   caught up. Pausing lets it do that: the viewer gets the current
///   screen several times a second instead of every line on the way.
/// - A stream: output arriving in many small writes close together. tmux
///   writes each of its updates at once, often only a cursor move of a
///   few bytes (thousands a second while it skips drawing a flood for a
///   viewer that fell behind); read one by one, each would cost a wake-up,
///   a message and an SSH packet. A short pause gathers them.
#[derive(Debug, Default)]
struct ReadPacing {
    /// Bytes in the current run of large reads.
    run: usize,
    /// Reads in a row, each within [`STREAM_GAP`] of the one before.
    close_reads: u32,
    /// When the last read happened.
    last: Option<Instant>,
    /// The reader has paused since output was last quiet.
    paced: bool,
    /// When a catch-up was last asked for.
    last_catch_up: Option<Instant>,
}

impl ReadPacing {
    /// After a read of `n` bytes at `now`: how long to wait before the
    /// next read, if at all.
    fn after_read(&mut self, n: usize, now: Instant) -> Option<Duration> {
        let close = self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < STREAM_GAP);
        self.last = Some(now);
        self.close_reads = if close {
            self.close_reads.saturating_add(1)
        } else {
            0
        };
        if n < BULK_READ {
            self.run = 0;
        } else {
            self.run = self.run.saturating_add(n);
            if self.run >= FLOOD_BYTES {
                self.paced = true;
                return Some(FLOOD_PAUSE);
            }
        }
        let pause = (self.close_reads >= STREAM_READS).then_some(STREAM_PAUSE);
        self.paced |= pause.is_some();
        pause
    }

    /// How long to wait for more output before taking paced output to have
    /// ended; `None` when the reader has not paused since the last quiet.
    fn settle_after(&self) -> Option<Duration> {
        self.paced.then_some(SETTLE_QUIET)
    }

    /// The output has been quiet for [`SETTLE_QUIET`] at `now`: what
    /// follows starts afresh. Whether to ask for a catch-up now.
    fn settled(&mut self, now: Instant) -> bool {
        let ask = self
            .last_catch_up
            .is_none_or(|t| now.saturating_duration_since(t) >= CATCH_UP_EVERY);
        *self = Self {
            last_catch_up: if ask { Some(now) } else { self.last_catch_up },
            ..Self::default()
        };
        ask
    }
}

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

/// A duplicate of `fd`, owned.
fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: dup of a descriptor the caller owns and keeps open for the call.
    let dup = unsafe { libc::dup(fd) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
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

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A read that looks like bulk output, rather than an echo, is at least this long.
const BULK_READ: usize = 1024;

/// One read, and while it looks like bulk output, more until the terminal
/// has nothing left or `buf` is full: a program pouring output then goes out
/// in fewer, larger messages (the terminal hands over at most a few KiB per
/// read), while a keystroke's echo costs no second read.
fn read_burst(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = read(fd, buf)?;
    let mut last = filled;
    while last >= BULK_READ && filled < buf.len() {
        match read(fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                last = n;
            }
            // Nothing more now (or the end, which the next read reports).
            Err(_) => break,
        }
    }
    Ok(filled)
}

fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reads at most buf.len() bytes into buf.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn write(fd: &OwnedFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: writes at most bytes.len() bytes from bytes.
    let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};

    fn size() -> PtySize {
        PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        }
    }

    /// Reads `apart` from each other, starting well after any earlier one.
    fn reads_apart(apart: Duration) -> impl Iterator<Item = Instant> {
        let t0 = Instant::now() + Duration::from_secs(3600);
        (0u32..).map(move |i| t0 + apart * i)
    }

    #[test]
    fn only_a_run_of_large_reads_is_a_flood() {
        // Reads far apart, so only the flood rule can pause.
        let mut at = reads_apart(Duration::from_millis(50));
        let mut f = ReadPacing::default();
        // An echo, a screen redraw, a page of text: never a pause.
        assert_eq!(f.after_read(1, at.next().unwrap()), None);
        assert_eq!(f.after_read(FLOOD_BYTES - 1, at.next().unwrap()), None);
        // A short read in between starts the count again.
        assert_eq!(f.after_read(100, at.next().unwrap()), None);
        for _ in 0..FLOOD_BYTES / BULK_READ - 1 {
            assert_eq!(f.after_read(BULK_READ, at.next().unwrap()), None);
        }
        assert_eq!(
            f.after_read(BULK_READ, at.next().unwrap()),
            Some(FLOOD_PAUSE)
        );
        // The flood goes on: every large read pauses, until it ends.
        assert_eq!(
            f.after_read(READ_CHUNK, at.next().unwrap()),
            Some(FLOOD_PAUSE)
        );
        assert_eq!(f.after_read(BULK_READ - 1, at.next().unwrap()), None);
        assert_eq!(f.after_read(READ_CHUNK, at.next().unwrap()), None);
    }

    #[test]
    fn many_small_reads_close_together_are_a_stream() {
        // A key's echo and a redraw in a few writes never wait.
        let mut f = ReadPacing::default();
        let mut at = reads_apart(Duration::from_micros(200));
        for _ in 0..=STREAM_READS - 1 {
            assert_eq!(f.after_read(8, at.next().unwrap()), None);
        }
        // One more close read: a stream, which waits between reads for as
        // long as it goes on.
        for _ in 0..10 {
            assert_eq!(f.after_read(8, at.next().unwrap()), Some(STREAM_PAUSE));
        }
        // A read after a gap (the stream ended) is on its own again.
        let later = at.next().unwrap() + STREAM_GAP;
        assert_eq!(f.after_read(8, later), None);
        // Keys typed quickly, each echoed alone, are never a stream.
        let mut f = ReadPacing::default();
        for t in reads_apart(STREAM_GAP).take(50) {
            assert_eq!(f.after_read(1, t), None);
        }
        // The pause itself keeps a stream a stream: the next read comes
        // right after it.
        let mut f = ReadPacing::default();
        let paused = reads_apart(STREAM_PAUSE + Duration::from_micros(300));
        let pauses = paused
            .take(20)
            .filter(|t| f.after_read(8, *t).is_some())
            .count();
        assert_eq!(pauses, 20 - STREAM_READS as usize);
    }

    #[test]
    fn paced_output_settles_after_a_quiet_spell() {
        // Settling waits longer than the gap between paced reads.
        const { assert!(SETTLE_QUIET.as_micros() > 2 * STREAM_PAUSE.as_micros()) };
        let mut f = ReadPacing::default();
        let mut at = reads_apart(Duration::from_micros(200));
        // An echo and a short redraw: never paced, nothing to settle.
        for _ in 0..STREAM_READS {
            f.after_read(8, at.next().unwrap());
        }
        assert_eq!(f.settle_after(), None);
        // A stream: once paced, the reader waits for it to settle.
        f.after_read(8, at.next().unwrap());
        assert_eq!(f.settle_after(), Some(SETTLE_QUIET));
        // Settled: a catch-up, and the next output starts afresh.
        assert!(f.settled(at.next().unwrap()));
        assert_eq!(f.settle_after(), None);
        assert_eq!(f.after_read(8, at.next().unwrap()), None);
        assert_eq!(f.settle_after(), None);
        // Another stream that ends soon after: settled, but no second
        // catch-up until CATCH_UP_EVERY has passed since the first.
        for _ in 0..=STREAM_READS {
            f.after_read(8, at.next().unwrap());
        }
        assert_eq!(f.settle_after(), Some(SETTLE_QUIET));
        assert!(!f.settled(at.next().unwrap()));
        assert_eq!(f.settle_after(), None);
        for _ in 0..=STREAM_READS {
            f.after_read(8, at.next().unwrap());
        }
        let later = at.next().unwrap() + CATCH_UP_EVERY;
        assert!(f.settled(later));
        // A flood of large reads settles too.
        let mut f = ReadPacing::default();
        let mut at = reads_apart(Duration::from_millis(50));
        while f.after_read(READ_CHUNK, at.next().unwrap()).is_none() {}
        assert_eq!(f.settle_after(), Some(SETTLE_QUIET));
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
