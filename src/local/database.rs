//! Local databases: a database and a login role, both named after the
//! resource, on a Postgres server Kiln reaches through an admin connection.
//!
//! Role passwords reach the server only as SCRAM-SHA-256 verifiers computed
//! here ([`crate::model::scram`]), so no statement (nor a server log of it)
//! holds one in plain text; and a role's password is set only when the
//! stored verifier does not match, so an unchanged database costs one
//! look-up and no catalog write.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Row, SqlSafeStr};

use super::validate_resource_name;
use crate::driver::{
    DatabaseDriver, DatabaseSpec, DbCredentials, DriverError, DriverResult, Observed, ResourceRef,
};
use crate::model::scram;

/// Databases on one Postgres server.
#[derive(Debug, Clone)]
pub struct LocalDatabases {
    pool: PgPool,
    /// How sandboxes reach the server: a host name or a socket directory.
    host: String,
    port: u16,
    /// Whether the admin role may read `pg_authid` (superusers only), where
    /// the stored verifiers are; otherwise every ensure sets the password.
    reads_verifiers: bool,
}

impl LocalDatabases {
    /// Connects to the server as an administrator (a role with CREATEROLE and
    /// CREATEDB, and the right to end other roles' backends).
    pub async fn connect(admin_url: &str) -> Result<Self, DriverError> {
        let options = PgConnectOptions::from_str(admin_url)
            .map_err(|e| {
                DriverError::permanent(format!("invalid Postgres admin URL: {}", without_url(&e)))
            })?
            // Statements carry role passwords: keep them out of the logs.
            .disable_statement_logging();
        let host = match options.get_socket() {
            Some(dir) => dir.to_string_lossy().into_owned(),
            None => options.get_host().to_owned(),
        };
        let port = options.get_port();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| classify(&e, "connect to the Postgres admin URL"))?;
        let reads_verifiers: bool =
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                .fetch_one(&pool)
                .await
                .map_err(|e| classify(&e, "look up the admin role"))?;
        Ok(Self {
            pool,
            host,
            port,
            reads_verifiers,
        })
    }

    /// Hands sandboxes this socket directory instead of the admin URL's
    /// host: the embedded cluster's tenant socket
    /// ([`crate::embedded_pg::EmbeddedPostgres::tenant_socket_dir`]), the
    /// only one a confined sandbox can reach.
    pub fn with_sandbox_socket_dir(mut self, dir: &Path) -> Self {
        self.host = dir.to_string_lossy().into_owned();
        self
    }

    /// The admin pool, for callers that need to inspect the server.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs one DDL statement through the simple protocol: DDL takes no bind
    /// parameters, and a prepared statement would keep the SQL (with a
    /// password in it) in every connection's statement cache.
    ///
    /// Two sessions altering the same catalog row at once make one fail with
    /// "tuple concurrently updated"; that is a race with another replica,
    /// not a fault, so it is retried here a few times.
    async fn ddl(&self, sql: String) -> Result<(), sqlx::Error> {
        let sql = AssertSqlSafe(sql).into_sql_str();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match sqlx::raw_sql(sql.clone()).execute(&self.pool).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 4 && is_concurrent_update(&e) => {
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends every backend on the database (other than ours).
    async fn terminate_backends(&self, name: &str) -> DriverResult<()> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| classify(&e, &format!("database {name}: end connections")))
    }

    /// What is already there, so `ensure` only changes what differs: fewer
    /// statements, and fewer catalog updates racing another replica's.
    async fn current_state(&self, name: &str) -> DriverResult<CurrentState> {
        // pg_authid (with the verifier) is for superusers; pg_roles shows
        // everyone the same rows with the password masked.
        let (roles, password) = if self.reads_verifiers {
            ("pg_authid", "r.rolpassword")
        } else {
            ("pg_roles", "NULL::text")
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT r.oid IS NOT NULL, \
                    coalesce(r.rolcanlogin, false), \
                    {password}, \
                    d.oid IS NOT NULL, \
                    coalesce(d.datallowconn, false), \
                    coalesce(d.datdba = r.oid, false), \
                    coalesce(EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, \
                        acldefault('d', d.datdba))) a \
                        WHERE a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY')), \
                        true) \
             FROM (SELECT 1) AS one \
             LEFT JOIN {roles} r ON r.rolname = $1 \
             LEFT JOIN pg_database d ON d.datname = $1"
        )))
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| classify(&e, &format!("database {name}: look up")))?;
        Ok(CurrentState {
            role_exists: row.get(0),
            can_login: row.get(1),
            verifier: row.get(2),
            db_exists: row.get(3),
            allows_connections: row.get(4),
            owned_by_role: row.get(5),
            public_can_connect: row.get(6),
        })
    }
}

