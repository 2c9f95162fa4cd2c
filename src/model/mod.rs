//! The pure domain: statuses, aggregation, intents, naming, validation.
//! Nothing here does I/O, so all of it is tested as tables.

pub mod agent;
pub mod agent_settings;
pub mod aggregate;
pub mod db_credentials;
pub mod env;
pub mod git;
pub mod hook_token;
pub mod idle;
pub mod intent;
pub mod naming;
pub mod notice;
pub mod pool;
pub mod prefix_key;
pub mod quota;
pub mod scram;
pub mod secret;
pub mod session;
pub mod signin_budget;
pub mod signin_throttle;
pub mod signup_limit;
pub mod since;
pub mod status;
pub mod team;
pub mod template;
pub mod terminal;
#[cfg(test)]
pub(crate) mod untrusted;
pub mod webhook;

pub use aggregate::aggregate;
pub use intent::{Intent, IntentRefused};
pub use status::{Desired, ProjectStatus, ResourceStatus};
