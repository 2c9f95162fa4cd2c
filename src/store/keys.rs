//! SSH public keys as identities (provider `ssh_key`), and the password
//! identity as seen from a signed-in user (`set_password`, `has_password`).
//!
//! A key identity is keyed by the key's SHA256 fingerprint; `metadata` keeps
//! the key itself (`{"key", "comment", "algorithm"}`) so authentication can
//! compare the real key material, not just a hash of it.
//!
//! A key a user adds themselves is only *pending* (`pending_ssh_keys`) until
//! they sign in once with it: the SSH server has then verified a signature
//! by that key, which proves they hold it, and only then is it bound. So
//! nobody can claim someone else's public key, and the answer to adding a
//! key says nothing about who else may hold it. Keys the operator adds
//! (`kiln user add --ssh-key`, [`Store::add_ssh_key`]) are trusted at once.

use chrono::{DateTime, Utc};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::users::{User, check_password, hash_password};
use super::{Store, StoreError, StoreResult, conflict_or};

/// Longest input accepted as one public key. An RSA 16384-bit key line is
/// under 3 KiB, so anything bigger is not a key.
pub const MAX_KEY_INPUT: usize = 16 * 1024;
/// Keys per user; far above real use, low enough to bound a listing.
pub const MAX_KEYS_PER_USER: i64 = 100;

const NOT_OPENSSH: &str =
    "not an OpenSSH public key (expected a line like 'ssh-ed25519 AAAA… comment')";

/// One registered key as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshKey {
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, …
    pub algorithm: String,
    /// The comment from the key line (often `user@host`); may be empty.
    pub comment: String,
    pub created_at: DateTime<Utc>,
    /// Added but not yet used to sign in: it works from its first sign-in.
    pub pending: bool,
}

/// Parses exactly one OpenSSH public key line, with a message a user can act
/// on for the usual mistakes (pasting the private key, several keys at once).
pub fn parse_public_key(text: &str) -> StoreResult<PublicKey> {
    if text.len() > MAX_KEY_INPUT {
        return Err(StoreError::Invalid(format!(
            "the key is {} bytes; a public key line is at most {} KiB: {NOT_OPENSSH}",
            text.len(),
            MAX_KEY_INPUT / 1024
        )));
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(StoreError::Invalid(
            "no key given: send one public key line, e.g. the contents of ~/.ssh/id_ed25519.pub"
                .into(),
        ));
    }
    if text.contains("PRIVATE KEY") {
        return Err(StoreError::Invalid(
            "this is a private key: keep it secret and send the public key (the .pub file) instead"
                .into(),
        ));
    }
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    if lines > 1 || text.contains('\r') {
        return Err(StoreError::Invalid(format!(
            "expected exactly one key but got {lines} lines: add keys one at a time"
        )));
    }
    let key = PublicKey::from_openssh(text).map_err(|_| StoreError::Invalid(NOT_OPENSSH.into()))?;
    match key.algorithm() {
        // DSA is disabled in OpenSSH and in our SSH server, and an unknown
        // algorithm could never authenticate: refuse instead of storing a
        // key that silently does nothing.
        Algorithm::Dsa | Algorithm::Other(_) => Err(StoreError::Invalid(format!(
            "{} keys are not supported: use an ed25519 key (ssh-keygen -t ed25519)",
            key.algorithm().as_str()
        ))),
        _ => Ok(key),
    }
}

/// The key line without its comment: what `metadata.key` holds.
pub(crate) fn bare_openssh(key: &PublicKey) -> StoreResult<String> {
    let mut bare = key.clone();
    bare.set_comment("");
    bare.to_openssh()
        .map(|s| s.trim().to_string())
        .map_err(|_| StoreError::Invalid(NOT_OPENSSH.into()))
}

pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Serialises changes to one user's identities (so two concurrent removals
/// cannot each think the other key is still there).
async fn lock_user(conn: &mut PgConnection, user_id: Uuid) -> StoreResult<String> {
    sqlx::query_scalar("SELECT username FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound("no such user".into()))
}

/// What is kept of one public key line: its fingerprint (the identity's
/// id), algorithm and comment, and the metadata row (the bare key).
struct KeyRecord {
    fingerprint: String,
    algorithm: String,
    comment: String,
    metadata: serde_json::Value,
}

impl KeyRecord {
    fn parse(openssh_line: &str) -> StoreResult<KeyRecord> {
        let key = parse_public_key(openssh_line)?;
        let algorithm = key.algorithm().as_str().to_string();
        let comment = key.comment().as_str_lossy().to_string();
        let metadata = serde_json::json!({
            "key": bare_openssh(&key)?,
            "comment": comment,
            "algorithm": algorithm,
        });
        Ok(KeyRecord {
            fingerprint: fingerprint(&key),
            algorithm,
            comment,
            metadata,
        })
    }
}

impl Store {
    /// Registers one OpenSSH public key line for `user_id`.
    pub async fn add_ssh_key(&self, user_id: Uuid, openssh_line: &str) -> StoreResult<SshKey> {
        let KeyRecord {
            fingerprint,
            algorithm,
            comment,
            metadata,
        } = KeyRecord::parse(openssh_line)?;
        let mut tx = self.pool.begin().await?;
        lock_user(&mut tx, user_id).await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM identities WHERE user_id = $1 AND provider = 'ssh_key'",
        )
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        if count >= MAX_KEYS_PER_USER {
            return Err(StoreError::Invalid(format!(
                "you already have {count} keys, the limit: remove one you no longer use first"
            )));
        }
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO identities (user_id, provider, provider_user_id, metadata)
             VALUES ($1, 'ssh_key', $2, $3) RETURNING created_at",
        )
        .bind(user_id)
        .bind(&fingerprint)
        .bind(&metadata)
        .fetch_one(&mut *tx)
        .await
        // Whose key it is stays private: the message is the same either way.
        .map_err(|e| conflict_or(e, || "this key is already registered".into()))?;
        tx.commit().await?;
        Ok(SshKey {
            fingerprint,
            algorithm,
            comment,
            created_at,
            pending: false,
        })
    }

    /// Records a key the user wants to add as pending: it is bound at their
    /// first sign-in signed with it ([`Store::sign_in_with_key`]). A key that
    /// another user holds is answered exactly like any other pending key.
    pub async fn propose_ssh_key(&self, user_id: Uuid, openssh_line: &str) -> StoreResult<SshKey> {
        let KeyRecord {
            fingerprint,
            algorithm,
            comment,
            metadata,
        } = KeyRecord::parse(openssh_line)?;
        let mut tx = self.pool.begin().await?;
        lock_user(&mut tx, user_id).await?;
        let (active, mine, count): (i64, bool, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM identities WHERE user_id = $1 AND provider = 'ssh_key'),
                    EXISTS (SELECT 1 FROM identities WHERE user_id = $1 AND provider = 'ssh_key'
                                                       AND provider_user_id = $2),
                    (SELECT count(*) FROM pending_ssh_keys WHERE user_id = $1)",
        )
        .bind(user_id)
        .bind(&fingerprint)
        .fetch_one(&mut *tx)
        .await?;
        if mine {
            // About the user's own keys only: nothing about anyone else.
            return Err(StoreError::Conflict(
                "this key is already one of your keys".into(),
            ));
        }
        if active + count >= MAX_KEYS_PER_USER {
            return Err(StoreError::Invalid(format!(
                "you already have {} keys, the limit: remove one you no longer use first",
                active + count
            )));
        }
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO pending_ssh_keys (user_id, fingerprint, metadata) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, fingerprint) DO UPDATE SET metadata = EXCLUDED.metadata
             RETURNING created_at",
        )
        .bind(user_id)
        .bind(&fingerprint)
        .bind(&metadata)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SshKey {
            fingerprint,
            algorithm,
            comment,
            created_at,
            pending: true,
        })
    }

    /// Whether `username` may try this key (the offer before the client
    /// signs): it is theirs, or pending for them.
    pub async fn key_may_sign_in(&self, username: &str, key: &PublicKey) -> StoreResult<bool> {
        if let Some(u) = self.user_by_key(key).await? {
            return Ok(u.username.eq_ignore_ascii_case(username));
        }
        Ok(self.pending_owner(username, key).await?.is_some())
    }

    /// The user signing in as `username` with `key`, whose signature the SSH
    /// server has verified: the key's owner, or the user it was pending for,
    /// to whom it is now bound (they proved they hold it).
    pub async fn sign_in_with_key(
        &self,
        username: &str,
        key: &PublicKey,
    ) -> StoreResult<Option<User>> {
        if let Some(u) = self.user_by_key(key).await? {
            return Ok(u.username.eq_ignore_ascii_case(username).then_some(u));
        }
        let Some((user, metadata)) = self.pending_owner(username, key).await? else {
            return Ok(None);
        };
        let fp = fingerprint(key);
        let mut tx = self.pool.begin().await?;
        lock_user(&mut tx, user.id).await?;
        let bound = sqlx::query(
            "INSERT INTO identities (user_id, provider, provider_user_id, metadata)
             VALUES ($1, 'ssh_key', $2, $3) ON CONFLICT (provider, provider_user_id) DO NOTHING",
        )
        .bind(user.id)
        .bind(&fp)
        .bind(&metadata)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Bound now (or by someone else a moment ago): pending copies are moot.
        sqlx::query("DELETE FROM pending_ssh_keys WHERE fingerprint = $1")
            .bind(&fp)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((bound == 1).then_some(user))
    }

    /// The enabled user named `username` for whom `key` is pending, with
    /// the pending row's metadata; the stored key must match exactly.
    async fn pending_owner(
        &self,
        username: &str,
        key: &PublicKey,
    ) -> StoreResult<Option<(User, serde_json::Value)>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.role, u.disabled_at, u.created_at, p.metadata
               FROM pending_ssh_keys p JOIN users u ON u.id = p.user_id
              WHERE p.fingerprint = $1 AND lower(u.username) = lower($2)
                AND u.disabled_at IS NULL",
        )
        .bind(fingerprint(key))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let metadata: serde_json::Value = row.try_get("metadata")?;
        let matches = metadata
            .get("key")
            .and_then(|k| k.as_str())
            .and_then(|s| PublicKey::from_openssh(s).ok())
            .is_some_and(|s| s.key_data() == key.key_data());
        if !matches {
            return Ok(None);
        }
        let user = User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            role: row.try_get("role")?,
            disabled_at: row.try_get("disabled_at")?,
            created_at: row.try_get("created_at")?,
        };
        Ok(Some((user, metadata)))
    }

    /// The user's keys, bound and pending, oldest first.
    pub async fn list_ssh_keys(&self, user_id: Uuid) -> StoreResult<Vec<SshKey>> {
        let rows = sqlx::query(
            "SELECT provider_user_id, coalesce(metadata ->> 'algorithm', '') AS algorithm,
                    coalesce(metadata ->> 'comment', '') AS comment, created_at, false AS pending
               FROM identities WHERE user_id = $1 AND provider = 'ssh_key'
             UNION ALL
             SELECT fingerprint, coalesce(metadata ->> 'algorithm', ''),
                    coalesce(metadata ->> 'comment', ''), created_at, true
               FROM pending_ssh_keys WHERE user_id = $1
              ORDER BY created_at, provider_user_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SshKey {
                    fingerprint: r.try_get("provider_user_id")?,
                    algorithm: r.try_get("algorithm")?,
                    comment: r.try_get("comment")?,
                    created_at: r.try_get("created_at")?,
                    pending: r.try_get("pending")?,
                })
            })
            .collect()
    }

    /// Removes one of the user's own keys by fingerprint (`SHA256:` optional).
    /// Refuses to remove the user's last way in.
    pub async fn remove_ssh_key(&self, user_id: Uuid, fingerprint: &str) -> StoreResult<()> {
        let fp = fingerprint.trim();
        let fp = if fp.starts_with("SHA256:") {
            fp.to_string()
        } else {
            format!("SHA256:{fp}")
        };
        let mut tx = self.pool.begin().await?;
        lock_user(&mut tx, user_id).await?;
        let pending =
            sqlx::query("DELETE FROM pending_ssh_keys WHERE user_id = $1 AND fingerprint = $2")
                .bind(user_id)
                .bind(&fp)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if pending > 0 {
            tx.commit().await?;
            return Ok(());
        }
        let id: Uuid = sqlx::query_scalar(
            "SELECT id FROM identities
              WHERE user_id = $1 AND provider = 'ssh_key' AND provider_user_id = $2",
        )
        .bind(user_id)
        .bind(&fp)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "no such key: {}; 'keys list' shows your keys' fingerprints",
                crate::model::naming::printable(fingerprint, 60)
            ))
        })?;
        // A password identity without a secret cannot log anyone in.
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM identities
              WHERE user_id = $1 AND id <> $2 AND (provider <> 'password' OR secret IS NOT NULL)",
        )
        .bind(user_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if others == 0 {
            return Err(StoreError::Conflict(
                "this is your only way to log in: add another key or set a password first".into(),
            ));
        }
        sqlx::query("DELETE FROM identities WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The enabled user this key belongs to, for public-key authentication.
    /// The fingerprint finds the row; the stored key material must then match
    /// the presented key exactly.
    pub async fn user_by_key(&self, key: &PublicKey) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.role, u.disabled_at, u.created_at,
                    i.metadata ->> 'key' AS key
               FROM identities i JOIN users u ON u.id = i.user_id
              WHERE i.provider = 'ssh_key' AND i.provider_user_id = $1
                AND u.disabled_at IS NULL",
        )
        .bind(fingerprint(key))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: Option<String> = row.try_get("key")?;
        let matches = stored
            .and_then(|s| PublicKey::from_openssh(&s).ok())
            .is_some_and(|s| s.key_data() == key.key_data());
        if !matches {
            tracing::warn!("an ssh_key identity's stored key does not match its fingerprint");
            return Ok(None);
        }
        Ok(Some(User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            role: row.try_get("role")?,
            disabled_at: row.try_get("disabled_at")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// Whether the user can log in with a password.
    pub async fn has_password(&self, user_id: Uuid) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM identities
                             WHERE user_id = $1 AND provider = 'password' AND secret IS NOT NULL)",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Sets or replaces the user's password.
    pub async fn set_password(&self, user_id: Uuid, new: &str) -> StoreResult<()> {
        check_password(new)?;
        let hash = hash_password(new).await?;
        let mut tx = self.pool.begin().await?;
        let username = lock_user(&mut tx, user_id).await?;
        let updated = sqlx::query(
            "UPDATE identities SET secret = $2 WHERE user_id = $1 AND provider = 'password'",
        )
        .bind(user_id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO identities (user_id, provider, provider_user_id, secret, is_primary)
                 VALUES ($1, 'password', $2, $3, true)",
            )
            .bind(user_id)
            .bind(&username)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                conflict_or(e, || {
                    "another account holds a password identity for this username".into()
                })
            })?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com";

    #[test]
    fn one_key_line_parses_and_keeps_its_comment() {
        let k = parse_public_key(&format!("  {ED25519}\n")).unwrap();
        assert_eq!(k.comment().as_str_lossy(), "foo@bar.com");
        assert_eq!(k.algorithm(), Algorithm::Ed25519);
        let bare = bare_openssh(&k).unwrap();
        assert!(bare.starts_with("ssh-ed25519 AAAA") && !bare.contains("foo@bar.com"));
        assert!(fingerprint(&k).starts_with("SHA256:"));
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let msg = |s: &str| parse_public_key(s).unwrap_err().to_string();
        assert!(msg("").contains("no key given"));
        assert!(msg("hello world").contains("not an OpenSSH public key"));
        assert!(msg("ssh-ed25519 AAAA!!!").contains("not an OpenSSH public key"));
        assert!(
            msg("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----")
                .contains("private key")
        );
        assert!(msg(&format!("{ED25519}\n{ED25519}")).contains("exactly one key"));
        assert!(msg(&"x".repeat(MAX_KEY_INPUT + 1)).contains("16 KiB"));
    }
}
