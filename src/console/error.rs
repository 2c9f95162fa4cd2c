//! The one error every console action returns. Each front end renders it
//! its own way (a status line on the dashboard, `error: …` and an exit
//! status for exec, a message for the operator CLI); the text is the same.

use crate::driver::DriverError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The thing asked about does not exist for this actor. Another
    /// tenant's project is reported exactly like a missing one.
    #[error("{0}")]
    NotFound(String),
    /// The action is understood but not allowed now (a status that forbids
    /// it, a name already taken, a right the actor lacks).
    #[error("{reason}")]
    Refused { reason: String },
    /// An input was malformed; `field` names which one.
    #[error("{reason}")]
    Invalid { field: &'static str, reason: String },
    /// A part the action needs (sessions, logs, a cluster) cannot be
    /// reached or is not configured on this server.
    #[error("{reason}")]
    Unavailable { reason: String },
    /// A fault of the server (database, key). Logged where it happened; the
    /// actor sees no detail, which could name tables, hosts or other users.
    #[error("internal error (the server log has the details); try again in a moment")]
    Internal,
}

pub type ConsoleResult<T> = Result<T, ConsoleError>;

/// What every front end says while Kiln's database cannot be reached.
pub const DATABASE_UNAVAILABLE: &str =
    "the database is unavailable right now; try again in a moment";

impl ConsoleError {
    pub fn refused(reason: impl Into<String>) -> Self {
        ConsoleError::Refused {
            reason: reason.into(),
        }
    }

    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConsoleError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        ConsoleError::Unavailable {
            reason: reason.into(),
        }
    }

    /// A driver's failure during `doing` (e.g. "cannot attach").
    pub(crate) fn driver(doing: &str, e: DriverError) -> Self {
        ConsoleError::unavailable(format!("{doing}: {e}"))
    }

    /// A short word for the audit record and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ConsoleError::NotFound(_) => "not_found",
            ConsoleError::Refused { .. } => "refused",
            ConsoleError::Invalid { .. } => "invalid",
            ConsoleError::Unavailable { .. } => "unavailable",
            ConsoleError::Internal => "internal",
        }
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ConsoleError::NotFound(m),
            StoreError::Conflict(m) => ConsoleError::refused(m),
            StoreError::Refused(r) => ConsoleError::refused(r.to_string()),
            StoreError::Quota(q) => ConsoleError::refused(q.to_string()),
            StoreError::Invalid(m) => ConsoleError::invalid("value", m),
            StoreError::Name(n) => ConsoleError::invalid("name", n.to_string()),
            StoreError::Env(n) => ConsoleError::invalid("env", n.to_string()),
            e if e.is_unreachable() => {
                tracing::warn!(error = %e, "console action: database unreachable");
                ConsoleError::unavailable(DATABASE_UNAVAILABLE)
            }
            StoreError::Db(_) | StoreError::Migrate(_) | StoreError::Crypto(_) => {
                tracing::error!(error = %e, "console action failed");
                ConsoleError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_faults_reach_the_actor_without_their_detail() {
        let e: ConsoleError = StoreError::Db(sqlx::Error::RowNotFound).into();
        assert!(matches!(e, ConsoleError::Internal));
        assert!(!e.to_string().contains("row"), "{e}");
    }

    #[test]
    fn an_unreachable_database_is_said_as_such_without_detail() {
        for cause in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let e: ConsoleError = StoreError::Db(cause).into();
            assert_eq!(e.kind(), "unavailable");
            assert_eq!(e.to_string(), DATABASE_UNAVAILABLE);
        }
    }

    #[test]
    fn a_users_mistake_keeps_its_message() {
        let e: ConsoleError = StoreError::NotFound("no project named x".into()).into();
        assert_eq!(e.to_string(), "no project named x");
        assert_eq!(e.kind(), "not_found");
        let e: ConsoleError = StoreError::Conflict("taken".into()).into();
        assert_eq!(e.kind(), "refused");
    }
}
