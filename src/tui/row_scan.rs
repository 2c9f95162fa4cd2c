//! Which rows a chunk of terminal output can have changed, without looking
//! at the screen. The echo preview must know the rows that changed since the
//! last full frame; comparing every row of two screens costs about 10 µs,
//! which is most of the preview's time on every keystroke. A shell's echo is
//! printable characters, backspaces and a few in-line sequences: output
//! like that, written with the cursor on row R, changes row R only. This
//! scanner recognises that case and nothing more; for anything else it
//! answers "unknown" and the caller compares the screens.

/// Where the scan stands between chunks: an escape sequence may be split
/// across two reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// Inside `ESC [`, before its final byte.
    Csi,
    /// Inside a string (OSC, DCS, APC, PM, SOS), until BEL or ESC \.
    Text,
    /// ESC inside a string: `\` ends it.
    TextEscape,
}

/// Scans a session's output chunk by chunk, in order.
#[derive(Debug, Clone, Default)]
pub struct RowScan {
    state: State,
}

impl RowScan {
    /// Whether `bytes`, written with the cursor at column `col` of a screen
    /// `cols` wide, can only have changed the cursor's own row. True only
    /// for printable ASCII that never reaches the last column (so it neither
    /// wraps nor scrolls), BS, CR, BEL, and the in-line CSI sequences an
    /// echo uses: SGR (`m`), erase in line (`K`), erase, delete or insert
    /// characters (`X`, `P`, `@`), and cursor right, left or to a column
    /// (`C`, `D`, `G`). A chunk that starts or ends inside an escape
    /// sequence is never in-line. The caller must also check that the
    /// cursor is still on the same row afterwards.
    pub fn stays_on_row(&mut self, bytes: &[u8], mut col: u16, cols: u16) -> bool {
        let mut in_line = self.state == State::Ground;
        let mut param: u32 = 0;
        let mut private = false;
        for &b in bytes {
            // Wherever the scan is unsure how a terminal reads a byte, it
            // says "not in line" and keeps to the state that waits longest:
            // a wrong guess then costs a full comparison, never a stale row.
            if b != 0x1b && b < 0x20 && self.state != State::Ground {
                // CAN and SUB abort a sequence; other controls are carried
                // out in the middle of one.
                in_line = false;
                if matches!(b, 0x18 | 0x1a) {
                    self.state = State::Ground;
                }
                continue;
            }
            match self.state {
                State::Ground => match b {
                    0x20..=0x7e => {
                        // Printing in the last column may wrap the next
                        // character, or scroll the screen.
                        if col.saturating_add(1) >= cols {
                            in_line = false;
                        }
                        col = col.saturating_add(1);
                    }
                    0x08 => col = col.saturating_sub(1),
                    b'\r' => col = 0,
                    0x07 => {}
                    0x1b => self.state = State::Escape,
                    _ => in_line = false,
                },
                State::Escape | State::TextEscape if b == b'\\' => {
                    in_line = false;
                    self.state = State::Ground;
                }
                State::Escape | State::TextEscape => {
                    // ESC inside a string ends it and starts a new sequence.
                    match b {
                        b'[' => {
                            self.state = State::Csi;
                            param = 0;
                            private = false;
                        }
                        b']' | b'P' | b'_' | b'^' | b'X' => {
                            in_line = false;
                            self.state = State::Text;
                        }
                        // ESC again restarts; an intermediate waits for one
                        // more byte.
                        0x1b | 0x20..=0x2f => {
                            in_line = false;
                            self.state = State::Escape;
                        }
                        // vte ignores bytes above ASCII inside a sequence:
                        // the sequence goes on.
                        0x80..=0xff => in_line = false,
                        _ => {
                            in_line = false;
                            self.state = State::Ground;
                        }
                    }
                }
                State::Csi => match b {
                    b'0'..=b'9' => {
                        param = param.saturating_mul(10).saturating_add(u32::from(b - b'0'))
                    }
                    b';' | b':' | b'<'..=b'?' | 0x20..=0x2f => private = true,
                    0x40..=0x7e => {
                        self.state = State::Ground;
                        let n = u16::try_from(param.max(1)).unwrap_or(u16::MAX);
                        match (private, b) {
                            (_, b'm') => {}
                            (false, b'K' | b'X' | b'P' | b'@') => {}
                            (false, b'C') => {
                                col = col.saturating_add(n).min(cols.saturating_sub(1))
                            }
                            (false, b'D') => col = col.saturating_sub(n),
                            (false, b'G') => col = (n - 1).min(cols.saturating_sub(1)),
                            _ => in_line = false,
                        }
                    }
                    0x1b => {
                        in_line = false;
                        self.state = State::Escape;
                    }
                    // DEL is ignored; anything else leaves the sequence
                    // open until a final byte.
                    _ => in_line &= b == 0x7f,
                },
                State::Text => match b {
                    0x07 => self.state = State::Ground,
                    0x1b => self.state = State::TextEscape,
                    _ => {}
                },
            }
        }
        in_line && self.state == State::Ground
    }

