//! Per-user settings and secrets (`ANTHROPIC_API_KEY`, `KUBECONFIG`, …).
//! Secret values are stored only encrypted, bound to the user and the key, so
//! a sealed value copied onto another row or another user does not open.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult};
use crate::model::naming::printable;
use crate::model::secret::Secret;

/// Longest accepted key: a POSIX name of 1..=64 characters.
pub const MAX_CONFIG_KEY_LEN: usize = 64;
/// Largest accepted value, in bytes; a kubeconfig with inline certificates fits.
pub const MAX_CONFIG_VALUE_LEN: usize = 64 * 1024;

/// The settings the dashboard offers by name, and whether each is secret by default.
pub const KNOWN_CONFIGS: &[(&str, bool)] = &[
    ("ANTHROPIC_API_KEY", true),
    ("ANTHROPIC_BASE_URL", false),
    ("KUBECONFIG", true),
];

pub const KUBECONFIG: &str = "KUBECONFIG";
/// An HTTPS access token for the user's private repositories: handed to
/// the clone of a new sandbox, never put in a sandbox's environment.
pub const GIT_TOKEN: &str = "GIT_TOKEN";

/// One setting as its owner sees it (the value decrypted). The value is a
/// [`Secret`] whether or not the user marked it secret, so no debug print
/// can show a secret one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub key: String,
    pub value: Secret<String>,
    pub is_secret: bool,
    pub category: String,
    pub updated_at: DateTime<Utc>,
}

/// Whether a setting named `key` is secret unless the user says otherwise.
pub fn default_secret(key: &str) -> bool {
    // The webhook's URL may carry a token (the console keeps it secret
    // whatever the form says; its own line on the settings screen shows it).
    key == super::webhooks::WEBHOOK_URL
        || key == GIT_TOKEN
        || KNOWN_CONFIGS.iter().any(|&(k, secret)| k == key && secret)
}

/// The category a key is filed under (shown as a group, never trusted).
pub fn category_for(key: &str) -> &'static str {
    match key {
        KUBECONFIG => "kubernetes",
        super::webhooks::WEBHOOK_URL => "notifications",
        GIT_TOKEN => "git",
        k if k.starts_with("ANTHROPIC_") => "anthropic",
        _ => "general",
    }
}

/// An uppercase POSIX name: `[A-Z_][A-Z0-9_]{0,63}`.
pub fn check_config_key(key: &str) -> StoreResult<()> {
    let invalid = |why: &str| {
        Err(StoreError::Invalid(format!(
            "invalid setting name {}: {why}",
            printable(key, 60)
        )))
    };
    let Some(first) = key.chars().next() else {
        return Err(StoreError::Invalid(
            "the setting name is empty: use e.g. ANTHROPIC_API_KEY".into(),
        ));
    };
    if key.len() > MAX_CONFIG_KEY_LEN {
        return invalid(&format!("at most {MAX_CONFIG_KEY_LEN} characters"));
    }
    if first.is_ascii_digit() {
        return invalid("it must not start with a digit");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return invalid("use only A-Z, 0-9 and _ (uppercase)");
    }
    Ok(())
}

/// A value of at most 64 KiB without NUL bytes (Postgres text cannot hold them).
pub fn check_config_value(value: &str) -> StoreResult<()> {
    if value.is_empty() {
        return Err(StoreError::Invalid(
            "the value is empty: to remove a setting, unset it".into(),
        ));
    }
    if value.len() > MAX_CONFIG_VALUE_LEN {
        return Err(StoreError::Invalid(format!(
            "the value is {} bytes; the limit is {} KiB",
            value.len(),
            MAX_CONFIG_VALUE_LEN / 1024
        )));
    }
    if value.contains('\0') {
        return Err(StoreError::Invalid(
            "the value contains a NUL byte, which cannot be stored".into(),
        ));
    }
    Ok(())
}

fn config_context(user_id: Uuid, key: &str) -> String {
    format!("user_configs.value:{user_id}:{key}")
}

