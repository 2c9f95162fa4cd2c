//! The SSH front door: authentication, the dashboard session, exec commands.

pub mod attach;
pub mod exec;
pub mod hostkey;
pub mod input;
pub mod logs;
pub mod pane_keys;
pub mod project_lists;
pub mod ratelimit;
pub mod server;
pub mod session;
pub mod terminal;
