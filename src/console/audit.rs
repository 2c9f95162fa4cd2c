//! Reading the audit trail: a user reads their own records only (sign-ins
//! under their name, their actions, the operator's actions for them); the
//! operator reads everyone's, filtered.

use chrono::{DateTime, Utc};

use crate::store::audit::{AuditFilter, AuditRecord};

use super::{Action, ConsoleResult, OperatorConsole, UserConsole};

impl UserConsole {
    /// The user's newest `limit` records since `since`, oldest first.
    pub async fn audit(
        &self,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> ConsoleResult<Vec<AuditRecord>> {
        self.gated(Action::ReadAudit, async {
            let filter = AuditFilter {
                user_id: Some(self.user_id()),
                since,
                limit,
                ..AuditFilter::default()
            };
            Ok(self.store().list_audit(&filter).await?)
        })
        .await
    }
}

impl OperatorConsole {
    /// Anyone's records, filtered by user (as named in the record) and
    /// project.
    pub async fn audit(&self, filter: &AuditFilter) -> ConsoleResult<Vec<AuditRecord>> {
        Ok(self.store().list_audit(filter).await?)
    }

    /// Retention: deletes records older than `keep`.
    pub async fn prune_audit(&self, keep: std::time::Duration) -> ConsoleResult<u64> {
        Ok(self.store().prune_audit(keep).await?)
    }
}
