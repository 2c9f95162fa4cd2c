//! Project slugs and resource names.

/// Longest slug: keeps `{slug}-agentruntime-{6}` within Kubernetes' 63-character
/// label values and Postgres' 63-byte identifiers.
pub const MAX_SLUG_LEN: usize = 20;
/// Longest project name as typed; anything longer is refused, not truncated.
pub const MAX_NAME_LEN: usize = 100;
pub const MAX_DESCRIPTION_LEN: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the project name is empty")]
    Empty,
    #[error("the project name is {0} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong(usize),
    #[error(
        "the project name {0:?} has no letters or digits; use a name with a-z or 0-9 in it (e.g. \"my-blog\")"
    )]
    NothingLeft(String),
    #[error("the project name contains control characters")]
    ControlCharacters,
    #[error("the description is {0} characters long; the limit is {MAX_DESCRIPTION_LEN}")]
    DescriptionTooLong(usize),
}

/// `My Blog!` → `myblog`: keeps lowercase ASCII letters and digits only, at
/// most [`MAX_SLUG_LEN`] of them. Refuses names that keep nothing.
pub fn slugify(name: &str) -> Result<String, NameError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    let chars = trimmed.chars().count();
    if chars > MAX_NAME_LEN {
        return Err(NameError::TooLong(chars));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(NameError::ControlCharacters);
    }
    let slug: String = trimmed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(MAX_SLUG_LEN)
        .collect();
    if slug.is_empty() {
        return Err(NameError::NothingLeft(trimmed.to_string()));
    }
    Ok(slug)
}

pub fn check_description(d: &str) -> Result<(), NameError> {
    let n = d.chars().count();
    if n > MAX_DESCRIPTION_LEN {
        return Err(NameError::DescriptionTooLong(n));
    }
    Ok(())
}

const SUFFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `{slug}-agentruntime-{6 random [a-z0-9]}`.
pub fn resource_name(slug: &str) -> String {
    format!("{slug}-agentruntime-{}", random_string(6, SUFFIX_ALPHABET))
}

/// `db-{13 random [a-z0-9]}`: a database's resource name. Unlike a
/// sandbox's it carries no slug, because a local database and its role are
/// named after it and every role on a PostgreSQL server can read the names
/// in `pg_database` and `pg_roles`: another tenant must learn nothing from
/// them. 16 characters, so it is also a Kubernetes database cluster's name
/// as it stands (a DNS-1035 label within 16 characters).
pub fn database_resource_name() -> String {
    format!("db-{}", random_string(13, SUFFIX_ALPHABET))
}

/// A pooled database's name (and its role's) until a project claims it:
/// `pool-{13 random}`, a prefix no project's database has, so a pooled
/// database is never mistaken for a tenant's.
pub fn pooled_database_name() -> String {
    format!("pool-{}", random_string(13, SUFFIX_ALPHABET))
}

/// A pooled sandbox's name, which it keeps when a project claims it (a
/// running sandbox cannot be renamed: see `local::pooled`): `sb-{13
/// random}`. No sandbox made from a slug has that shape (their names hold
/// `-agentruntime-`), so a pooled sandbox never shares a name, and with it
/// directories, with a project's own.
pub fn pooled_sandbox_name() -> String {
    format!("sb-{}", random_string(13, SUFFIX_ALPHABET))
}

/// Whether `name` has the shape of [`pooled_database_name`]'s names, which
/// no project's own database has: on a cluster, a database claimed from
/// the pool keeps its pooled name (a KubeBlocks cluster cannot be renamed).
pub fn is_pooled_database_name(name: &str) -> bool {
    name.strip_prefix("pool-")
        .is_some_and(|rest| rest.len() == 13 && rest.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)))
}

/// Whether `name` has the shape of [`pooled_sandbox_name`]'s names, which
/// no other resource's name has: a sandbox claimed from the pool.
pub fn is_pooled_sandbox_name(name: &str) -> bool {
    name.strip_prefix("sb-")
        .is_some_and(|rest| rest.len() == 13 && rest.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)))
}

