//! Environment variables (`KEY=VALUE`, split at the first `=`): an accepted
//! key is a POSIX name Kiln does not reserve, an accepted value has no NUL
//! and fits; refusals are short and safe to print.
#![no_main]

mod common;

use kiln::model::env::{MAX_KEY_LEN, MAX_VALUE_LEN, RESERVED_KEYS, check_key, check_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|assignment: &str| {
    let (key, value) = assignment.split_once('=').unwrap_or((assignment, ""));
    match check_key(key) {
        Ok(()) => {
            let mut bytes = key.bytes();
            assert!(bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_'));
            assert!(bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            assert!(key.len() <= MAX_KEY_LEN);
            let upper = key.to_ascii_uppercase();
            assert!(!upper.starts_with("KILN_") && !RESERVED_KEYS.contains(&upper.as_str()));
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.len() <= 600);
            common::assert_printable(&message, false);
        }
    }
    match check_value(key, value) {
        Ok(()) => assert!(!value.contains('\0') && value.len() <= MAX_VALUE_LEN),
        Err(_) => assert!(value.contains('\0') || value.len() > MAX_VALUE_LEN),
    }
});
