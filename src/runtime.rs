//! Opening Kiln's database the way every subcommand does: `DATABASE_URL`
//! when set, otherwise the embedded cluster in the data dir (started on
//! demand, stopped again by whoever started it).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;
use crate::embedded_pg::EmbeddedPostgres;
use crate::store::{SecretKey, Store};

pub struct Database {
    pub store: Store,
    /// Where tenant databases are created (the local driver's admin connection).
    pub admin_url: String,
    /// Where sandboxes reach tenant databases, when that is the embedded
    /// cluster's tenant socket rather than `admin_url`'s host.
    pub tenant_socket_dir: Option<PathBuf>,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    pub async fn open(config: &Config, max_connections: u32) -> anyhow::Result<Database> {
        ensure_data_dir(&config.data_dir)?;
        let key = load_key(config)?;
        let (url, admin_url, embedded) = match &config.database_url {
            Some(url) => (url.clone(), url.clone(), None),
            None => {
                let pg = EmbeddedPostgres::start(&config.data_dir)
                    .await
                    .context("starting the embedded PostgreSQL cluster (set DATABASE_URL to use your own server)")?;
                (pg.database_url(), pg.admin_url(), Some(pg))
            }
        };
        let tenant_socket_dir = match (&embedded, &config.local.admin_database_url) {
            (Some(pg), None) => Some(pg.tenant_socket_dir().to_path_buf()),
            _ => None,
        };
        let admin_url = config.local.admin_database_url.clone().unwrap_or(admin_url);
        let ready = async {
            let store = Store::connect(&url, key, max_connections)
                .await
                .with_context(|| format!("connecting to {}", redact_url(&url)))?;
            store.migrate().await.context("preparing the database")?;
            anyhow::Ok(store)
        };
        match ready.await {
            Ok(store) => Ok(Database {
                store,
                admin_url,
                tenant_socket_dir,
                embedded,
            }),
            Err(e) => {
                // A cluster this process started must not outlive the
                // refusal (a wrong key, say): a later run would reuse it.
                if let Some(pg) = embedded
                    && let Err(stop) = pg.stop().await
                {
                    tracing::warn!("stopping the embedded cluster after a failed start: {stop}");
                }
                Err(e)
            }
        }
    }

    /// Closes the pool and stops the embedded cluster if this process started it.
    pub async fn close(self) -> anyhow::Result<()> {
        self.store.pool().close().await;
        if let Some(pg) = self.embedded {
            pg.stop()
                .await
                .context("stopping the embedded PostgreSQL cluster")?;
        }
        Ok(())
    }
}

fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

fn load_key(config: &Config) -> anyhow::Result<SecretKey> {
    match &config.secret_key {
        Some(hex) => SecretKey::from_hex(hex).context("KILN_SECRET_KEY / secret_key"),
        None => {
            let path = config.data_dir.join("secret.key");
            SecretKey::load_or_create(&path).map_err(Into::into)
        }
    }
}

/// The same server URL with another database (keeps credentials and options).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A URL fit for a log line: the password is replaced.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let creds = &rest[..at];
    match creds.split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn with_database_replaces_only_the_database() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(
            with_database("postgres://kiln@localhost/kiln?host=/s", "x"),
            "postgres://kiln@localhost/x?host=/s"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