impl LocalDatabases {
    /// Whether `pooled` is whole and unused and `name` is not there yet:
    /// the database exists, accepts connections, is owned by its pooled
    /// role (which exists), and nobody is connected to it.
    async fn adoptable(&self, pooled: &str, name: &str) -> DriverResult<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
                             WHERE d.datname = $1 AND r.rolname = $1 AND d.datallowconn)
                AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = $1)
                AND NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = $2)",
        )
        .bind(pooled)
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| classify(&e, &format!("database {name}: look up pooled {pooled}")))
    }

    /// The whole adoption of a pooled database in one transaction (one
    /// round trip, one commit): check it is whole, rename it, make the
    /// project's role with its password, hand it the database, shut
    /// `PUBLIC` out, drop the pooled role. Any step failing undoes them all
    /// (`false`): the pool's state is then unknown and [`Self::adopt`] takes
    /// the step-by-step path, which converges whatever is there.
    ///
    /// Several statements in one simple-protocol message run as one
    /// transaction; none of them may take a bind parameter, and the
    /// password goes in as a SCRAM verifier only.
    async fn adopt_at_once(&self, pooled: &str, name: &str, password: &str) -> bool {
        let (from, to) = (quote_ident(pooled), quote_ident(name));
        // Validated names ([a-z0-9-]) are safe in a literal as they are.
        let sql = format!(
            "DO $kiln$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
                               WHERE d.datname = '{pooled}' AND r.rolname = '{pooled}'
                                 AND d.datallowconn) THEN
                 RAISE EXCEPTION 'pooled database {pooled} is not whole';
               END IF;
             END $kiln$;
             ALTER DATABASE {from} RENAME TO {to};
             CREATE ROLE {to} LOGIN PASSWORD '{verifier}';
             ALTER DATABASE {to} OWNER TO {to};
             REVOKE CONNECT, TEMPORARY ON DATABASE {to} FROM PUBLIC;
             DROP ROLE {from};",
            verifier = scram::new_verifier(password),
        );
        match sqlx::raw_sql(AssertSqlSafe(sql).into_sql_str())
            .execute(&self.pool)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(database = %name, pooled, "adoption in one step failed: {e}");
                false
            }
        }
    }

    /// The pooled role must never log in again: dropped, or (should it
    /// still own something) stripped of its login and password.
    async fn retire_pooled_role(&self, pooled: &str) -> DriverResult<()> {
        let ident = quote_ident(pooled);
        match self.ddl(format!("DROP ROLE IF EXISTS {ident}")).await {
            Ok(()) => Ok(()),
            // dependent_objects_still_exist
            Err(e) if sqlstate(&e).as_deref() == Some("2BP01") => self
                .ddl(format!("ALTER ROLE {ident} WITH NOLOGIN PASSWORD NULL"))
                .await
                .map_err(|e| classify(&e, &format!("pooled role {pooled}: disable login"))),
            Err(e) => Err(classify(&e, &format!("pooled role {pooled}: drop"))),
        }
    }
}

struct CurrentState {
    role_exists: bool,
    can_login: bool,
    /// The role's stored password (`None` if unset or unreadable).
    verifier: Option<String>,
    db_exists: bool,
    allows_connections: bool,
    /// The database is owned by the role of the same name (one adopted
    /// from the pool is owned by its pooled role until this is set).
    owned_by_role: bool,
    /// `PUBLIC` (every role) still holds CONNECT or TEMPORARY.
    public_can_connect: bool,
}

impl CurrentState {
    /// Whether the existing role needs `ALTER ROLE … LOGIN PASSWORD`.
    fn role_needs_update(&self, password: &str) -> bool {
        !self.can_login
            || !self
                .verifier
                .as_deref()
                .is_some_and(|v| scram::verifies(v, password))
    }
}

#[async_trait]
impl DatabaseDriver for LocalDatabases {
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let name = &spec.resource.resource_name;
        validate_resource_name(name)?;
        validate_password(name, spec.password.expose_str())?;
        let ident = quote_ident(name);
        let password = spec.password.expose_str();
        // Base64, digits, `$` and `:`: nothing to escape in a literal.
        let verifier = || scram::new_verifier(password);
        let fail = |doing: &str| {
            let doing = format!("database {name}: {doing}");
            move |e: sqlx::Error| classify(&e, &doing)
        };
        let state = self.current_state(name).await?;