    /// Forget any partial sequence (the screen was reset or replaced).
    pub fn reset(&mut self) {
        self.state = State::Ground;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(bytes: &[u8], col: u16) -> bool {
        RowScan::default().stays_on_row(bytes, col, 20)
    }

    #[test]
    fn a_shells_echo_stays_on_its_row() {
        assert!(scan(b"x", 2));
        assert!(scan(b"\x08 \x08", 3));
        assert!(scan(b"\x08\x1b[K", 3));
        assert!(scan(b"\x1b[1;32mok\x1b[0m", 0));
        assert!(scan(b"\r$ ls\x1b[3D\x1b[2P\x1b[5G\x1b[X\x1b[@", 0));
        assert!(scan(b"\x07", 0));
    }

    #[test]
    fn anything_that_may_leave_the_row_is_unknown() {
        for bytes in [
            &b"\n"[..],
            b"a\r\n",
            b"\x1b[A",
            b"\x1b[2J",
            b"\x1b[5;1H",
            b"\x1b[?1049h",
            b"\x1b[?25l",
            b"\x1bM",
            b"\x1bD",
            b"\x1b7",
            b"\x1b]0;title\x07",
            b"\x0b",
            b"\x0c",
            "é".as_bytes(),
        ] {
            assert!(!scan(bytes, 0), "{bytes:?}");
        }
    }

    #[test]
    fn the_last_column_is_never_in_line() {
        // 20 columns: printing at column 18 lands in 19, the last one.
        assert!(scan(b"x", 17));
        assert!(!scan(b"x", 19));
        assert!(!scan(b"xx", 18));
        // Moving right stops at the last column; printing there is unknown.
        assert!(!scan(b"\x1b[99Cx", 0));
    }

    #[test]
    fn a_sequence_split_across_chunks_is_unknown_on_both_sides() {
        let mut s = RowScan::default();
        assert!(!s.stays_on_row(b"ab\x1b[", 0, 20));
        // Alone, "2J" would look like two printable characters.
        assert!(!s.stays_on_row(b"2J", 0, 20));
        assert!(s.stays_on_row(b"x", 0, 20));
        let mut s = RowScan::default();
        assert!(!s.stays_on_row(b"\x1b]0;ti", 0, 20));
        assert!(!s.stays_on_row(b"tle\x1b", 0, 20));
        assert!(!s.stays_on_row(b"\\", 0, 20));
        assert!(s.stays_on_row(b"x", 0, 20));
    }

    /// Found by the `row_scan` fuzz target: vte ignores a byte above ASCII
    /// after ESC, so `ESC 0xEB [` starts a CSI and the next chunk's `L` is
    /// Insert Lines, not three printable characters.
    #[test]
    fn a_high_byte_inside_an_escape_does_not_end_it() {
        let mut s = RowScan::default();
        assert!(!s.stays_on_row(&[0x1b, 0x1b, 0x00, 0xeb, b'['], 0, 16));
        assert!(!s.stays_on_row(b"L=!", 2, 16));
        let mut parser = vt100::Parser::new(5, 16, 0);
        parser.process(b"one\r\ntwo\r\n$ ");
        parser.process(&[0x1b, 0x1b, 0x00, 0xeb, b'[']);
        let before = parser.screen().clone();
        parser.process(b"L=!");
        assert!(
            parser
                .screen()
                .rows_diff(&before, 0, 16)
                .skip(3)
                .any(|d| !d.is_empty())
        );
    }

    /// Against vt100 itself: whenever the scan says "this row only", every
    /// row but the cursor's is unchanged, over many random chunks built from
    /// bytes that do and do not stay on the row.
    #[test]
    fn whenever_the_scan_says_in_line_vt100_changed_no_other_row() {
        const PIECES: &[&[u8]] = &[
            b"x",
            b"yz",
            b" ",
            b"\x08",
            b"\r",
            b"\n",
            b"\x1b[K",
            b"\x1b[2K",
            b"\x1b[1J",
            b"\x1b[3D",
            b"\x1b[4C",
            b"\x1b[2P",
            b"\x1b[@",
            b"\x1b[3X",
            b"\x1b[31m",
            b"\x1b[0m",
            b"\x1b[A",
            b"\x1b[B",
            b"\x1b[3;5H",
            b"\x1b[10G",
            b"\x1bM",
            b"\x1b[?25l",
            b"\x1b[",
            b"2J",
            b"\x1b",
            b"c",
            b"\x07",
            b"0123456789",
            b"\x1b[S",
            b"\x1b[L",
            b"\x1b[M",
            b"\x1b]0;t",
            b"\x1b\\",
            b"\x18",
            b"\x1a",
            b"\x7f",
            b"\x1b(B",
            b"\x1b[1;2",
            b"\x1bP1",
            b"\r\x1b[2",
            b"\x1b[\r",
        ];
        let (rows, cols) = (6u16, 20u16);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut in_line_seen = 0;
        for _ in 0..3000 {
            let mut parser = vt100::Parser::new(rows, cols, 0);
            parser.process(b"one\r\ntwo\r\nthree\r\n$ ");
            let mut scan = RowScan::default();
            for _ in 0..40 {
                let mut chunk = Vec::new();
                for _ in 0..(next() % 4 + 1) {
                    chunk.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
                }
                let before = parser.screen().clone();
                let (row, col) = before.cursor_position();
                let in_line = scan.stays_on_row(&chunk, col, cols);
                parser.process(&chunk);
                let after = parser.screen();
                if in_line && after.cursor_position().0 == row {
                    in_line_seen += 1;
                    for (r, diff) in after.rows_diff(&before, 0, cols).enumerate() {
                        assert!(
                            diff.is_empty() || r as u16 == row,
                            "row {r} changed by {chunk:?} (cursor row {row}, column {col})"
                        );
                    }
                }
            }
        }
        assert!(
            in_line_seen > 100,
            "the test exercised the in-line case: {in_line_seen}"
        );
    }
}

/// For any bytes, however chunked (sequences cut anywhere, any column and
/// width): no panic, "in line" only for bytes an in-line echo can contain,
/// the same state whatever the chunking, and vt100 agrees with every "in line".
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Bytes that steer the scanner, mixed with anything at all.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => proptest::sample::select(
                b"\x1b[]PX_^\\;:?<=>0123456789 !/mKXP@CDGHJABLMSr\r\n\x08\x07\x0b\x0c\x18\x1a\x7f\x9b".to_vec()
            ),
            2 => 0x20u8..0x7f,
            1 => any::<u8>(),
        ]
    }

    fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(byte(), 0..16), 0..8)
    }

    proptest! {
        #![proptest_config(crate::model::untrusted::config(256))]

        #[test]
        fn in_line_means_ground_and_echo_bytes_only(
            chunks in chunks(),
            col in any::<u16>(),
            cols in prop_oneof![Just(0u16), Just(1), Just(u16::MAX), any::<u16>(), 1u16..200],
        ) {
            let mut scan = RowScan::default();
            for chunk in &chunks {
                let started_in_ground = scan.state == State::Ground;
                if scan.stays_on_row(chunk, col, cols) {
                    prop_assert!(started_in_ground);
                    prop_assert_eq!(scan.state, State::Ground);
                    prop_assert!(
                        chunk.iter().all(|&b| matches!(b, 0x07 | 0x08 | b'\r' | 0x1b | 0x20..=0x7f)),
                        "{:?}", chunk
                    );
                }
            }
        }

        #[test]
        fn the_state_does_not_depend_on_how_the_output_was_cut(chunks in chunks()) {
            let mut pieces = RowScan::default();
            for chunk in &chunks {
                pieces.stays_on_row(chunk, 0, 80);
            }
            let mut whole = RowScan::default();
            whole.stays_on_row(&chunks.concat(), 0, 80);
            prop_assert_eq!(pieces.state, whole.state);
        }

        #[test]
        fn vt100_changes_no_other_row_when_the_scan_says_in_line(chunks in chunks()) {
            let (rows, cols) = (5u16, 16u16);
            let mut parser = vt100::Parser::new(rows, cols, 0);
            parser.process(b"one\r\ntwo\r\n$ ");
            let mut scan = RowScan::default();
            for chunk in &chunks {
                let before = parser.screen().clone();
                let (row, col) = before.cursor_position();
                let in_line = scan.stays_on_row(chunk, col, cols);
                parser.process(chunk);
                let after = parser.screen();
                if in_line && after.cursor_position().0 == row {
                    for (r, diff) in after.rows_diff(&before, 0, cols).enumerate() {
                        prop_assert!(
                            diff.is_empty() || r as u16 == row,
                            "row {} changed by {:?} (cursor row {}, column {})", r, chunk, row, col
                        );
                    }
                }
            }
        }
    }
}
