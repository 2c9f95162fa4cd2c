//! Files and directories the local driver makes: private from the start
//! (the mode is set when the file is created, not after), owned by the
//! sandbox's host user where the sandbox must read them, and written so a
//! sandbox that controls the directory cannot redirect the write (a new
//! file of a fresh name, then a rename over the old one: a symlink planted
//! at the destination is replaced, never followed).

use std::path::Path;

use super::confine::SandboxUser;

/// Writes `contents` to `path` with mode 0600, owned by `owner` (Kiln's own
/// user when `None`), flushed to disk before it replaces the old file.
pub(crate) async fn write_owned(
    path: &Path,
    contents: Vec<u8>,
    owner: Option<SandboxUser>,
) -> std::io::Result<()> {
    write(path, contents, owner, Sync::Durable).await
}

/// [`write_owned`] without the flush, for a file that every start of its
/// sandbox writes afresh (the env files) or that is gone a moment later
/// (the tmux commands): a host crash ends the sandbox too, and its next
/// start writes the file again before anything reads it. Still private
/// from the start and put in place by rename: a reader never sees half.
pub(crate) async fn write_owned_volatile(
    path: &Path,
    contents: Vec<u8>,
    owner: Option<SandboxUser>,
) -> std::io::Result<()> {
    write(path, contents, owner, Sync::Volatile).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    Durable,
    Volatile,
}

async fn write(
    path: &Path,
    contents: Vec<u8>,
    owner: Option<SandboxUser>,
    sync: Sync,
) -> std::io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // A name of its own: concurrent writers (two reconcile passes) must
        // not rename each other's half-written file.
        let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = owner
            .map_or(Ok(()), |u| {
                std::os::unix::fs::fchown(&f, Some(u.uid), Some(u.gid))
            })
            .and_then(|()| f.write_all(&contents))
            .and_then(|()| match sync {
                Sync::Durable => f.sync_all(),
                Sync::Volatile => Ok(()),
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Creates `dir` (and missing parents, 0700) and makes it exactly `mode`,
/// owned by `owner` (user and group) if given, whatever the umask or the
/// mode it already had. Refuses a symlink: a directory Kiln hands out must
/// be the one it made.
pub(crate) fn ensure_dir(
    dir: &Path,
    mode: u32,
    owner: Option<(Option<u32>, Option<u32>)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(dir, uid, gid)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-files-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn written_files_are_private_and_replace_a_planted_symlink() {
        let d = scratch();
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let target = d.join("env");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_owned(&target, b"new".to_vec(), None).await.unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // The unflushed variant keeps every other property.
        std::os::unix::fs::symlink(&victim, d.join("env2")).unwrap();
        write_owned_volatile(&d.join("env2"), b"two".to_vec(), None)
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(d.join("env2")).unwrap(), "two");
        let meta = std::fs::symlink_metadata(d.join("env2")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn directories_get_their_mode_whatever_they_had() {
        let d = scratch();
        let sub = d.join("a");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_dir(&sub, 0o700, None).unwrap();
        let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let link = d.join("link");
        std::os::unix::fs::symlink(&sub, &link).unwrap();
        assert!(ensure_dir(&link, 0o700, None).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }
}