        // Another replica may create either one between our look-up and our
        // CREATE; its "already exists" is our success.
        let needs_update = if state.role_exists {
            state.role_needs_update(password)
        } else {
            let created = self
                .ddl(format!(
                    "CREATE ROLE {ident} LOGIN PASSWORD '{}'",
                    verifier()
                ))
                .await;
            // A racing replica's role: its state is unknown, converge it.
            tolerate_duplicate(created).map_err(fail("create role"))?
        };
        if needs_update {
            // A changed password, a role someone made NOLOGIN, or one whose
            // verifier this admin cannot read.
            self.ddl(format!(
                "ALTER ROLE {ident} WITH LOGIN PASSWORD '{}'",
                verifier()
            ))
            .await
            .map_err(fail("set role password"))?;
        }
        let (mut allows_connections, mut public_can_connect) =
            (state.allows_connections, state.public_can_connect);
        if !state.db_exists {
            let created = self
                .ddl(format!("CREATE DATABASE {ident} OWNER {ident}"))
                .await;
            let raced = tolerate_duplicate(created).map_err(fail("create database"))?;
            // Ours is new (connections allowed, PUBLIC may connect); one a
            // racing replica made is in an unknown state: converge both.
            allows_connections = !raced;
            public_can_connect = true;
        }
        if state.db_exists && !state.owned_by_role {
            self.ddl(format!("ALTER DATABASE {ident} OWNER TO {ident}"))
                .await
                .map_err(fail("set owner"))?;
        }
        if !allows_connections {
            self.ddl(format!("ALTER DATABASE {ident} ALLOW_CONNECTIONS true"))
                .await
                .map_err(fail("allow connections"))?;
        }
        if public_can_connect {
            // Every role may connect to a new database by default; only the
            // owner (and superusers) should reach a tenant's data.
            self.ddl(format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {ident} FROM PUBLIC"
            ))
            .await
            .map_err(fail("revoke public access"))?;
        }
        Ok(Observed::Running)
    }

    /// Renames the pooled database to the project's, then converges it as
    /// `ensure` does (a fresh role with the project's password, made its
    /// owner), then drops the pooled role: all in one transaction when the
    /// pooled database is as the pool made it and nothing of the project's
    /// exists yet (the common case), else step by step. Each step is
    /// idempotent, so a repeat after a crash finishes the job; a pooled
    /// database that is gone or not whole is left alone and the project's
    /// is created instead.
    async fn adopt(&self, spec: &DatabaseSpec, pooled: &str) -> DriverResult<Observed> {
        let name = &spec.resource.resource_name;
        validate_resource_name(name)?;
        validate_resource_name(pooled)?;
        if pooled == name {
            return Err(DriverError::permanent(format!(
                "database {name}: cannot adopt a pooled database of the same name"
            )));
        }
        let password = spec.password.expose_str();
        validate_password(name, password)?;
        if self.adopt_at_once(pooled, name, password).await {
            return Ok(Observed::Running);
        }
        if self.adoptable(pooled, name).await? {
            let renamed = self
                .ddl(format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(pooled),
                    quote_ident(name)
                ))
                .await;
            if let Err(e) = renamed {
                // Dropped or taken meanwhile, or in use: never fail the
                // project for the pool's sake; `ensure` creates its own.
                tracing::warn!(database = %name, pooled, "pooled database not adopted: {e}");
            }
        }
        let observed = self.ensure(spec).await?;
        self.retire_pooled_role(pooled).await?;
        Ok(observed)
    }

    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let name = &spec.resource.resource_name;
        validate_resource_name(name)?;
        let ident = quote_ident(name);
        // Refuse new connections first, so none slips in after the purge.
        let refused = self
            .ddl(format!("ALTER DATABASE {ident} ALLOW_CONNECTIONS false"))
            .await;
        match refused {
            Ok(()) => {}
            Err(e) if sqlstate(&e).as_deref() == Some(UNDEFINED_DATABASE) => {
                return Ok(Observed::Absent);
            }
            Err(e) => {
                return Err(classify(
                    &e,
                    &format!("database {name}: refuse connections"),
                ));
            }
        }
        self.terminate_backends(name).await?;
        Ok(Observed::Stopped)
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        let name = &r.resource_name;
        validate_resource_name(name)?;
        let ident = quote_ident(name);
        // FORCE ends the remaining connections itself (Postgres 13+), in the
        // same step, so none can reconnect in between.
        self.ddl(format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)"))
            .await
            .map_err(|e| classify(&e, &format!("database {name}: drop database")))?;
        self.ddl(format!("DROP ROLE IF EXISTS {ident}"))
            .await
            .map_err(|e| classify(&e, &format!("database {name}: drop role")))
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let names: Vec<String> = rs.iter().map(|r| r.resource_name.clone()).collect();
        let rows = sqlx::query(
            "SELECT d.datname::text, d.datallowconn, r.rolcanlogin \
             FROM pg_database d LEFT JOIN pg_roles r ON r.rolname = d.datname \
             WHERE d.datname::text = ANY($1::text[])",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(&e, "observe databases"))?;

        let mut out: HashMap<String, Observed> =
            names.into_iter().map(|n| (n, Observed::Absent)).collect();
        for row in rows {
            let name: String = row.get(0);
            let allow_conn: bool = row.get(1);
            let can_login: Option<bool> = row.get(2);
            let observed = match (allow_conn, can_login) {
                (_, None) => Observed::Failed(format!("role {name} is missing")),
                (false, Some(_)) => Observed::Stopped,
                (true, Some(true)) => Observed::Running,
                (true, Some(false)) => Observed::Failed(format!("role {name} cannot log in")),
            };
            out.insert(name, observed);
        }
        Ok(out)
    }

    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        let name = &spec.resource.resource_name;
        validate_resource_name(name)?;
        Ok(Some(DbCredentials {
            host: self.host.clone(),
            port: self.port,
            database: name.clone(),
            user: name.clone(),
            password: spec.password.clone(),
        }))
    }
}

