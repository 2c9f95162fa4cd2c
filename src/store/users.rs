//! Users and their ways in (identities).

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, conflict_or};

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub role: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Lowercases and validates a username: `[a-z_][a-z0-9_.-]{0,31}`, the shape
/// of a Unix login, so it is safe in a namespace, a path and a terminal.
pub fn normalize_username(name: &str) -> StoreResult<String> {
    let lower = name.trim().to_ascii_lowercase();
    let mut bytes = lower.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if lower.is_empty() || lower.len() > 32 || !first_ok || !rest_ok {
        return Err(StoreError::Invalid(format!(
            "{:?} is not a valid username: use 1-32 characters a-z, 0-9, _ . -, starting with a letter or _",
            name.chars().take(40).collect::<String>()
        )));
    }
    Ok(lower)
}

/// Names a new account may not take: system accounts, database and service
/// names, and titles that would let an account pass for the operator.
/// Only account creation checks this, so an account that got such a name
/// before the rule existed can still sign in.
pub const RESERVED_USERNAMES: &[&str] = &[
    "root",
    "admin",
    "administrator",
    "adm",
    "kiln",
    "postgres",
    "system",
    "daemon",
    "nobody",
    "nogroup",
    "operator",
    "www-data",
    "bin",
    "sys",
    "sync",
    "mail",
    "sshd",
    "superuser",
    "support",
    "security",
    "staff",
    "sudo",
    "wheel",
    "localhost",
];

/// Normalises a username for a new account and refuses a reserved one.
pub fn check_new_username(name: &str) -> StoreResult<String> {
    let username = normalize_username(name)?;
    if RESERVED_USERNAMES.contains(&username.as_str()) {
        return Err(StoreError::Invalid(format!(
            "the username {username} is reserved; choose another"
        )));
    }
    Ok(username)
}

pub fn check_password(password: &str) -> StoreResult<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(StoreError::Invalid(format!(
            "the password is too short: use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(StoreError::Invalid(format!(
            "the password is too long: at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// argon2id with the crate's defaults; slow on purpose, so off the async runtime.
pub async fn hash_password(password: &str) -> StoreResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Invalid(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| StoreError::Invalid(format!("password hashing task failed: {e}")))?
}

/// Checks a password against a PHC string; a malformed hash is a mismatch.
pub async fn verify_password(password: &str, phc: &str) -> bool {
    let (password, phc) = (password.to_owned(), phc.to_owned());
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
        PasswordHash::new(&phc)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

fn user_from_row(row: &sqlx::postgres::PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: row.try_get("role")?,
        disabled_at: row.try_get("disabled_at")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a user, with a password identity when a password is given.
    pub async fn create_user(
        &self,
        username: &str,
        password: Option<&str>,
        admin: bool,
    ) -> StoreResult<User> {
        let username = normalize_username(username)?;
        let hash = match password {
            Some(p) => {
                check_password(p)?;
                Some(hash_password(p).await?)
            }
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO users (username, role) VALUES ($1, $2)
             RETURNING id, username, role, disabled_at, created_at",
        )
        .bind(&username)
        .bind(if admin { "admin" } else { "member" })
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, || format!("a user named {username} already exists")))?;
        let user = user_from_row(&row)?;
        if let Some(hash) = hash {
            sqlx::query(
                "INSERT INTO identities (user_id, provider, provider_user_id, secret, is_primary)
                 VALUES ($1, 'password', $2, $3, true)",
            )
            .bind(user.id)
            .bind(&username)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(
            "SELECT id, username, role, disabled_at, created_at FROM users WHERE role <> 'team' ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn find_user(&self, username: &str) -> StoreResult<Option<User>> {
        let Ok(username) = normalize_username(username) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT id, username, role, disabled_at, created_at FROM users WHERE lower(username) = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Finds an enabled user or says why not, for operator commands.
    pub async fn require_user(&self, username: &str) -> StoreResult<User> {
        match self.find_user(username).await? {
            Some(u) if u.disabled_at.is_none() => Ok(u),
            Some(_) => Err(StoreError::Invalid(format!("user {username} is disabled"))),
            None => Err(StoreError::NotFound(format!("no such user: {username}"))),
        }
    }

    /// Removes a user outright (only used to undo a half-finished `user add`).
    pub async fn delete_user(&self, user_id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn disable_user(&self, username: &str) -> StoreResult<()> {
        let username = normalize_username(username)?;
        let done = sqlx::query(
            "UPDATE users SET disabled_at = coalesce(disabled_at, now()) WHERE lower(username) = $1",
        )
        .bind(&username)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no such user: {username}")));
        }
        Ok(())
    }

    /// The user's password hash, if the user exists, is enabled and has one.
    pub async fn password_hash(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let Ok(username) = normalize_username(username) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT u.id, u.username, u.role, u.disabled_at, u.created_at, i.secret
             FROM users u JOIN identities i ON i.user_id = u.id AND i.provider = 'password'
             WHERE lower(u.username) = $1 AND u.disabled_at IS NULL",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                let secret: Option<String> = r.try_get("secret")?;
                Ok(secret
                    .map(|s| user_from_row(&r).map(|u| (u, s)))
                    .transpose()?)
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(normalize_username(" Alice ").unwrap(), "alice");
        // Reserved names stay valid names, so existing accounts still sign in.
        assert_eq!(normalize_username("Root").unwrap(), "root");
        assert_eq!(normalize_username("bob.smith-2").unwrap(), "bob.smith-2");
        for bad in ["", "1abc", "a b", "ünï", "a/b", &"a".repeat(33), "x\x1b[0m"] {
            assert!(normalize_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserved_usernames_are_refused_for_new_accounts() {
        for name in [
            "root",
            " Admin",
            "ADMINISTRATOR",
            "kiln",
            "postgres",
            "system",
            "www-data",
        ] {
            let e = check_new_username(name).unwrap_err().to_string();
            assert!(e.contains("reserved"), "{name:?}: {e}");
        }
        assert_eq!(check_new_username(" Alice ").unwrap(), "alice");
        assert_eq!(check_new_username("rooted").unwrap(), "rooted");
        assert!(check_new_username("a b").is_err());
    }

    #[tokio::test]
    async fn password_hashes_are_argon2id_and_verify() {
        let h = hash_password("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h).await);
        assert!(!verify_password("wrong horse", &h).await);
        assert!(!verify_password("x", "not a hash").await);
    }
}
