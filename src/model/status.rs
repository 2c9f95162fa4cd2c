//! The two status enums and the desired state of a resource.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus(s.to_string())),
                }
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

string_enum!(
    /// Status of one sandbox or database.
    ResourceStatus {
        Creating => "CREATING",
        Starting => "STARTING",
        Running => "RUNNING",
        Stopping => "STOPPING",
        Stopped => "STOPPED",
        Terminating => "TERMINATING",
        Terminated => "TERMINATED",
        Error => "ERROR",
    }
);

string_enum!(
    /// Status of a project, aggregated from its resources.
    ProjectStatus {
        Creating => "CREATING",
        Starting => "STARTING",
        Running => "RUNNING",
        Stopping => "STOPPING",
        Stopped => "STOPPED",
        Terminating => "TERMINATING",
        Terminated => "TERMINATED",
        Error => "ERROR",
        Partial => "PARTIAL",
    }
);

string_enum!(
    /// Where the user wants a resource to end up.
    Desired {
        Running => "RUNNING",
        Stopped => "STOPPED",
        Terminated => "TERMINATED",
    }
);

impl ResourceStatus {
    /// A status on the way somewhere: the reconcile loop owes it work.
    pub fn is_transition(self) -> bool {
        matches!(
            self,
            Self::Creating | Self::Starting | Self::Stopping | Self::Terminating
        )
    }

    /// The transition a resource shows while it moves toward `desired`.
    pub fn moving_toward(desired: Desired) -> Self {
        match desired {
            Desired::Running => Self::Starting,
            Desired::Stopped => Self::Stopping,
            Desired::Terminated => Self::Terminating,
        }
    }

    /// The status a resource shows once it has reached `desired`.
    pub fn settled_at(desired: Desired) -> Self {
        match desired {
            Desired::Running => Self::Running,
            Desired::Stopped => Self::Stopped,
            Desired::Terminated => Self::Terminated,
        }
    }
}

impl From<ResourceStatus> for ProjectStatus {
    fn from(s: ResourceStatus) -> Self {
        match s {
            ResourceStatus::Creating => Self::Creating,
            ResourceStatus::Starting => Self::Starting,
            ResourceStatus::Running => Self::Running,
            ResourceStatus::Stopping => Self::Stopping,
            ResourceStatus::Stopped => Self::Stopped,
            ResourceStatus::Terminating => Self::Terminating,
            ResourceStatus::Terminated => Self::Terminated,
            ResourceStatus::Error => Self::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_text() {
        for s in ResourceStatus::ALL {
            assert_eq!(s.as_str().parse::<ResourceStatus>().unwrap(), *s);
        }
        for s in ProjectStatus::ALL {
            assert_eq!(s.as_str().parse::<ProjectStatus>().unwrap(), *s);
        }
        for s in Desired::ALL {
            assert_eq!(s.as_str().parse::<Desired>().unwrap(), *s);
        }
        assert!("running".parse::<ResourceStatus>().is_err());
        assert!("PARTIAL".parse::<ResourceStatus>().is_err());
    }
}