/// Uniform random characters from `alphabet` (rejection sampling, no modulo bias).
pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the operating system's random source failed");
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A random password of letters and digits (about 190 bits for 32 characters).
pub fn random_password() -> String {
    random_string(
        32,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("My Blog!").unwrap(), "myblog");
        assert_eq!(slugify("  api-v2  ").unwrap(), "apiv2");
        assert_eq!(slugify("Ünïcødé 42").unwrap(), "ncd42");
        assert_eq!(
            slugify("abcdefghijklmnopqrstuvwxyz").unwrap(),
            "abcdefghijklmnopqrst"
        );
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        assert_eq!(slugify(""), Err(NameError::Empty));
        assert_eq!(slugify("   "), Err(NameError::Empty));
        assert!(matches!(slugify("!!!"), Err(NameError::NothingLeft(_))));
        assert!(matches!(slugify("日本語"), Err(NameError::NothingLeft(_))));
        assert_eq!(
            slugify(&"a".repeat(10_000)),
            Err(NameError::TooLong(10_000))
        );
        assert_eq!(
            slugify("evil\x1b[2Jname"),
            Err(NameError::ControlCharacters)
        );
        assert!(
            slugify("%%%")
                .unwrap_err()
                .to_string()
                .contains("no letters or digits")
        );
    }

    #[test]
    fn resource_names_have_the_documented_shape() {
        let n = resource_name("myblog");
        let suffix = n.strip_prefix("myblog-agentruntime-").unwrap();
        assert_eq!(suffix.len(), 6);
        assert!(suffix.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
        assert_ne!(resource_name("x"), resource_name("x"));
        assert!(resource_name(&"a".repeat(MAX_SLUG_LEN)).len() <= 63);
    }

    #[test]
    fn pooled_sandbox_names_never_have_the_shape_of_a_slugged_name() {
        let n = pooled_sandbox_name();
        let random = n.strip_prefix("sb-").unwrap();
        assert_eq!(random.len(), 13);
        assert!(random.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
        assert!(!n.contains("-agentruntime-"));
        assert_ne!(pooled_sandbox_name(), pooled_sandbox_name());
        assert!(is_pooled_sandbox_name(&n));
        assert!(is_pooled_database_name(&pooled_database_name()));
        assert!(!is_pooled_database_name(&n));
        assert!(!is_pooled_database_name(&database_resource_name()));
        for other in [
            resource_name("sb"),
            database_resource_name(),
            pooled_database_name(),
            "sb-".to_string(),
            format!("{n}x"),
            n.to_uppercase(),
        ] {
            assert!(!is_pooled_sandbox_name(&other), "{other}");
        }
    }

    #[test]
    fn database_names_are_opaque_and_fit_postgres_and_kubernetes() {
        let n = database_resource_name();
        let random = n.strip_prefix("db-").unwrap();
        assert_eq!(random.len(), 13);
        assert!(random.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
        assert_eq!(n.len(), 16);
        assert_ne!(database_resource_name(), database_resource_name());
    }

    #[test]
    fn passwords_are_alphanumeric_and_distinct() {
        let p = random_password();
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(p, random_password());
    }
}

/// Characters that are not `char::is_control` but still reorder or hide
/// text: zero-width and bidi marks (the Arabic letter mark U+061C too),
/// embeddings, overrides and isolates, and the tag characters
/// (U+E0000–E007F), which most terminals draw as nothing and which can
/// carry hidden text.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}

/// The display rule for untrusted text, everywhere Kiln shows it (the
/// dashboard, exec output, `logs`): control characters (C0, DEL, C1, so no
/// escape sequence starts) and invisible format characters become `?`.
pub fn display_char(c: char) -> char {
    if c.is_control() || is_invisible_format(c) {
        '?'
    } else {
        c
    }
}

/// A user-supplied string made safe to print in a one-line message
/// ([`display_char`] on each character), cut to `max` characters with an
/// ellipsis.
pub fn printable(s: &str, max: usize) -> String {
    let mut out: String = s.chars().map(display_char).take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn printable_neutralises_escapes_and_cuts() {
        assert_eq!(super::printable("a\x1b[2Jb", 10), "a?[2Jb");
        assert_eq!(super::printable("abcdef", 3), "abc…");
    }

    #[test]
    fn printable_neutralises_bidi_and_invisible_characters() {
        assert_eq!(super::printable("inv\u{202e}exe.txt", 20), "inv?exe.txt");
        assert_eq!(
            super::printable("a\u{200b}b\u{2066}c\u{feff}", 20),
            "a?b?c?"
        );
        assert_eq!(super::printable("\u{9b}31m", 20), "?31m");
    }

    /// Tag characters spell hidden text (`U+E0041` is an invisible `A`).
    #[test]
    fn printable_neutralises_tag_characters() {
        assert_eq!(
            super::printable("ok\u{e0041}\u{e0042}\u{e007f}", 20),
            "ok???"
        );
        assert_eq!(super::display_char('\u{e0001}'), '?');
        assert_eq!(super::display_char('\u{e0080}'), '\u{e0080}');
    }

    /// Found by the property tests: the Arabic letter mark is a bidi mark
    /// like U+200F and reorders the text after it just the same.
    #[test]
    fn printable_neutralises_the_arabic_letter_mark() {
        assert_eq!(super::printable("abc\u{61c}123", 20), "abc?123");
        assert_eq!(super::display_char('\u{61c}'), '?');
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::model::untrusted::{hostile_char, hostile_text, is_unsafe_on_screen};

    proptest! {
        #![proptest_config(crate::model::untrusted::config(256))]

        #[test]
        fn display_char_keeps_exactly_the_safe_characters(c in hostile_char()) {
            let shown = display_char(c);
            prop_assert!(!is_unsafe_on_screen(shown) && !shown.is_control(), "{c:?} -> {shown:?}");
            prop_assert_eq!(shown == c, !c.is_control() && !is_invisible_format(c), "{:?}", c);
        }

        #[test]
        fn printable_text_is_safe_and_cut_to_its_width(s in hostile_text(80), max in 0usize..100) {
            let out = printable(&s, max);
            prop_assert!(!out.chars().any(is_unsafe_on_screen), "{out:?}");
            // Safe characters pass unchanged, in order; a cut ends in one ellipsis.
            let kept: String = s.chars().map(display_char).take(max).collect();
            let cut = s.chars().count() > max;
            prop_assert_eq!(out, if cut { format!("{kept}…") } else { kept });
        }

        #[test]
        fn printable_is_idempotent(s in hostile_text(80)) {
            let once = printable(&s, 1000);
            prop_assert_eq!(printable(&once, 1000), once.clone());
        }

        #[test]
        fn a_slug_is_short_lowercase_ascii_from_the_name(name in hostile_text(120)) {
            match slugify(&name) {
                Ok(slug) => {
                    prop_assert!((1..=MAX_SLUG_LEN).contains(&slug.len()), "{slug:?}");
                    prop_assert!(slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
                    let alnum: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
                    prop_assert!(alnum.to_ascii_lowercase().starts_with(&slug));
                    prop_assert!(!name.trim().chars().any(char::is_control));
                }
                Err(e) => {
                    let message = e.to_string();
                    // NothingLeft quotes the name with Debug escapes.
                    prop_assert!(!message.chars().any(is_unsafe_on_screen), "{message:?}");
                }
            }
        }
    }
}
