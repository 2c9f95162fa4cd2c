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
            // Sandboxes on the server's cluster request CPU and memory, which
            // the owners' quotas count; the local driver's request nothing.
            let store = match config.server_cluster {
                // Creates claim pooled resources: the local driver keeps the pools.
                crate::config::ServerCluster::None => store
                    .with_pool_claims(config.pool.databases > 0)
                    .with_sandbox_pool_claims(config.pool.sandboxes > 0),
                // The cluster's pools: a claimed database keeps its name.
                _ => store
                    .with_sandbox_size(config.kubernetes.sandbox_size())
                    .with_pool_claims(config.kubernetes.pool_databases > 0)
                    .with_database_claims_keeping_names(true)
                    .with_sandbox_pool_claims(config.kubernetes.pool_sandboxes > 0),
            };
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

/// Creates the data directory (0700) or makes an existing one private:
/// whatever the umask or the mode it had, nobody else may list it or write
/// to it. Kiln running as root keeps search permission (x) for group and
/// others if present, which the local driver and the embedded cluster give
/// their own users so they can reach their one directory inside.
fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("inspecting the data directory {}", dir.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let private = private_dir_mode(mode, nix::unistd::geteuid().is_root());
    if private != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(private)).with_context(
            || {
                format!(
                    "making the data directory {} private (chmod {private:o})",
                    dir.display()
                )
            },
        )?;
    }
    Ok(())
}

/// The data directory's mode given its current one: all of it for Kiln's
/// user, nothing for anyone else but search permission as root (see
/// `ensure_data_dir`).
fn private_dir_mode(mode: u32, root: bool) -> u32 {
    let search = if root { mode & 0o011 } else { 0 };
    0o700 | search
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
    fn the_data_directory_is_private_whatever_mode_it_had() {
        use super::private_dir_mode;
        for (had, root, want) in [
            (0o755, false, 0o700),
            (0o777, false, 0o700),
            (0o700, false, 0o700),
            (0o2775, false, 0o700),
            // As root, search permission stays for the sandbox and cluster users.
            (0o755, true, 0o711),
            (0o710, true, 0o710),
            (0o776, true, 0o710),
            (0o764, true, 0o700),
        ] {
            assert_eq!(private_dir_mode(had, root), want, "{had:o} root={root}");
        }
    }

    #[test]
    fn a_pre_existing_open_data_directory_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("kiln-dd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        super::ensure_data_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(mode & 0o700, 0o700, "{mode:o}");
        assert_eq!(mode & 0o066, 0, "{mode:o}");
    }

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
