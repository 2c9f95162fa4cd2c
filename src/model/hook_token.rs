//! The per-sandbox token a Kubernetes sandbox's hooks present to Kiln's
//! HTTP endpoint (a local sandbox uses its own socket instead).
//!
//! `{resource_name}.{hex HMAC-SHA256(key, resource_name)}`: the token names
//! its sandbox and proves Kiln issued it for that name, so checking one needs
//! no table, every replica (sharing the server's secret key) agrees, and no
//! token of one sandbox can be bent to name another (the MAC covers the
//! name). A deleted sandbox's token names a sandbox that no longer exists;
//! resource names are never reused (random suffix).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Where a sandbox's `kiln hook` reports over HTTP, and with which token
/// (both in its environment; the token from its Secret).
pub const HOOK_URL_VAR: &str = "KILN_HOOK_URL";
pub const HOOK_TOKEN_VAR: &str = "KILN_HOOK_TOKEN";

/// The longest token accepted (a resource name is at most 63 characters).
pub const MAX_TOKEN: usize = 63 + 1 + 64;

/// The token key, derived from the server's secret key so the encryption
/// key itself is never used as a MAC key.
pub fn derive_key(server_key: &[u8; 32]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(server_key).expect("HMAC accepts keys of any length");
    mac.update(b"kiln agent hook token v1");
    mac.finalize().into_bytes().into()
}

fn mac_of(key: &[u8; 32], resource_name: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(resource_name.as_bytes());
    mac
}

/// The token of sandbox `resource_name`.
pub fn issue(key: &[u8; 32], resource_name: &str) -> String {
    let tag = mac_of(key, resource_name).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{resource_name}.{hex}")
}

/// The sandbox a presented token was issued for, or `None` for anything
/// else (the MAC is compared in constant time).
pub fn verify<'a>(key: &[u8; 32], token: &'a str) -> Option<&'a str> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let (name, hex) = token.rsplit_once('.')?;
    if name.is_empty() || hex.len() != 64 {
        return None;
    }
    let tag: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    mac_of(key, name).verify_slice(&tag).ok()?;
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_sandbox_and_no_other() {
        let key = derive_key(&[7; 32]);
        let a = issue(&key, "blog-agentruntime-abc123");
        assert_eq!(verify(&key, &a), Some("blog-agentruntime-abc123"));
        // Another sandbox's name with this token's MAC: refused.
        let (_, tag) = a.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("shop-agentruntime-xyz789.{tag}")),
            None
        );
        // Another key (another server): refused.
        assert_eq!(verify(&derive_key(&[8; 32]), &a), None);
        let mut flipped = a.clone();
        flipped.pop();
        flipped.push(if a.ends_with('0') { '1' } else { '0' });
        assert_eq!(verify(&key, &flipped), None);
        for bad in ["", ".", "x", "x.", ".00", "x.zz", &"a".repeat(500)] {
            assert_eq!(verify(&key, bad), None, "{bad}");
        }
        assert_ne!(derive_key(&[7; 32]), [7; 32]);
    }
}
