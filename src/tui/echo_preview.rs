//! The pane's echo preview: when output changes only a row or two of the
//! session's screen (a keystroke's echo), those rows go to the viewer before
//! the dashboard's full frame is rendered and diffed. The full frame follows
//! at once and draws the same cells again, so the preview only has to be
//! right to be fast, never to be correct — yet it is drawn exactly as
//! tui-term draws the pane (tested cell for cell), so nothing flickers.
//!
//! The full frame waits for the frame gap, so that its rendering is not in
//! the way of the next keystroke. Its diff is against the previous full
//! frame, not against what previews drew since; [`repaint`] names the cells
//! it must draw again so that a cell a preview changed, and that changed
//! back before the full frame, does not stay wrong on the viewer's screen.

use ratatui::buffer::{Buffer, Cell};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use tui_term::widget::Cell as _;

/// More changed rows than this is scrolling or a redraw: not an echo.
const MAX_ROWS: usize = 2;

#[derive(Debug, Default)]
pub struct Preview {
    /// Window position and cell, left to right and top to bottom, without
    /// the right halves of wide characters (the terminal fills those itself).
    pub cells: Vec<(u16, u16, Cell)>,
    /// Where the cursor ends up (window position), if it is shown.
    pub cursor: Option<(u16, u16)>,
}

/// The preview of `now` against `shown` (the screen as last drawn), for a
/// pane whose screen is drawn at `inner`; `None` when it is not a small
/// change of a screen of the same size. `changed_rows`, when known (see
/// [`RowScan`](super::row_scan::RowScan)), are the only rows that can
/// differ; otherwise every row is compared.
pub fn preview(
    shown: &vt100::Screen,
    now: &vt100::Screen,
    inner: Rect,
    cursor_drawn: bool,
    changed_rows: Option<&[u16]>,
) -> Option<Preview> {
    let (rows, cols) = now.size();
    if shown.size() != (rows, cols) || (inner.height, inner.width) != (rows, cols) {
        return None;
    }
    let mut changed: Vec<u16> = match changed_rows {
        Some(known) => known.to_vec(),
        None => now
            .rows_diff(shown, 0, cols)
            .enumerate()
            .filter(|(_, diff)| !diff.is_empty())
            .map(|(i, _)| i as u16)
            .collect(),
    };
    // tui-term paints a cursor cell: where it was and where it is now.
    for s in [shown, now] {
        if !s.hide_cursor() {
            changed.push(s.cursor_position().0);
        }
    }
    changed.sort_unstable();
    changed.dedup();
    if changed.len() > MAX_ROWS || changed.iter().any(|&r| r >= rows) {
        return None;
    }
    // Only the cells that differ, and the cursor's old and new cells.
    let cursor_cells: Vec<(u16, u16)> = [shown, now]
        .iter()
        .filter(|s| !s.hide_cursor())
        .map(|s| s.cursor_position())
        .collect();
    let mut out = Preview::default();
    for row in changed {
        for col in 0..cols {
            let Some(screen_cell) = now.cell(row, col) else {
                continue;
            };
            if screen_cell.is_wide_continuation()
                || (shown.cell(row, col) == Some(screen_cell)
                    && !cursor_cells.contains(&(row, col)))
            {
                continue;
            }
            let mut cell = Cell::default();
            screen_cell.apply(&mut cell);
            out.cells.push((inner.x + col, inner.y + row, cell));
        }
    }
    if !now.hide_cursor() {
        let (row, col) = now.cursor_position();
        // tui-term's default cursor: the cell reversed, or a grey block.
        if let Some((_, _, cell)) = out
            .cells
            .iter_mut()
            .find(|(x, y, _)| (*x, *y) == (inner.x + col, inner.y + row))
        {
            if now.cell(row, col).is_some_and(|c| c.has_contents()) {
                cell.set_style(Style::default().add_modifier(Modifier::REVERSED));
            } else {
                cell.set_symbol("\u{2588}");
                cell.set_style(Style::default().fg(Color::Gray));
            }
        }
        if cursor_drawn {
            out.cursor = Some((inner.x + col, inner.y + row));
        }
    }
    Some(out)
}

