//! When the terminal's reader pauses: a flood or a stream of output is
//! read a few times a second instead of at every write, and a catch-up is
//! asked for once paced output has ended.

use std::time::{Duration, Instant};

/// Largest read taken from the terminal at once.
pub(super) const READ_CHUNK: usize = 32 * 1024;

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
pub(super) const SETTLE_QUIET: Duration = Duration::from_millis(8);

/// Catch-ups are asked for at most this often: tmux redraws a viewer it
/// stopped drawing for on its own 100 ms timer anyway, and each ask costs
/// a tmux command (a fork), so output that keeps stopping and starting
/// cannot turn into a stream of them.
const CATCH_UP_EVERY: Duration = Duration::from_millis(100);

/// A read that looks like bulk output, rather than an echo, is at least this long.
pub(super) const BULK_READ: usize = 1024;

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
pub(super) struct ReadPacing {
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
    pub(super) fn after_read(&mut self, n: usize, now: Instant) -> Option<Duration> {
        let pause = self.decide(n, now);
        // The gap to the next read is counted from the end of this pause,
        // not from this read: a pause of our own is no quiet in the
        // output, and on a loaded machine pause plus wake-up can exceed
        // STREAM_GAP, which would end every stream after each pause.
        self.last = Some(now + pause.unwrap_or_default());
        pause
    }

    fn decide(&mut self, n: usize, now: Instant) -> Option<Duration> {
        let close = self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < STREAM_GAP);
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
    pub(super) fn settle_after(&self) -> Option<Duration> {
        self.paced.then_some(SETTLE_QUIET)
    }

    /// The output has been quiet for [`SETTLE_QUIET`] at `now`: what
    /// follows starts afresh. Whether to ask for a catch-up now.
    pub(super) fn settled(&mut self, now: Instant) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // A read after a gap following the last pause (the stream ended)
        // is on its own again.
        let later = at.next().unwrap() + STREAM_PAUSE + STREAM_GAP;
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
        // On a loaded machine the wake-up after a pause takes longer than
        // the gap itself: the stream is still a stream (it was read as
        // many small messages, one per read, before).
        let mut f = ReadPacing::default();
        let mut at = reads_apart(Duration::from_micros(200));
        for _ in 0..STREAM_READS {
            f.after_read(8, at.next().unwrap());
        }
        let start = at.next().unwrap();
        assert_eq!(f.after_read(8, start), Some(STREAM_PAUSE));
        let slow = STREAM_PAUSE + STREAM_GAP - Duration::from_micros(500);
        let pauses = (1..=20u32)
            .filter(|k| f.after_read(8, start + slow * *k).is_some())
            .count();
        assert_eq!(pauses, 20, "a slow wake-up ended the stream");
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
}
