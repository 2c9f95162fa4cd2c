//! Strategies for the property tests of the parsers that take untrusted
//! input: text as a hostile client would send it. Plain `any::<String>()`
//! draws no control characters at all, so these mix in the characters that
//! matter here (C0, DEL, C1, ESC sequences, bidi and zero-width marks) with
//! ASCII and arbitrary code points.

use proptest::prelude::*;

/// Characters a display filter must neutralise, and their neighbours.
const HOSTILE: &[char] = &[
    '\0',
    '\x07',
    '\x08',
    '\t',
    '\n',
    '\x0b',
    '\x0c',
    '\r',
    '\x1b',
    '\x7f',
    '\u{80}',
    '\u{85}',
    '\u{9b}',
    '\u{9c}',
    '\u{9d}',
    '\u{9f}',
    '\u{a0}',
    '\u{ad}',
    '\u{61c}',
    '\u{200b}',
    '\u{200d}',
    '\u{200e}',
    '\u{200f}',
    '\u{2028}',
    '\u{2029}',
    '\u{202a}',
    '\u{202b}',
    '\u{202c}',
    '\u{202d}',
    '\u{202e}',
    '\u{e0001}',
    '\u{e0041}',
    '\u{e007f}',
    '\u{2060}',
    '\u{2066}',
    '\u{2067}',
    '\u{2068}',
    '\u{2069}',
    '\u{feff}',
    '\u{fffd}',
    '\u{e0041}',
    '=',
    '"',
    '\'',
    '\\',
    '-',
    ' ',
    '_',
    '[',
    ';',
];

/// One character: often ASCII, often hostile, sometimes anything at all.
pub fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        3 => proptest::sample::select(HOSTILE),
        2 => any::<char>(),
    ]
}

/// Up to `max` characters from [`hostile_char`].
pub fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(hostile_char(), 0..=max).prop_map(String::from_iter)
}

/// Whether a character must never reach a terminal as it is: C0, DEL, C1
/// (ESC and CSI start sequences), bidi embeddings, overrides, isolates and
/// marks, zero-width characters.
pub fn is_unsafe_on_screen(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{e0000}'..='\u{e007f}')
}

/// `cases` per property, unless `PROPTEST_CASES` asks for another number
/// (`PROPTEST_CASES=5000 cargo test --lib properties` for a longer search).
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}