impl Store {
    /// Sets (adds or replaces) one of the user's settings; validated before
    /// anything is written.
    pub async fn set_user_config(
        &self,
        user_id: Uuid,
        key: &str,
        value: &str,
        is_secret: bool,
    ) -> StoreResult<()> {
        check_config_key(key)?;
        check_config_value(value)?;
        let (plain, sealed) = if is_secret {
            let sealed = self.key.encrypt_str(value, &config_context(user_id, key));
            (None, Some(sealed))
        } else {
            (Some(value), None)
        };
        sqlx::query(
            "INSERT INTO user_configs (user_id, key, value, value_enc, category, is_secret)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, key) DO UPDATE
               SET value = excluded.value, value_enc = excluded.value_enc,
                   category = excluded.category, is_secret = excluded.is_secret",
        )
        .bind(user_id)
        .bind(key)
        .bind(plain)
        .bind(sealed)
        .bind(category_for(key))
        .bind(is_secret)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
                StoreError::NotFound("no such user".into())
            }
            _ => StoreError::Db(e),
        })?;
        self.resync_sandboxes_for(user_id, key).await
    }

    /// A setting that reaches the sandboxes (the Claude API key, …) changed:
    /// every project of the user is behind on its environment now.
    async fn resync_sandboxes_for(&self, user_id: Uuid, key: &str) -> StoreResult<()> {
        if crate::model::env::sandbox_name_of_user_setting(key).is_none() {
            return Ok(());
        }
        // The projects locked in id order first, as the reconcile loop's
        // outcome writes lock them: an update in scan order could deadlock
        // with one of those writing two of the user's projects.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM projects WHERE user_id = $1 ORDER BY id FOR UPDATE")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "WITH p AS (UPDATE projects SET env_version = env_version + 1
                         WHERE user_id = $1 RETURNING id)
             UPDATE sandboxes SET next_attempt_at = least(next_attempt_at, now())
              WHERE project_id IN (SELECT id FROM p) AND status <> 'ERROR'",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes one setting; removing one that is not there is an error so a
    /// typo does not pass silently.
    pub async fn unset_user_config(&self, user_id: Uuid, key: &str) -> StoreResult<()> {
        let gone = sqlx::query("DELETE FROM user_configs WHERE user_id = $1 AND key = $2")
            .bind(user_id)
            .bind(key)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(StoreError::NotFound(format!(
                "you have no setting {}",
                printable(key, 60)
            )));
        }
        self.resync_sandboxes_for(user_id, key).await
    }

    /// Who the user is to a back end: their username and, if they set one,
    /// their kubeconfig (decrypted). One statement, so the router can ask
    /// often.
    pub async fn tenant_backend_inputs(
        &self,
        user_id: Uuid,
    ) -> StoreResult<(String, Option<String>)> {
        let row = sqlx::query(
            "SELECT u.username, c.value, c.value_enc, c.is_secret
               FROM users u
               LEFT JOIN user_configs c ON c.user_id = u.id AND c.key = $2
              WHERE u.id = $1",
        )
        .bind(user_id)
        .bind(KUBECONFIG)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound("no such user".into()))?;
        let username: String = row.try_get("username")?;
        let kubeconfig = match row.try_get::<Option<bool>, _>("is_secret")? {
            None => None,
            Some(true) => {
                let sealed: Vec<u8> = row.try_get("value_enc")?;
                Some(
                    self.key
                        .decrypt_string(&sealed, &config_context(user_id, KUBECONFIG))?,
                )
            }
            Some(false) => row.try_get("value")?,
        };
        Ok((username, kubeconfig))
    }

    /// How many projects the user has (a kubeconfig may only change while
    /// there are none: their resources would be stranded on the old back end).
    pub async fn count_projects(&self, user_id: Uuid) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM projects WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The user's settings, secrets decrypted, sorted by key.
    pub async fn list_user_configs(&self, user_id: Uuid) -> StoreResult<Vec<UserConfig>> {
        Ok(self
            .user_configs_of(&[user_id])
            .await?
            .remove(&user_id)
            .unwrap_or_default())
    }

    /// [`Store::list_user_configs`] of many users in one statement (a
    /// reconcile batch's sandboxes, read in one round trip). A user with no
    /// settings is missing from the map.
    pub async fn user_configs_of(
        &self,
        user_ids: &[Uuid],
    ) -> StoreResult<HashMap<Uuid, Vec<UserConfig>>> {
        if user_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT user_id, key, value, value_enc, is_secret, category, updated_at FROM user_configs
              WHERE user_id = ANY($1) ORDER BY user_id, key",
        )
        .bind(user_ids)
        .fetch_all(&self.pool)
        .await?;
        let mut configs: HashMap<Uuid, Vec<UserConfig>> = HashMap::new();
        for r in &rows {
            let user_id: Uuid = r.try_get("user_id")?;
            let key: String = r.try_get("key")?;
            let is_secret: bool = r.try_get("is_secret")?;
            let value = if is_secret {
                let sealed: Vec<u8> = r.try_get("value_enc")?;
                self.key
                    .decrypt_string(&sealed, &config_context(user_id, &key))?
            } else {
                r.try_get("value")?
            };
            configs.entry(user_id).or_default().push(UserConfig {
                key,
                value: Secret::new(value),
                is_secret,
                category: r.try_get("category")?,
                updated_at: r.try_get("updated_at")?,
            });
        }
        Ok(configs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_uppercase_posix_names() {
        for ok in ["A", "_", "ANTHROPIC_API_KEY", "K8S_1", &"A".repeat(64)] {
            assert!(check_config_key(ok).is_ok(), "{ok}");
        }
        let msg = |k: &str| check_config_key(k).unwrap_err().to_string();
        assert!(msg("").contains("empty"));
        assert!(msg("1ABC").contains("digit"));
        assert!(msg("lower").contains("uppercase"));
        assert!(msg("A-B").contains("uppercase"));
        assert!(msg("Ä").contains("uppercase"));
        assert!(msg(&"A".repeat(65)).contains("64"));
    }

    #[test]
    fn values_are_bounded_and_nul_free() {
        assert!(check_config_value("x").is_ok());
        assert!(check_config_value(&"x".repeat(MAX_CONFIG_VALUE_LEN)).is_ok());
        assert!(check_config_value("").is_err());
        assert!(check_config_value("a\0b").is_err());
        let big = check_config_value(&"x".repeat(MAX_CONFIG_VALUE_LEN + 1)).unwrap_err();
        assert!(big.to_string().contains("64 KiB"), "{big}");
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let c = UserConfig {
            key: "ANTHROPIC_API_KEY".into(),
            value: "sk-ant-hidden".into(),
            is_secret: true,
            category: "anthropic".into(),
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let shown = format!("{c:?} {:?}", vec![c.clone()]);
        assert!(
            !shown.contains("sk-ant-hidden") && shown.contains("<secret>"),
            "{shown}"
        );
        let plain = UserConfig {
            is_secret: false,
            ..c
        };
        assert!(!format!("{plain:?}").contains("sk-ant-hidden"));
    }

    #[test]
    fn known_secrets_default_to_secret() {
        assert!(default_secret("ANTHROPIC_API_KEY") && default_secret("KUBECONFIG"));
        assert!(!default_secret("ANTHROPIC_BASE_URL") && !default_secret("OTHER"));
    }
}
