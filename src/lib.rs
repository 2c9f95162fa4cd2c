//! Kiln: a multi-tenant platform for AI coding sandboxes, driven from the terminal.
//! See `DESIGN.md` for the architecture; `main.rs` only wires these modules.

pub mod backends;
pub mod bench;
pub mod cli;
pub mod config;
pub mod console;
pub mod driver;
pub mod embedded_pg;
#[cfg(feature = "test-support")]
pub mod fake_driver;
pub mod k8s;
pub mod local;
pub mod model;
pub mod ops;
pub mod reconcile;
pub mod runtime;
pub mod ssh;
pub mod store;
pub mod tui;

/// Narrow entry points for the fuzz targets in `fuzz/` (not an API): each
/// forwards to a parser that takes untrusted input and is not public.
#[doc(hidden)]
pub mod fuzzing {
    /// What an exec command line answers without a console (help or a
    /// usage error), or `None` when it names a command to run.
    pub fn exec_command_line(line: &str) -> Option<crate::ssh::exec::ExecOutput> {
        crate::ssh::exec::answer_without_console(line)
    }

    /// The canonical form of a public-key line (`ALGORITHM BASE64`, what
    /// is stored), or `None` when the line is refused.
    pub fn public_key_canonical(line: &str) -> Option<String> {
        let key = crate::store::keys::parse_public_key(line).ok()?;
        Some(crate::store::keys::bare_openssh(&key).expect("an accepted key re-serialises"))
    }
}
