//! The two kinds of resource a project has, and the tables they live in.
//! Projects, leases and sandbox inputs all name them, so they sit apart
//! from each of those.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::events::EventKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Sandbox,
    Database,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 2] = [ResourceKind::Sandbox, ResourceKind::Database];

    pub fn table(self) -> &'static str {
        match self {
            ResourceKind::Sandbox => "sandboxes",
            ResourceKind::Database => "databases",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Sandbox => "sandbox",
            ResourceKind::Database => "database",
        }
    }

    pub fn event_kind(self) -> EventKind {
        match self {
            ResourceKind::Sandbox => EventKind::Sandbox,
            ResourceKind::Database => EventKind::Database,
        }
    }

    /// Associated data for a database password: binds the ciphertext to its row.
    pub fn password_context(self, resource_name: &str) -> String {
        format!("{}.password:{resource_name}", self.table())
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceKind {
    type Err = crate::model::status::UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sandbox" => Ok(Self::Sandbox),
            "database" => Ok(Self::Database),
            _ => Err(crate::model::status::UnknownStatus(s.to_string())),
        }
    }
}
