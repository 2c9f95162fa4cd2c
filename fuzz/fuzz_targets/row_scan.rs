//! The pane's row scanner on arbitrary output, cut into arbitrary chunks:
//! never a panic; "in line" only for bytes an echo can contain; and vt100,
//! fed the same chunks, changed no row but the cursor's whenever the scan
//! said so.
#![no_main]

use kiln::tui::row_scan::RowScan;
use libfuzzer_sys::fuzz_target;

const ROWS: u16 = 5;
const COLS: u16 = 16;

fuzz_target!(|input: (u16, u16, Vec<Vec<u8>>)| {
    let (col, cols, chunks) = input;
    // Any column and width: no panic, and the byte classes.
    let mut scan = RowScan::default();
    for chunk in &chunks {
        if scan.stays_on_row(chunk, col, cols) {
            assert!(
                chunk.iter().all(|&b| matches!(b, 0x07 | 0x08 | b'\r' | 0x1b | 0x20..=0x7f)),
                "{chunk:?}"
            );
        }
    }
    // Against the emulator.
    let mut parser = vt100::Parser::new(ROWS, COLS, 0);
    parser.process(b"one\r\ntwo\r\n$ ");
    let mut scan = RowScan::default();
    for chunk in chunks.iter().take(64) {
        let before = parser.screen().clone();
        let (row, col) = before.cursor_position();
        let in_line = scan.stays_on_row(chunk, col, COLS);
        parser.process(chunk);
        let after = parser.screen();
        if in_line && after.cursor_position().0 == row {
            for (r, diff) in after.rows_diff(&before, 0, COLS).enumerate() {
                assert!(
                    diff.is_empty() || r as u16 == row,
                    "row {r} changed by {chunk:?} (cursor row {row}, column {col}) after {chunks:?}"
                );
            }
        }
    }
});
