//! The lock that serialises starting and stopping the cluster between Kiln
//! processes.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{EmbeddedPgError, LOCK_TIMEOUT};

/// An exclusive lock (`flock`, through [`File::try_lock`]) on `{data_dir}/pg.lock`, released on drop (and by the
/// kernel if the process dies, so it can never go stale). It serialises
/// initdb/start/stop between kiln processes; flock conflicts between separate
/// opens even within one process, so concurrent tasks are serialised too.
pub(super) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(super) async fn acquire(path: &Path) -> Result<Self, EmbeddedPgError> {
        // Private: anyone who can open it can hold the lock and keep Kiln
        // from starting.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| EmbeddedPgError::Io {
                action: "open lock file",
                path: path.to_path_buf(),
                source,
            })?;
        let started = Instant::now();
        loop {
            // Non-blocking attempts so the async runtime is never blocked and
            // we can give up with a useful message.
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(TryLockError::Error(source)) => {
                    return Err(EmbeddedPgError::Io {
                        action: "lock",
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
            if started.elapsed() >= LOCK_TIMEOUT {
                return Err(EmbeddedPgError::LockTimeout {
                    path: path.to_path_buf(),
                    waited: LOCK_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
