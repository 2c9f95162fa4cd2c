//! Neutralising untrusted strings before they reach the terminal.
//!
//! Names, descriptions, env values, errors and event messages come from users
//! and drivers. Anything that could move the cursor, change colours or flip
//! text direction is replaced with `?`, and every value is cut to the width it
//! was given so it can never wrap into a neighbouring row.

use ratatui::text::Span;

use crate::model::naming::{display_char, is_invisible_format};

/// What a hidden value looks like on screen.
pub const MASK: &str = "••••••";

/// One display-safe character: the one rule, shared with exec output and `logs`.
fn safe_char(c: char) -> char {
    display_char(c)
}

/// Columns one character occupies (wide CJK = 2), as ratatui will draw it.
fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    Span::raw(&*c.encode_utf8(&mut buf)).width()
}

/// Sanitised `s`, no wider than `max` columns; cut values end in `…`.
pub fn fit(s: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    let mut chars = s.chars().map(safe_char).peekable();
    while let Some(c) = chars.next() {
        let w = char_width(c);
        // Keep one column for the ellipsis if anything would be left over.
        let room = if chars.peek().is_some() { max - 1 } else { max };
        if used + w > room {
            if used + w <= max && chars.peek().is_none() {
                out.push(c);
            } else {
                out.push('…');
            }
            return out;
        }
        out.push(c);
        used += w;
    }
    out
}

/// The end of sanitised `s` in at most `max` columns, `…` in front when cut:
/// an input field shows what is being typed, not its beginning.
pub fn tail(s: &str, max: usize) -> String {
    let clean = clean(s);
    if width(&clean) <= max {
        return clean;
    }
    let mut kept: Vec<char> = Vec::new();
    let mut used = 1; // the ellipsis
    for c in clean.chars().rev() {
        let w = char_width(c);
        if used + w > max {
            break;
        }
        kept.push(c);
        used += w;
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// Sanitised `s` without a width limit (the widget clips; it never wraps).
pub fn clean(s: &str) -> String {
    s.chars().map(safe_char).collect()
}

/// Typed or pasted input: control characters are dropped, not kept as `?`,
/// so a paste with escape sequences cannot smuggle them into a name or value.
pub fn input(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_control() && !is_invisible_format(c))
        .collect()
}

/// Pasted input for a multi-line value (a kubeconfig): like [`input`], but
/// line breaks survive, as `\n` whatever the client sent.
pub fn input_lines(s: &str) -> String {
    s.replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .map(input)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Width in columns of an already-sanitised string.
pub fn width(s: &str) -> usize {
    Span::raw(s).width()
}

/// A connection string with its password replaced by [`MASK`]
/// (`scheme://user:secret@host/db` → `scheme://user:••••••@host/db`).
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:{MASK}{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_neutralised() {
        assert_eq!(clean("a\x1b[31mred\x07"), "a?[31mred?");
        assert_eq!(clean("line\nbreak\r"), "line?break?");
        assert_eq!(clean("rtl\u{202E}txt"), "rtl?txt");
    }

    #[test]
    fn fit_cuts_with_an_ellipsis_and_never_exceeds_the_width() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdefg", 6), "abcde…");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(fit("日本語です", 5), "日本…");
        let long = "x".repeat(500);
        assert_eq!(width(&fit(&long, 40)), 40);
        assert!(fit(&long, 40).ends_with('…'));
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abcdef", 4), "…def");
        assert_eq!(tail("abc", 4), "abc");
    }

    #[test]
    fn input_drops_control_characters() {
        assert_eq!(input("ab\x1b[2Jc\n"), "ab[2Jc");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://u:s3cr3t@db:5432/x"),
            "postgres://u:••••••@db:5432/x"
        );
        assert_eq!(mask_password("postgres://db/x"), "postgres://db/x");
    }
}
