//! Kiln: a multi-tenant platform for AI coding sandboxes, driven from the terminal.
//! See `DESIGN.md` for the architecture; `main.rs` only wires these modules.

pub mod driver;
pub mod local;
