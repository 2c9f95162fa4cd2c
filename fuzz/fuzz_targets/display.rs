//! Display filtering of untrusted text (names, messages, `logs` lines, the
//! dashboard): the output never carries a control character, an escape
//! sequence or a bidi override; widths and lengths are what was asked.
#![no_main]

mod common;

use kiln::model::naming::{MAX_SLUG_LEN, display_char, printable, slugify};
use kiln::tui::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u8)| {
    let (s, max) = (input.0, usize::from(input.1));
    for c in s.chars() {
        assert!(!common::is_unsafe_on_screen(display_char(c)));
    }
    let shown = printable(s, max);
    common::assert_printable(&shown, false);
    assert!(shown.chars().count() <= max + 1);
    let clean = text::clean(s);
    common::assert_printable(&clean, false);
    let fit = text::fit(s, max);
    common::assert_printable(&fit, false);
    assert!(text::width(&fit) <= max, "{fit:?} is wider than {max}");
    let tail = text::tail(s, max.max(1));
    common::assert_printable(&tail, false);
    common::assert_printable(&text::input(s), false);
    common::assert_printable(&text::input_lines(s), true);
    match slugify(s) {
        Ok(slug) => {
            assert!((1..=MAX_SLUG_LEN).contains(&slug.len()));
            assert!(slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
        Err(e) => common::assert_printable(&e.to_string(), false),
    }
});
