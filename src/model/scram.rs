//! SCRAM-SHA-256 password verifiers as PostgreSQL stores them in
//! `pg_authid.rolpassword` (RFC 5802 and RFC 7677).
//!
//! Kiln computes the verifier itself and sends only that in
//! `ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'`, so no plaintext password is
//! ever part of a statement a server could log. Checking a stored verifier
//! against the expected password lets a reconcile pass skip the ALTER when
//! nothing changed.
//!
//! Passwords are taken as bytes as they are: PostgreSQL applies SASLprep
//! first, which leaves printable ASCII unchanged, and Kiln's generated
//! passwords are ASCII letters and digits.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default (`scram_iterations`, RFC 7677's minimum).
pub const ITERATIONS: u32 = 4096;
/// Bytes of random salt per verifier, as PostgreSQL generates them.
pub const SALT_LEN: usize = 16;

const PREFIX: &str = "SCRAM-SHA-256$";

/// A verifier for `password` with a fresh random salt.
pub fn new_verifier(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).expect("the operating system's random source failed");
    verifier(password, &salt, ITERATIONS)
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, all three
/// binary parts in standard base64.
pub fn verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let (stored_key, server_key) = keys(password, salt, iterations);
    format!(
        "{PREFIX}{iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

/// Whether `stored` (a `rolpassword` value) is a SCRAM-SHA-256 verifier for
/// `password`. Anything else (NULL, an MD5 hash, garbage) is not.
pub fn verifies(stored: &str, password: &str) -> bool {
    let Some((iterations, salt, stored_key, server_key)) = parse(stored) else {
        return false;
    };
    // Refuse absurd counts rather than spend minutes on a forged row.
    if iterations == 0 || iterations > 1_000_000 {
        return false;
    }
    let (want_stored, want_server) = keys(password, &salt, iterations);
    want_stored[..] == stored_key[..] && want_server[..] == server_key[..]
}

type Parsed = (u32, Vec<u8>, Vec<u8>, Vec<u8>);

fn parse(stored: &str) -> Option<Parsed> {
    let rest = stored.strip_prefix(PREFIX)?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    Some((
        iterations.parse().ok()?,
        BASE64.decode(salt).ok()?,
        BASE64.decode(stored_key).ok()?,
        BASE64.decode(server_key).ok()?,
    ))
}

/// StoredKey = H(HMAC(SaltedPassword, "Client Key")),
/// ServerKey = HMAC(SaltedPassword, "Server Key").
fn keys(password: &str, salt: &[u8], iterations: u32) -> ([u8; 32], [u8; 32]) {
    let salted = hi(password.as_bytes(), salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    (stored_key, hmac(&salted, b"Server Key"))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Hi(str, salt, i) of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mac = Hmac::<Sha256>::new_from_slice(password).expect("HMAC accepts keys of any length");
    let mut first = mac.clone();
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = first.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut next = mac.clone();
        next.update(&u);
        u = next.finalize().into_bytes().into();
        for (o, b) in out.iter_mut().zip(u) {
            *o ^= b;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's hashlib.pbkdf2_hmac and hmac
    /// (the same formulas); the integration tests also check verifiers
    /// against a real PostgreSQL login.
    const PENCIL: &str = "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$\
        zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE=";

    #[test]
    fn verifier_matches_an_independent_computation() {
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(verifier("pencil", &salt, 4096), PENCIL);
    }

    #[test]
    fn verifies_only_the_right_password() {
        assert!(verifies(PENCIL, "pencil"));
        assert!(!verifies(PENCIL, "pencil2"));
        assert!(!verifies(PENCIL, ""));
    }

    #[test]
    fn malformed_or_foreign_values_do_not_verify() {
        for stored in [
            "",
            "md5abcdef",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:AAEC",
            "SCRAM-SHA-256$0:AAECAwQFBgcICQoLDA0ODw==$zHCd:dd5p",
            "SCRAM-SHA-256$99999999:AAECAwQFBgcICQoLDA0ODw==$zHCd:dd5p",
            "SCRAM-SHA-256$4096:!!$zHCd:dd5p",
        ] {
            assert!(!verifies(stored, "pencil"), "{stored}");
        }
    }

    #[test]
    fn new_verifiers_are_salted_afresh_and_verify() {
        let (a, b) = (new_verifier("Secret1"), new_verifier("Secret1"));
        assert_ne!(a, b, "two verifiers share a salt");
        assert!(a.starts_with("SCRAM-SHA-256$4096:"));
        assert!(verifies(&a, "Secret1") && verifies(&b, "Secret1"));
        // The salt is 16 bytes: 24 base64 characters.
        let salt = a.split(['$', ':']).nth(2).unwrap();
        assert_eq!(BASE64.decode(salt).unwrap().len(), SALT_LEN);
    }
}
