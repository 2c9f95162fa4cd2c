//! Environment variable validation: keys are POSIX names the platform does
//! not reserve; values have bounded size.

pub const MAX_KEY_LEN: usize = 128;
pub const MAX_VALUE_LEN: usize = 32 * 1024;
pub const MAX_VARS_PER_PROJECT: usize = 200;

/// Variables the platform sets itself; a user value would be overwritten or,
/// worse, would redirect the sandbox.
pub const RESERVED_KEYS: &[&str] = &[
    "DATABASE_URL",
    "PROJECT_NAME",
    "HOME",
    "PATH",
    "SHELL",
    "USER",
    "TERM",
    "TMUX",
    "ANTHROPIC_AUTH_TOKEN",
];

/// Which of a user's settings reach their sandboxes, and under which name
/// (the seed's mapping: Claude Code reads its API key as
/// `ANTHROPIC_AUTH_TOKEN`). Settings not listed here stay on the server.
pub fn sandbox_name_of_user_setting(key: &str) -> Option<&'static str> {
    match key {
        "ANTHROPIC_API_KEY" => Some("ANTHROPIC_AUTH_TOKEN"),
        "ANTHROPIC_BASE_URL" => Some("ANTHROPIC_BASE_URL"),
        "ANTHROPIC_MODEL" => Some("ANTHROPIC_MODEL"),
        "ANTHROPIC_SMALL_FAST_MODEL" => Some("ANTHROPIC_SMALL_FAST_MODEL"),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("the variable name is empty")]
    EmptyKey,
    #[error("the variable name is {0} characters long; the limit is {MAX_KEY_LEN}")]
    KeyTooLong(usize),
    #[error(
        "{0:?} is not a valid variable name: use letters, digits and _, not starting with a digit"
    )]
    InvalidKey(String),
    #[error("{0} is set by Kiln itself and cannot be changed")]
    ReservedKey(String),
    #[error("names starting with KILN_ are reserved for Kiln")]
    KilnPrefix,
    #[error("the value of {key} is {len} bytes; the limit is {MAX_VALUE_LEN}")]
    ValueTooLong { key: String, len: usize },
    #[error("the value of {0} contains a NUL byte")]
    NulInValue(String),
    #[error("a project can have at most {MAX_VARS_PER_PROJECT} variables")]
    TooMany,
}

pub fn check_key(key: &str) -> Result<(), EnvError> {
    if key.is_empty() {
        return Err(EnvError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(EnvError::KeyTooLong(key.len()));
    }
    let mut bytes = key.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(EnvError::InvalidKey(key.chars().take(40).collect()));
    }
    let upper = key.to_ascii_uppercase();
    if upper.starts_with("KILN_") {
        return Err(EnvError::KilnPrefix);
    }
    if RESERVED_KEYS.contains(&upper.as_str()) {
        return Err(EnvError::ReservedKey(key.to_string()));
    }
    Ok(())
}

