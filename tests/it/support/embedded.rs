//! A scratch data directory for the embedded PostgreSQL cluster.
//!
//! Data directories live under /tmp with short names because the socket
//! paths must fit in 107 bytes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln::embedded_pg::EmbeddedPostgres;

/// A scratch data directory; on drop (also after a failed assertion) it
/// stops any server still running there and removes the directory.
pub struct TempDataDir {
    pub path: PathBuf,
}

impl TempDataDir {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(format!("/tmp/kpg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("create temp data dir");
        TempDataDir { path }
    }
}

impl Drop for TempDataDir {
    fn drop(&mut self) {
        let pgdata = EmbeddedPostgres::cluster_dir_for(&self.path);
        if pgdata.join("postmaster.pid").exists()
            && let Ok(bins) = EmbeddedPostgres::locate_binaries()
        {
            // SAFETY: geteuid has no preconditions.
            let root = nix::unistd::geteuid().is_root();
            let mut cmd = if root {
                let mut cmd = std::process::Command::new("runuser");
                cmd.args(["-u", "postgres", "--"]).arg(&bins.pg_ctl);
                cmd
            } else {
                std::process::Command::new(&bins.pg_ctl)
            };
            let _ = cmd
                .arg("stop")
                .arg("-D")
                .arg(&pgdata)
                .args(["-m", "immediate", "-w"])
                .current_dir("/")
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
