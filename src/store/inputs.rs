//! What a sandbox is given from the store: its project's variables with the
//! secrets decrypted, and the way to its database.

use std::collections::{BTreeSet, HashMap};

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::env::env_context;
use super::kind::ResourceKind;
use super::{Store, StoreError, StoreResult};
use crate::model::db_credentials::DbCredentials;

/// What [`Store::sandbox_inputs`] returns.
#[derive(Debug, Clone)]
pub struct SandboxInputs {
    pub env_version: i64,
    pub env: Vec<(String, String)>,
    /// The keys of `env` marked secret.
    pub secret_keys: BTreeSet<String>,
    /// The project's database: resource name, namespace, sealed password.
    pub database: Option<(String, String, Vec<u8>)>,
    /// The repository the sandbox starts from, and its branch.
    pub git_repo: Option<String>,
    pub git_branch: Option<String>,
    /// What its default session runs, and its one-time setup script.
    pub session_command: Option<String>,
    pub setup_script: Option<String>,
    /// Its image and sizes on Kubernetes (`None` fields: the server's).
    pub sizing: crate::model::template::K8sSizing,
}

impl Store {
    /// Everything a sandbox spec needs, read in one statement (one snapshot):
    /// the project's env version, its variables (secrets decrypted, sorted by
    /// key) and its database's name, namespace and sealed password.
    pub async fn sandbox_inputs(&self, project_id: Uuid) -> StoreResult<SandboxInputs> {
        self.sandbox_inputs_of(&[project_id])
            .await?
            .remove(&project_id)
            .ok_or_else(|| StoreError::NotFound("the project is gone".into()))
    }

    /// [`Store::sandbox_inputs`] of many projects in one statement, so a
    /// reconcile batch reads them in one round trip rather than one per
    /// sandbox. A project that is gone is missing from the map.
    pub async fn sandbox_inputs_of(
        &self,
        project_ids: &[Uuid],
    ) -> StoreResult<HashMap<Uuid, SandboxInputs>> {
        if project_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT p.id, p.env_version, p.git_repo, p.git_branch, p.session_command, p.setup_script,
                    p.k8s_image, p.k8s_cpu, p.k8s_memory,
                    coalesce(e.keys, '{}') AS keys, coalesce(e.plain, '{}') AS plain,
                    coalesce(e.sealed, '{}') AS sealed, coalesce(e.secret, '{}') AS secret,
                    d.resource_name AS db_name, d.namespace AS db_namespace, d.password_enc
               FROM projects p
               LEFT JOIN LATERAL (SELECT array_agg(key ORDER BY key) AS keys,
                                         array_agg(coalesce(value, '') ORDER BY key) AS plain,
                                         array_agg(coalesce(value_enc, '') ORDER BY key) AS sealed,
                                         array_agg(is_secret ORDER BY key) AS secret
                                    FROM environments WHERE project_id = p.id) e ON true
               LEFT JOIN LATERAL (SELECT resource_name, namespace, password_enc FROM databases
                                   WHERE project_id = p.id AND desired <> 'TERMINATED'
                                   ORDER BY created_at LIMIT 1) d ON true
              WHERE p.id = ANY($1)",
        )
        .bind(project_ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: Uuid = row.try_get("id")?;
                Ok((id, self.inputs_of_row(id, row)?))
            })
            .collect()
    }

    fn inputs_of_row(&self, project_id: Uuid, row: &PgRow) -> StoreResult<SandboxInputs> {
        let keys: Vec<String> = row.try_get("keys")?;
        let plain: Vec<String> = row.try_get("plain")?;
        let sealed: Vec<Vec<u8>> = row.try_get("sealed")?;
        let secret: Vec<bool> = row.try_get("secret")?;
        let mut env = Vec::with_capacity(keys.len());
        let mut secret_keys = BTreeSet::new();
        for (i, key) in keys.into_iter().enumerate() {
            let value = if secret[i] {
                secret_keys.insert(key.clone());
                self.key
                    .decrypt_string(&sealed[i], &env_context(project_id, &key))?
            } else {
                plain[i].clone()
            };
            env.push((key, value));
        }
        let db_name: Option<String> = row.try_get("db_name")?;
        let database = match db_name {
            Some(name) => Some((
                name,
                row.try_get::<String, _>("db_namespace")?,
                row.try_get::<Vec<u8>, _>("password_enc")?,
            )),
            None => None,
        };
        Ok(SandboxInputs {
            env_version: row.try_get("env_version")?,
            env,
            secret_keys,
            database,
            git_repo: row.try_get("git_repo")?,
            git_branch: row.try_get("git_branch")?,
            session_command: row.try_get("session_command")?,
            setup_script: row.try_get("setup_script")?,
            sizing: crate::model::template::K8sSizing {
                image: row.try_get("k8s_image")?,
                cpu: row.try_get("k8s_cpu")?,
                memory: row.try_get("k8s_memory")?,
            },
        })
    }

    /// The connection string of one of the user's project databases, with its
    /// password, once the driver has reported where it lives.
    pub async fn database_url(
        &self,
        user_id: Uuid,
        project_id: Uuid,
    ) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT resource_name, db_host, db_port, db_name, db_user, password_enc FROM databases
              WHERE user_id = $1 AND project_id = $2 AND db_host IS NOT NULL
              ORDER BY created_at LIMIT 1",
        )
        .bind(user_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let name: String = r.try_get("resource_name")?;
        let sealed: Vec<u8> = r.try_get("password_enc")?;
        let password = self
            .key
            .decrypt_string(&sealed, &ResourceKind::Database.password_context(&name))?;
        let port: i32 = r.try_get("db_port")?;
        Ok(Some(
            DbCredentials {
                host: r.try_get("db_host")?,
                port: u16::try_from(port).unwrap_or(5432),
                database: r.try_get("db_name")?,
                user: r.try_get("db_user")?,
                password: password.into(),
            }
            .url(),
        ))
    }
}
