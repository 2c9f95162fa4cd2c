//! The server's ed25519 host key: generated on first start into the data
//! dir and reused, so clients' known_hosts entries stay valid.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use russh::keys::{Algorithm, PrivateKey};

/// A host key the operator configured (`ssh.host_key_file`, e.g. mounted
/// from a Secret so that every replica presents the same key): it must
/// exist, since generating one per replica would defeat the point. Group
/// read is allowed, as Kubernetes grants it to the pod's `fsGroup` on a
/// Secret volume; world read is not.
pub fn load_configured(path: &Path) -> anyhow::Result<PrivateKey> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "reading the SSH host key ssh.host_key_file = {} (it is not generated when configured)",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        anyhow::bail!(
            "the SSH host key {} is readable by every user (mode {mode:o}); run chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    russh::keys::load_secret_key(path, None)
        .with_context(|| format!("reading the SSH host key {}", path.display()))
}

pub fn load_or_create(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        let mode = std::fs::metadata(path)
            .with_context(|| format!("inspecting the SSH host key {}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        // As OpenSSH does: a host key others can read may be someone else's.
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the SSH host key {} is open to other users (mode {mode:o}); run chmod 600 {}",
                path.display(),
                path.display()
            );
        }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_configured_host_key_is_never_generated_and_never_world_readable() {
        let dir = std::env::temp_dir().join(format!("kiln-hk-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("mounted_key");
        let e = super::load_configured(&path).unwrap_err().to_string();
        assert!(e.contains("not generated"), "{e}");
        assert!(!path.exists());
        let key = super::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        assert_eq!(super::load_configured(&path).unwrap(), key);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = super::load_configured(&path).unwrap_err().to_string();
        assert!(e.contains("every user"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_host_key_is_created_0600_and_refused_once_others_can_read_it() {
        let dir = std::env::temp_dir().join(format!("kiln-hk-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("ssh_host_ed25519_key");
        let key = super::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(super::load_or_create(&path).unwrap(), key);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = super::load_or_create(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.contains("chmod 600") && e.contains("ssh_host_ed25519_key"),
            "{e}"
        );
    }
}
