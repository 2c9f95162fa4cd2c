//! Project environment variables. Secret values are stored only encrypted;
//! every change bumps the project's `env_version` and makes its sandboxes due.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::project_lock::lock_project_by_name;
use super::{SecretKey, Store, StoreError, StoreResult};
use crate::model::env::{MAX_VARS_PER_PROJECT, check_key, check_value};
use crate::model::secret::Secret;

/// One project variable. The value is a [`Secret`] whether or not it is
/// marked secret, so no debug print can show a secret one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub key: String,
    pub value: Secret<String>,
    pub is_secret: bool,
    pub category: String,
}

pub(crate) fn env_context(project_id: Uuid, key: &str) -> String {
    format!("environments.value:{project_id}:{key}")
}

/// All variables of a project, secrets decrypted, sorted by key.
pub(crate) async fn read_env(
    conn: &mut PgConnection,
    key: &SecretKey,
    project_id: Uuid,
) -> StoreResult<Vec<EnvVar>> {
    let rows = sqlx::query(
        "SELECT key, value, value_enc, is_secret, category FROM environments
          WHERE project_id = $1 ORDER BY key",
    )
    .bind(project_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let k: String = r.try_get("key")?;
            let is_secret: bool = r.try_get("is_secret")?;
            let value = if is_secret {
                let sealed: Vec<u8> = r.try_get("value_enc")?;
                key.decrypt_string(&sealed, &env_context(project_id, &k))?
            } else {
                r.try_get("value")?
            };
            Ok(EnvVar {
                key: k,
                value: Secret::new(value),
                is_secret,
                category: r.try_get("category")?,
            })
        })
        .collect()
}

pub(crate) async fn bump_env_version(conn: &mut PgConnection, project_id: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE projects SET env_version = env_version + 1 WHERE id = $1")
        .bind(project_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE sandboxes SET next_attempt_at = least(next_attempt_at, now())
          WHERE project_id = $1 AND status <> 'ERROR'",
    )
    .bind(project_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// The variables of one of the user's projects.
    pub async fn list_env(&self, user_id: Uuid, project: &str) -> StoreResult<Vec<EnvVar>> {
        let p = self.find_project(user_id, project).await?;
        let mut conn = self.pool.acquire().await?;
        read_env(&mut conn, &self.key, p.project.id).await
    }

    /// Sets (adds or replaces) one variable; validated before anything is written.
    pub async fn set_env(
        &self,
        user_id: Uuid,
        project: &str,
        key: &str,
        value: &str,
        is_secret: bool,
    ) -> StoreResult<()> {
        check_key(key)?;
        check_value(key, value)?;
        let mut tx = self.pool.begin().await?;
        let (project_id, _, _) = lock_project_by_name(&mut tx, user_id, project).await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM environments WHERE project_id = $1 AND key <> $2",
        )
        .bind(project_id)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        if count as usize >= MAX_VARS_PER_PROJECT {
            return Err(crate::model::env::EnvError::TooMany.into());
        }
        let (plain, sealed) = if is_secret {
            (
                None,
                Some(self.key.encrypt_str(value, &env_context(project_id, key))),
            )
        } else {
            (Some(value), None)
        };
        sqlx::query(
            "INSERT INTO environments (project_id, user_id, key, value, value_enc, is_secret)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (project_id, key) DO UPDATE
               SET value = excluded.value, value_enc = excluded.value_enc, is_secret = excluded.is_secret",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(key)
        .bind(plain)
        .bind(sealed)
        .bind(is_secret)
        .execute(&mut *tx)
        .await?;
        bump_env_version(&mut tx, project_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes one variable; removing a variable that is not there is an error
    /// so a typo does not pass silently.
    pub async fn unset_env(&self, user_id: Uuid, project: &str, key: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let (project_id, _, _) = lock_project_by_name(&mut tx, user_id, project).await?;
        let gone = sqlx::query("DELETE FROM environments WHERE project_id = $1 AND key = $2")
            .bind(project_id)
            .bind(key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(StoreError::NotFound(format!(
                "the project has no variable {}",
                crate::model::naming::printable(key, 60)
            )));
        }
        bump_env_version(&mut tx, project_id).await?;
        tx.commit().await?;
        Ok(())
    }
}
