//! Public-key lines (`keys add`): never a panic; an accepted line has one
//! canonical form (`ALGORITHM BASE64`, what is stored) that parses back to
//! the same key and is its own canonical form.
#![no_main]

use kiln::store::keys::{fingerprint, parse_public_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &str| {
    let Some(bare) = kiln::fuzzing::public_key_canonical(line) else {
        if let Err(e) = parse_public_key(line) {
            let message = e.to_string();
            assert!(message.len() <= 300 && !message.chars().any(char::is_control));
        }
        return;
    };
    let key = parse_public_key(line).expect("accepted once, accepted again");
    assert_eq!(bare.split(' ').count(), 2, "{bare:?}");
    let again = parse_public_key(&bare).expect("the canonical form parses");
    assert_eq!(fingerprint(&again), fingerprint(&key));
    assert_eq!(kiln::fuzzing::public_key_canonical(&bare).as_deref(), Some(bare.as_str()));
    let comment = key.comment().as_str_lossy();
    assert!(!comment.contains(['\n', '\r']));
    if !comment.is_empty() {
        let full = parse_public_key(&format!("{bare} {comment}")).expect("with its comment");
        assert_eq!(full.comment().as_str_lossy(), comment);
        assert_eq!(fingerprint(&full), fingerprint(&key));
    }
});
