//! The single-machine back end (DESIGN.md §6, "Local"): each sandbox is a
//! working directory plus a tmux server of its own, confined by bubblewrap
//! (see `confine`); databases are real databases and roles on a Postgres
//! server.

mod attach;
mod confine;
mod database;
mod files;
mod git;
pub mod hooks;
mod network;
mod observed;
mod pooled;
mod pty_io;
mod sandbox;
mod server;
mod terminfo;
mod tmux;

pub use confine::{Confinement, DEFAULT_SANDBOX_UID, SandboxUser};
pub use database::LocalDatabases;
pub use hooks::HookReport;
pub use sandbox::LocalSandboxes;

use crate::driver::DriverError;

/// Checks a resource name before it becomes a directory, a tmux session, a
/// role or a database. Names are generated as `{slug}-agentruntime-{6}`, so
/// anything outside `[a-z0-9-]{1,63}` is a bug or an attack: refuse it rather
/// than escape it (a `/` would leave the data dir, a `.` or `:` is a tmux
/// target separator, a quote would end a SQL identifier).
pub(crate) fn validate_resource_name(name: &str) -> Result<(), DriverError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DriverError::permanent(format!(
            "invalid resource name {name:?}: expected 1 to 63 characters from [a-z0-9-]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_limited_to_lowercase_digits_and_dashes() {
        assert!(validate_resource_name("shop-agentruntime-a1b2c3").is_ok());
        assert!(validate_resource_name(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "Shop",
            "a'b",
            "a\"b",
            "a/b",
            "a.b",
            "a:b",
            "a b",
            &"a".repeat(64),
        ] {
            let err = validate_resource_name(bad).unwrap_err();
            assert!(!err.is_transient(), "{bad:?}");
        }
    }
}
