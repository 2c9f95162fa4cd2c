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
pub mod reconcile;
pub mod runtime;
pub mod ssh;
pub mod store;
pub mod tui;
