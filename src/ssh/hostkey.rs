//! The server's ed25519 host key: generated on first start into the data
//! dir and reused, so clients' known_hosts entries stay valid.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use russh::keys::{Algorithm, PrivateKey};

pub fn load_or_create(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .with_context(|| format!("reading the SSH host key {}", path.display()));
    }
    let key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .context("generating the SSH host key")?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .context("encoding the SSH host key")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the SSH host key {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(key)
}
