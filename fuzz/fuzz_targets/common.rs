//! What every target checks of text meant for a terminal.

/// C0, DEL, C1 (so no escape sequence starts), bidi embeddings, overrides,
/// isolates and marks, zero-width characters.
pub fn is_unsafe_on_screen(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Panics unless `text` is safe to print (line breaks allowed when `lines`).
pub fn assert_printable(text: &str, lines: bool) {
    assert!(
        !text.chars().any(|c| !(lines && c == '\n') && is_unsafe_on_screen(c)),
        "unsafe on a terminal: {text:?}"
    );
}
