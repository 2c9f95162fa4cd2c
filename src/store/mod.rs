//! Everything Kiln keeps in Postgres. All SQL lives under this module; each
//! function is one statement or one transaction, named for what it does.

pub mod activity;
pub mod admin;
pub mod agents;
pub mod audit;
pub mod crypto;
pub mod env;
pub mod events;
pub mod idle;
pub mod inputs;
pub mod keys;
pub mod kind;
pub mod notifications;
pub mod notify;
pub mod outcomes;
pub mod pool;
pub(crate) mod project_lock;
pub mod projects;
pub mod queue;
pub mod quotas;
pub mod resources;
pub mod signin_limits;
pub mod signup_limits;
pub mod status;
pub mod teams;
pub mod templates;
pub mod user_configs;
pub mod users;
pub mod webhooks;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use crypto::{CryptoError, SecretKey};
pub use kind::ResourceKind;

use crate::model::env::EnvError;
use crate::model::intent::IntentRefused;
use crate::model::naming::NameError;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Refused(#[from] IntentRefused),
    #[error(transparent)]
    Quota(#[from] crate::model::quota::QuotaExceeded),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// The database could not be reached, or went away mid-query (it is
    /// restarting, the network dropped, the pool found no live connection
    /// in time): a state to report and retry, not a fault of the request.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Db(e) => db_unreachable(e),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => db_unreachable(e),
            _ => false,
        }
    }
}

fn db_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // A connection cut mid-handshake (or something else answering on
        // the port): nothing a request could have caused.
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // 08: connection exceptions; 57P01-03: the server is shutting
        // down or starting up.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// A handle to Kiln's database: a connection pool plus the key for secrets.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    key: SecretKey,
    /// What one sandbox requests on the server's cluster, when sandboxes
    /// run there: the CPU and memory quotas count it (`None`: not counted).
    sandbox_size: Option<crate::model::quota::SandboxSize>,
    /// Whether a create claims a pooled database (the local driver keeps a
    /// pool: see `store::pool`).
    pool_claims: bool,
    /// Whether a create claims a pooled sandbox (the local driver keeps a
    /// pool of them: see `store::pool`).
    sandbox_pool_claims: bool,
    /// Whether a claimed pooled database keeps its pooled name (a cluster's
    /// pool: a KubeBlocks cluster cannot be renamed) rather than being
    /// renamed to the project's on its first start (the local driver's).
    database_claims_keep_name: bool,
}

impl Store {
    /// Connects without migrating (see [`Store::migrate`]).
    pub async fn connect(url: &str, key: SecretKey, max_connections: u32) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.application_name("kiln"))
            .await?;
        Ok(Self {
            pool,
            key,
            sandbox_size: None,
            pool_claims: false,
            sandbox_pool_claims: false,
            database_claims_keep_name: false,
        })
    }

    pub fn from_pool(pool: PgPool, key: SecretKey) -> Self {
        Self {
            pool,
            key,
            sandbox_size: None,
            pool_claims: false,
            sandbox_pool_claims: false,
            database_claims_keep_name: false,
        }
    }

    /// The same store, counting `size` per running sandbox against the
    /// owners' CPU and memory quotas (sandboxes run on Kubernetes).
    pub fn with_sandbox_size(mut self, size: crate::model::quota::SandboxSize) -> Self {
        self.sandbox_size = Some(size);
        self
    }

    /// The same store, with creates claiming pooled databases (when the
    /// pool has one ready and the owner's resources are local).
    pub fn with_pool_claims(mut self, on: bool) -> Self {
        self.pool_claims = on;
        self
    }

    /// The same store, whose database claims keep the pooled name (see
    /// `store::pool::claim_keeping_name`).
    pub fn with_database_claims_keeping_names(mut self, on: bool) -> Self {
        self.database_claims_keep_name = on;
        self
    }

    /// The same store, with creates claiming pooled sandboxes (when the
    /// pool has one ready and the owner's resources are local).
    pub fn with_sandbox_pool_claims(mut self, on: bool) -> Self {
        self.sandbox_pool_claims = on;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// Applies pending migrations, then checks that the configured key is the
    /// one this database's secrets were written with.
    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        self.verify_key().await
    }

    /// The first start records a sealed marker; every later start must open
    /// it, so a changed key stops Kiln at once instead of failing on the first
    /// secret a user happens to read.
    pub async fn verify_key(&self) -> StoreResult<()> {
        const CONTEXT: &str = "kiln_meta:key_check";
        let sealed = self.key.encrypt(b"kiln", CONTEXT);
        sqlx::query(
            "INSERT INTO kiln_meta (key, value) VALUES ('key_check', $1) ON CONFLICT DO NOTHING",
        )
        .bind(&sealed)
        .execute(&self.pool)
        .await?;
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM kiln_meta WHERE key = 'key_check'")
                .fetch_one(&self.pool)
                .await?;
        self.key.decrypt(&stored, CONTEXT)?;
        Ok(())
    }
}

/// Decodes a text column into one of the model's enums.
pub(crate) fn parse<T: std::str::FromStr>(text: String) -> Result<T, sqlx::Error>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.parse()
        .map_err(|e: T::Err| sqlx::Error::Decode(Box::new(e)))
}

/// Maps a unique-constraint violation to a message a user can act on.
pub(crate) fn conflict_or(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            StoreError::Conflict(message())
        }
        _ => StoreError::Db(err),
    }
}
