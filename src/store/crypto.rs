//! Encryption of secrets at rest (XChaCha20-Poly1305).
//!
//! Every ciphertext is bound to where it lives (`context`, e.g. the project
//! and key of an env var) as associated data, so a value copied into another
//! tenant's row does not decrypt. The wrong key never yields garbage: the AEAD
//! tag fails and the caller gets [`CryptoError::WrongKey`].

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::model::secret::Secret;

const MAGIC: &[u8; 2] = b"k1";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "a stored secret does not decrypt with the configured key: the key is not the one these secrets were written with. \
         Restore the original key (KILN_SECRET_KEY or {{data-dir}}/secret.key); Kiln will not run with a different one"
    )]
    WrongKey,
    #[error("a stored secret is malformed (not written by Kiln, or truncated)")]
    Malformed,
    #[error("the secret key must be 64 hexadecimal characters (32 bytes), got {0} characters")]
    BadKeyText(usize),
    #[error("cannot read or create the secret key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the secret key file {0} is readable by other users (mode {1:o}); run chmod 600 on it")]
    KeyFileMode(String, u32),
}

/// The server's secret key.
#[derive(Clone, Debug)]
pub struct SecretKey {
    cipher: Secret<XChaCha20Poly1305>,
    /// Signs the sandboxes' hook tokens (see `model::hook_token`).
    hook_key: Secret<[u8; 32]>,
}

impl SecretKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            cipher: Secret::new(XChaCha20Poly1305::new(bytes.into())),
            hook_key: Secret::new(crate::model::hook_token::derive_key(bytes)),
        }
    }

    /// The token sandbox `resource_name`'s hooks present over HTTP.
    pub fn hook_token(&self, resource_name: &str) -> String {
        crate::model::hook_token::issue(self.hook_key.expose(), resource_name)
    }

    /// The sandbox a presented hook token was issued for, if any.
    pub fn hook_token_sandbox<'a>(&self, token: &'a str) -> Option<&'a str> {
        crate::model::hook_token::verify(self.hook_key.expose(), token)
    }

    pub fn generate() -> Self {
        Self::from_bytes(&random_key_bytes())
    }

    /// Parses the 64-hex-character form used in config and key files.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CryptoError::BadKeyText(text.len()));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| CryptoError::BadKeyText(text.len()))?;
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Reads the key file, creating it (mode 0600, never overwriting) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let io_err = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                let bytes = random_key_bytes();
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                f.write_all(format!("{hex}\n").as_bytes()).map_err(io_err)?;
                f.sync_all().map_err(io_err)?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path)
                    .map_err(io_err)?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(CryptoError::KeyFileMode(path.display().to_string(), mode));
                }
                Self::from_hex(&std::fs::read_to_string(path).map_err(io_err)?)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    pub fn encrypt(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let ct = self
            .cipher
            .expose()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn decrypt(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(CryptoError::Malformed)?;
        if rest.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.cipher
            .expose()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::WrongKey)
    }

    pub fn encrypt_str(&self, plaintext: &str, context: &str) -> Vec<u8> {
        self.encrypt(plaintext.as_bytes(), context)
    }

    pub fn decrypt_string(&self, sealed: &[u8], context: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.decrypt(sealed, context)?).map_err(|_| CryptoError::Malformed)
    }
}

fn random_key_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let k = SecretKey::generate();
        let sealed = k.encrypt_str("hunter2", "env:p1:API_KEY");
        assert_eq!(
            k.decrypt_string(&sealed, "env:p1:API_KEY").unwrap(),
            "hunter2"
        );
        assert!(matches!(
            k.decrypt_string(&sealed, "env:p2:API_KEY"),
            Err(CryptoError::WrongKey)
        ));
        // Two encryptions of one value differ (random nonce).
        assert_ne!(sealed, k.encrypt_str("hunter2", "env:p1:API_KEY"));
    }

    #[test]
    fn a_different_key_fails_loudly() {
        let sealed = SecretKey::generate().encrypt_str("x", "c");
        let err = SecretKey::generate().decrypt(&sealed, "c").unwrap_err();
        assert!(matches!(err, CryptoError::WrongKey));
        assert!(err.to_string().contains("Restore the original key"));
        assert!(matches!(
            SecretKey::generate().decrypt(b"k1short", "c"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("kiln-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.key");
        let a = SecretKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = SecretKey::load_or_create(&path).unwrap();
        let sealed = a.encrypt_str("v", "c");
        assert_eq!(b.decrypt_string(&sealed, "c").unwrap(), "v");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SecretKey::load_or_create(&path),
            Err(CryptoError::KeyFileMode(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hex_keys_are_validated() {
        assert!(SecretKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(matches!(
            SecretKey::from_hex("abc"),
            Err(CryptoError::BadKeyText(3))
        ));
        assert!(SecretKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
