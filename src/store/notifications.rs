//! A user's notifications: read (which marks them read), counted, pruned.
//! Rows are added where what they tell happens (agent hooks, the idle
//! sweep, a project entering ERROR: see migrations 0006 and 0009); a
//! team's reach each of its members (0013), and name the project as
//! `TEAM/NAME`, the way the member names it.

use sqlx::Row;
use uuid::Uuid;

use super::agents::Notification;
use super::{Store, StoreResult};

impl Store {
    /// `user_id`'s newest notifications (only unread ones unless `all`),
    /// newest first, marking them read in the same statement; each says
    /// whether it was unread before.
    pub async fn read_notifications(
        &self,
        user_id: Uuid,
        limit: i64,
        all: bool,
    ) -> StoreResult<Vec<Notification>> {
        let rows = sqlx::query(
            "WITH shown AS (
                SELECT id FROM notifications
                WHERE user_id = $1 AND ($3 OR read_at IS NULL)
                ORDER BY created_at DESC, id LIMIT $2),
             marked AS (
                UPDATE notifications SET read_at = now()
                WHERE id IN (SELECT id FROM shown) AND read_at IS NULL)
             SELECT n.id,
                    CASE WHEN p.user_id = n.user_id THEN p.name
                         ELSE o.username || '/' || p.name END AS name,
                    n.session, n.kind, n.message, n.created_at,
                    n.read_at IS NULL AS unread
             FROM notifications n LEFT JOIN projects p ON p.id = n.project_id
                  LEFT JOIN users o ON o.id = p.user_id
             WHERE n.id IN (SELECT id FROM shown)
             ORDER BY n.created_at DESC, n.id",
        )
        .bind(user_id)
        .bind(limit)
        .bind(all)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let session: String = r.try_get("session")?;
                Ok(Notification {
                    id: r.try_get("id")?,
                    project: r.try_get("name")?,
                    session: (!session.is_empty()).then_some(session),
                    kind: r.try_get("kind")?,
                    message: r.try_get("message")?,
                    created_at: r.try_get("created_at")?,
                    unread: r.try_get("unread")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// How many of `user_id`'s notifications are unread.
    pub async fn unread_notifications(&self, user_id: Uuid) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?)
    }
}