/// A double-quoted SQL identifier. Only called on validated names, which
/// hold no quote, but doubling keeps it correct on its own.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Only generated-looking passwords are accepted: they go into URLs, and
/// SCRAM's SASLprep leaves them unchanged, so the verifier computed here is
/// the one the server checks against.
fn validate_password(name: &str, password: &str) -> DriverResult<()> {
    if !password.is_empty()
        && password.len() <= 256
        && password.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(DriverError::permanent(format!(
            "database {name}: the role password must be 1 to 256 characters from [A-Za-z0-9]"
        )))
    }
}

const UNDEFINED_DATABASE: &str = "3D000";

/// Turns "already exists" (a racing replica won) into success. `Ok(true)`
/// means the object was there before us, so it may need converging.
fn tolerate_duplicate(result: Result<(), sqlx::Error>) -> Result<bool, sqlx::Error> {
    match result {
        Ok(()) => Ok(false),
        Err(e) => match sqlstate(&e).as_deref() {
            // duplicate_object, duplicate_database, and the unique index on
            // pg_authid / pg_database when both CREATEs run at once.
            Some("42710" | "42P04" | "23505") => Ok(true),
            _ => Err(e),
        },
    }
}

fn is_concurrent_update(e: &sqlx::Error) -> bool {
    match sqlstate(e).as_deref() {
        // serialization_failure, deadlock_detected
        Some("40001" | "40P01") => true,
        Some("XX000") => e.to_string().contains("tuple concurrently updated"),
        _ => false,
    }
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Classifies an sqlx error for the reconcile loop; the message names what
/// was being done and carries the SQLSTATE in brackets.
fn classify(e: &sqlx::Error, doing: &str) -> DriverError {
    use sqlx::Error as E;
    match e {
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let msg = format!("{doing}: {} [{code}]", db.message());
            // 42: syntax or access rule (42501 permission denied);
            // 28: bad admin credentials; 22: invalid data. Retrying repeats them.
            if code.starts_with("42") || code.starts_with("28") || code.starts_with("22") {
                DriverError::Permanent(msg)
            } else {
                DriverError::Transient(msg)
            }
        }
        E::Configuration(_) | E::InvalidArgument(_) | E::Tls(_) => {
            DriverError::permanent(format!("{doing}: {}", without_url(e)))
        }
        // Connection refused or reset, pool timeouts, protocol hiccups.
        _ => DriverError::transient(format!("{doing}: {e}")),
    }
}

/// An error message that cannot echo the admin URL (it may hold a password).
fn without_url(e: &sqlx::Error) -> String {
    let s = e.to_string();
    if s.contains("://") {
        "the URL could not be parsed".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_alphanumeric_only() {
        assert!(validate_password("d", "Ab3xYz").is_ok());
        for bad in ["", "a'b", "a b", "a\\b", "é"] {
            assert!(!validate_password("d", bad).unwrap_err().is_transient());
        }
    }

    #[test]
    fn identifiers_are_double_quoted() {
        assert_eq!(quote_ident("a-b"), "\"a-b\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
