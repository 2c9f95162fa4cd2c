//! The names a user may give a sandbox's terminal sessions. Both back ends
//! build tmux targets from them, and the exec commands check them before
//! anything is asked of a back end, so the rule lives here, once.

/// Longest session name a user may choose.
pub const MAX_SESSION_NAME_LEN: usize = 20;

/// A session name outside the rule of [`check_session_name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session name {}: use 1 to {MAX_SESSION_NAME_LEN} characters from a-z, 0-9 and -", .0)]
pub struct SessionNameError(String);

/// A session name a user may choose: short, lowercase, `[a-z0-9-]`. Nothing
/// else can reach a tmux target (`:`, `.` and `=` are separators there; a
/// leading `-` would be read as an option).
pub fn check_session_name(s: &str) -> Result<(), SessionNameError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SESSION_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SessionNameError(format!(
            "{:?}",
            super::naming::printable(s, 30)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_short_lowercase_digits_and_dashes() {
        for good in ["s2", "work", "a-b-c", &"a".repeat(20)] {
            assert!(check_session_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "=x", "x:", "UP", "a;b", "a.b", &"a".repeat(21)] {
            assert!(check_session_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_session_name("A b").unwrap_err().to_string(),
            "invalid session name \"A b\": use 1 to 20 characters from a-z, 0-9 and -"
        );
    }
}