/// The cells at `touched` (drawn by previews since the previous full frame)
/// as the full frame `buffer` has them; the right halves of wide
/// characters are left out, as a terminal fills them itself.
pub fn repaint(buffer: &Buffer, touched: &mut Vec<(u16, u16)>) -> Vec<(u16, u16, Cell)> {
    touched.sort_unstable_by_key(|&(x, y)| (y, x));
    touched.dedup();
    let area = buffer.area;
    touched
        .iter()
        .filter(|&&(x, y)| x >= area.x && y >= area.y && x < area.right() && y < area.bottom())
        .filter(|&&(x, y)| {
            x == area.x || unicode_width::UnicodeWidthStr::width(buffer[(x - 1, y)].symbol()) < 2
        })
        .map(|&(x, y)| (x, y, buffer[(x, y)].clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::buffer::Buffer;
    use ratatui::widgets::Widget;
    use tui_term::widget::PseudoTerminal;

    const AREA: Rect = Rect {
        x: 3,
        y: 2,
        width: 40,
        height: 8,
    };

    fn full(screen: &vt100::Screen) -> Buffer {
        let mut buf = Buffer::empty(Rect::new(0, 0, 50, 12));
        PseudoTerminal::new(screen).render(AREA, &mut buf);
        buf
    }

    /// Applies `before` then `after`: the preview drawn over the full frame
    /// of the first screen must equal the full frame of the second.
    fn check(before: &[u8], after: &[u8]) -> Option<Preview> {
        let mut parser = vt100::Parser::new(AREA.height, AREA.width, 0);
        parser.process(before);
        let shown = parser.screen().clone();
        let mut buf = full(&shown);
        let (row, col) = shown.cursor_position();
        let in_line = crate::tui::row_scan::RowScan::default().stays_on_row(after, col, AREA.width);
        parser.process(after);
        let p = preview(&shown, parser.screen(), AREA, true, None)?;
        if in_line && parser.screen().cursor_position().0 == row {
            // Told which row changed, the preview is the same.
            let hinted = preview(&shown, parser.screen(), AREA, true, Some(&[row]))
                .expect("an in-line change is previewed");
            assert_eq!((&hinted.cells, hinted.cursor), (&p.cells, p.cursor));
        }
        for (x, y, cell) in &p.cells {
            buf[(*x, *y)] = cell.clone();
        }
        let want = full(parser.screen());
        for y in 0..12 {
            for x in 0..50 {
                // The right half of a wide character is never drawn.
                let covered = x > 0 && want[(x - 1, y)].symbol().chars().any(is_wide);
                if !covered {
                    assert_eq!(buf[(x, y)], want[(x, y)], "cell {x},{y} after {after:?}");
                }
            }
        }
        Some(p)
    }

    fn is_wide(c: char) -> bool {
        (c as u32) >= 0x1100 && !matches!(c, '\u{2588}')
    }

    #[test]
    fn typing_changes_one_row_drawn_as_tui_term_draws_it() {
        let p = check(b"line one\r\n$ ", b"x").expect("an echo is previewed");
        // The typed character and the cursor's new cell, nothing else.
        let at: Vec<(u16, u16)> = p.cells.iter().map(|(x, y, _)| (*x, *y)).collect();
        assert_eq!(at, [(AREA.x + 2, AREA.y + 1), (AREA.x + 3, AREA.y + 1)]);
        assert_eq!(p.cursor, Some((AREA.x + 3, AREA.y + 1)));
        check(b"$ abc", b"\x08 \x08").expect("a backspace is previewed");
    }

    #[test]
    fn colours_attributes_and_wide_characters_match() {
        check(
            b"$ ",
            b"\x1b[1;31mred\x1b[0m \x1b[38;2;10;20;30mrgb\x1b[4mu\x1b[0m",
        )
        .unwrap();
        check(b"$ ", "界 😀 é".as_bytes()).unwrap();
        check(b"$ ", b"\x1b[7minv\x1b[0m\x1b[?25l").unwrap();
    }

    #[test]
    fn enter_moves_to_the_next_row() {
        let p = check(b"$ ls", b"\r\nfile\r\n$ ").map(|p| p.cells.len());
        // Three rows changed (the command's row keeps its text, two new
        // ones): not an echo.
        assert_eq!(p, None);
        check(b"$ ls", b"\r\n").expect("two rows");
    }

    #[test]
    fn scrolling_or_a_resize_is_not_previewed() {
        let mut parser = vt100::Parser::new(AREA.height, AREA.width, 0);
        parser.process(b"a\r\nb\r\nc\r\nd\r\ne\r\nf\r\ng\r\nh");
        let shown = parser.screen().clone();
        parser.process(b"\r\ni");
        assert!(preview(&shown, parser.screen(), AREA, true, None).is_none());
        let shown = parser.screen().clone();
        parser.screen_mut().set_size(AREA.height, AREA.width + 1);
        assert!(preview(&shown, parser.screen(), AREA, true, None).is_none());
    }

    #[test]
    fn cells_previews_drew_are_drawn_again_from_the_full_frame() {
        // The full frame has "a" where a preview drew "b" (typed, then
        // erased before the frame): the frame's diff would skip it.
        let mut buf = Buffer::empty(Rect::new(0, 0, 10, 2));
        buf[(1, 0)].set_symbol("a");
        buf[(4, 1)].set_symbol("界");
        let mut touched = vec![(1, 0), (5, 1), (1, 0), (4, 1), (30, 30)];
        let cells = repaint(&buf, &mut touched);
        let got: Vec<(u16, u16, &str)> =
            cells.iter().map(|(x, y, c)| (*x, *y, c.symbol())).collect();
        // Once each, in screen order, without the wide character's right
        // half or anything outside the window.
        assert_eq!(got, [(1, 0, "a"), (4, 1, "界")]);
    }

    #[test]
    fn a_hidden_cursor_is_not_placed() {
        let p = check(b"\x1b[?25l$ ", b"x").unwrap();
        assert_eq!(p.cursor, None);
        let mut parser = vt100::Parser::new(AREA.height, AREA.width, 0);
        let shown = parser.screen().clone();
        parser.process(b"x");
        let p = preview(&shown, parser.screen(), AREA, false, None).unwrap();
        assert_eq!(p.cursor, None, "a read-only pane never places the cursor");
    }
}