pub fn check_value(key: &str, value: &str) -> Result<(), EnvError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(EnvError::ValueTooLong {
            key: key.to_string(),
            len: value.len(),
        });
    }
    // A NUL cannot cross exec(2); better to refuse it than to cut the value.
    if value.contains('\0') {
        return Err(EnvError::NulInValue(key.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["FOO", "foo_bar", "_X1", "API_KEY_2"] {
            assert_eq!(check_key(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_key(""), Err(EnvError::EmptyKey));
        assert!(matches!(check_key("A=B"), Err(EnvError::InvalidKey(_))));
        assert!(matches!(check_key("MY VAR"), Err(EnvError::InvalidKey(_))));
        assert!(matches!(check_key("1ABC"), Err(EnvError::InvalidKey(_))));
        assert!(matches!(check_key("ÄPFEL"), Err(EnvError::InvalidKey(_))));
        assert_eq!(check_key("KILN_SECRET"), Err(EnvError::KilnPrefix));
        assert_eq!(check_key("kiln_x"), Err(EnvError::KilnPrefix));
        assert!(matches!(
            check_key("DATABASE_URL"),
            Err(EnvError::ReservedKey(_))
        ));
        assert!(matches!(check_key("Path"), Err(EnvError::ReservedKey(_))));
        assert!(matches!(
            check_key(&"A".repeat(200)),
            Err(EnvError::KeyTooLong(200))
        ));
    }

    #[test]
    fn values() {
        assert_eq!(check_value("K", "anything = goes; even\nnewlines"), Ok(()));
        assert!(matches!(
            check_value("K", &"x".repeat(MAX_VALUE_LEN + 1)),
            Err(EnvError::ValueTooLong { .. })
        ));
        assert!(matches!(
            check_value("K", "a\0b"),
            Err(EnvError::NulInValue(_))
        ));
    }

    #[test]
    fn only_the_claude_settings_reach_the_sandbox() {
        assert_eq!(
            sandbox_name_of_user_setting("ANTHROPIC_API_KEY"),
            Some("ANTHROPIC_AUTH_TOKEN")
        );
        assert_eq!(
            sandbox_name_of_user_setting("ANTHROPIC_BASE_URL"),
            Some("ANTHROPIC_BASE_URL")
        );
        assert_eq!(sandbox_name_of_user_setting("KUBECONFIG"), None);
        assert_eq!(sandbox_name_of_user_setting("OTHER"), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::model::untrusted::{hostile_text, is_unsafe_on_screen};

    fn is_posix_name(key: &str) -> bool {
        let mut bytes = key.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }

    fn is_reserved(key: &str) -> bool {
        let upper = key.to_ascii_uppercase();
        upper.starts_with("KILN_") || RESERVED_KEYS.contains(&upper.as_str())
    }

    proptest! {
        #![proptest_config(crate::model::untrusted::config(256))]

        #[test]
        fn an_accepted_key_is_a_posix_name_kiln_does_not_reserve(key in hostile_text(160)) {
            if check_key(&key).is_ok() {
                prop_assert!(is_posix_name(&key), "{key:?}");
                prop_assert!(key.len() <= MAX_KEY_LEN);
                prop_assert!(!is_reserved(&key), "{key:?}");
            }
        }

        #[test]
        fn every_posix_name_within_the_limit_is_accepted_unless_reserved(
            key in prop_oneof![
                "[A-Za-z_][A-Za-z0-9_]{0,127}",
                "[Kk][Ii][Ll][Nn]_[A-Za-z0-9_]{0,8}",
                // A reserved name in any mix of cases.
                (proptest::sample::select(RESERVED_KEYS), any::<u64>()).prop_map(|(k, bits)| {
                    k.chars()
                        .enumerate()
                        .map(|(i, c)| if bits >> (i % 64) & 1 == 1 { c.to_ascii_lowercase() } else { c })
                        .collect::<String>()
                }),
            ],
        ) {
            prop_assert_eq!(check_key(&key).is_ok(), !is_reserved(&key), "{:?}", key);
        }

        #[test]
        fn a_refused_key_is_named_briefly_and_harmlessly(key in hostile_text(400)) {
            if let Err(e) = check_key(&key) {
                let message = e.to_string();
                prop_assert!(message.len() <= 600, "{} bytes", message.len());
                prop_assert!(!message.chars().any(is_unsafe_on_screen), "{message:?}");
            }
        }

        #[test]
        fn an_accepted_value_has_no_nul_and_fits(value in hostile_text(64)) {
            let accepted = check_value("K", &value).is_ok();
            prop_assert_eq!(accepted, !value.contains('\0'));
        }

        #[test]
        fn a_value_over_the_limit_is_refused_whatever_it_holds(
            extra in 1usize..64,
            tail in hostile_text(8),
        ) {
            let value = format!("{}{tail}", "v".repeat(MAX_VALUE_LEN + extra));
            let refused = matches!(check_value("K", &value), Err(EnvError::ValueTooLong { .. }));
            prop_assert!(refused);
        }
    }
}
