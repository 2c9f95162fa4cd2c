//! Stored templates: global ones (an admin's, `user_id` NULL) and each
//! user's own, kept as their checked TOML text. A user's templates are
//! reached only with that user's id, so no query can return another's.

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, conflict_or};
use crate::model::template::K8sSizing;

/// One stored template's row.
#[derive(Debug, Clone)]
pub struct StoredTemplate {
    pub name: String,
    pub description: String,
    /// The checked TOML text.
    pub body: String,
    /// `None`: a global template.
    pub user_id: Option<Uuid>,
}

fn from_row(r: &sqlx::postgres::PgRow) -> Result<StoredTemplate, sqlx::Error> {
    Ok(StoredTemplate {
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        body: r.try_get("body")?,
        user_id: r.try_get("user_id")?,
    })
}

impl Store {
    /// The global templates, then `user_id`'s own, each by name.
    pub async fn list_templates(&self, user_id: Uuid) -> StoreResult<Vec<StoredTemplate>> {
        let rows = sqlx::query(
            "SELECT name, description, body, user_id FROM templates
              WHERE user_id IS NULL OR user_id = $1
              ORDER BY user_id NULLS FIRST, name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Adds or replaces a global template.
    pub async fn put_global_template(
        &self,
        name: &str,
        description: &str,
        body: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO templates (user_id, name, description, body) VALUES (NULL, $1, $2, $3)
             ON CONFLICT (name) WHERE user_id IS NULL
             DO UPDATE SET description = excluded.description, body = excluded.body",
        )
        .bind(name)
        .bind(description)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Saves `user_id`'s own template; a name they already use is refused.
    pub async fn insert_user_template(
        &self,
        user_id: Uuid,
        name: &str,
        description: &str,
        body: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO templates (user_id, name, description, body) VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(name)
        .bind(description)
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!("you already have a template named {name}; delete it first")
            })
        })?;
        Ok(())
    }

    /// What a project's sandbox was made with from its template: the
    /// session command, the setup script, and its image and sizes on
    /// Kubernetes.
    pub async fn project_recipe(
        &self,
        project_id: Uuid,
    ) -> StoreResult<(Option<String>, Option<String>, K8sSizing)> {
        let row = sqlx::query(
            "SELECT session_command, setup_script, k8s_image, k8s_cpu, k8s_memory
               FROM projects WHERE id = $1",
        )
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound("the project is gone".into()))?;
        Ok((
            row.try_get("session_command")?,
            row.try_get("setup_script")?,
            K8sSizing {
                image: row.try_get("k8s_image")?,
                cpu: row.try_get("k8s_cpu")?,
                memory: row.try_get("k8s_memory")?,
            },
        ))
    }

    /// Deletes a template: `user_id`'s own, or a global one with `None`.
    pub async fn delete_template(&self, user_id: Option<Uuid>, name: &str) -> StoreResult<()> {
        let done = sqlx::query(
            "DELETE FROM templates WHERE name = $1 AND user_id IS NOT DISTINCT FROM $2",
        )
        .bind(name)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no such template: {name}")));
        }
        Ok(())
    }
}
