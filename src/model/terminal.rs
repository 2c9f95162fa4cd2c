//! The terminal type (`TERM`) a viewer's tmux client runs with. tmux draws
//! for the client's terminal, so with sshd + `tmux attach` it is the user's
//! own TERM; a direct attach through Kiln should be the same. The name comes
//! from the SSH client's pty request and is untrusted: only a plain name is
//! taken, and only one the machine running tmux has a terminfo entry for
//! (tmux refuses to attach to a terminal it cannot describe). Anything else
//! gets the fallback, which the dashboard's own pane emulates.

/// What a viewer gets when its own terminal type cannot be used.
pub const FALLBACK: &str = "xterm-256color";

/// Longer names than this are not terminal types (terminfo's own limit on a
/// file name is far above every real one).
pub const MAX_LEN: usize = 64;

/// Whether `term` looks like a terminfo name: ASCII letters, digits and
/// `+-._`, starting with a letter or digit, at most [`MAX_LEN`] long. Such
/// a name is safe as a file name part and as a program argument.
pub fn is_plain_name(term: &str) -> bool {
    term.len() <= MAX_LEN
        && term
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && term
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
}

/// Whether tmux could draw for `term`, wherever its entry is found: a
/// plain name, and not `dumb` (a terminal that cannot even clear its
/// screen).
pub fn is_drawable(term: &str) -> bool {
    term != "dumb" && is_plain_name(term)
}

/// The terminal type a viewer's tmux client runs with: `requested` (the
/// client's TERM, if it sent one) when it [is drawable](is_drawable) and
/// `known` has its entry, else [`FALLBACK`].
pub fn for_viewer(requested: Option<&str>, known: impl Fn(&str) -> bool) -> &str {
    match requested {
        Some(t) if is_drawable(t) && known(t) => t,
        _ => FALLBACK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_only() {
        for ok in [
            "xterm-256color",
            "screen.xterm-256color",
            "rxvt-unicode-256color",
            "vt100",
            "xterm+256color",
            "st_256",
        ] {
            assert!(is_plain_name(ok), "{ok}");
        }
        let long = "x".repeat(MAX_LEN + 1);
        for bad in [
            "",
            "-xterm",
            ".xterm",
            "../../etc/passwd",
            "x/y",
            "xterm 256",
            "xterm;rm",
            "xtérm",
            "xterm\n",
            long.as_str(),
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert!(is_plain_name(&"x".repeat(MAX_LEN)));
    }

    #[test]
    fn the_clients_term_when_known_else_the_fallback() {
        let known = |t: &str| ["screen-256color", "linux", "dumb"].contains(&t);
        assert_eq!(
            for_viewer(Some("screen-256color"), known),
            "screen-256color"
        );
        assert_eq!(for_viewer(Some("linux"), known), "linux");
        assert_eq!(for_viewer(Some("kiln-no-such-term"), known), FALLBACK);
        assert_eq!(for_viewer(Some("dumb"), known), FALLBACK);
        assert_eq!(for_viewer(Some("../linux"), |_| true), FALLBACK);
        assert_eq!(for_viewer(None, known), FALLBACK);
    }
}
