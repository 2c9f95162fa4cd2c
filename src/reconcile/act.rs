//! Acting on one row: the driver calls its planned action needs, the specs
//! they take (with the project's variables and decrypted passwords), and
//! the fenced write of the outcome.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use super::pass::Decision;
use super::plan::Action;
use super::{CycleStats, Reconciler, backoff, outcome, plan_input, resource_ref};
use crate::driver::{DatabaseSpec, DriverError, DriverResult, Observed, ResourceRef, SandboxSpec};
use crate::model::ResourceStatus;
use crate::store::inputs::SandboxInputs;
use crate::store::resources::{Leased, Outcome, ResourceKind, WriteResult};
use crate::store::user_configs::UserConfig;
use crate::store::{Store, StoreError, StoreResult};

impl Reconciler {
    /// Acts on one row; the outcome is written with its batch's
    /// ([`Store::record_outcomes`](crate::store::Store::record_outcomes)).
    pub(super) async fn work_row(
        &self,
        row: &Leased,
        decided: Decision,
        specs: &SpecInputs,
    ) -> StoreResult<(CycleStats, Outcome, bool)> {
        let mut stats = CycleStats::default();
        let input = plan_input(row);
        let mut applied = Applied::default();
        let result: DriverResult<Observed> = match decided {
            Err(e) => Err(e),
            Ok((action, observed)) => {
                let r = self
                    .act(row, &action, observed, specs, &mut stats, &mut applied)
                    .await;
                match r {
                    Err(ActError::Store(e)) => return Err(e),
                    Err(ActError::Driver(e)) => Err(e),
                    Ok(o) => Ok(o),
                }
            }
        };
        if result.is_err() {
            stats.failures += 1;
        }
        let mut out = outcome::outcome(
            input,
            row.attempts,
            &result,
            &self.cfg.schedule,
            backoff::unit_random(),
        );
        if result.is_ok() {
            out.applied_env_version = applied.env_version;
            out.connection = applied.connection;
            out.applied_database = applied.database;
        }
        Ok((stats, out, result.is_ok()))
    }

    /// The row's outcome in the metrics: what the write did, and the time
    /// from creation to the first RUNNING.
    pub(super) fn count(
        &self,
        row: &Leased,
        driver_ok: bool,
        written: &WriteResult,
        status: ResourceStatus,
    ) {
        let m = crate::ops::metrics::metrics();
        let label = transition_label(driver_ok, written, row.status != status);
        m.reconcile_transitions.with_label_values(&[label]).inc();
        if matches!(written, WriteResult::Written)
            && row.status == ResourceStatus::Creating
            && status == ResourceStatus::Running
        {
            let age = (chrono::Utc::now() - row.created_at)
                .to_std()
                .unwrap_or_default();
            // An owner's sandboxes and databases are on the same back end.
            let backend = self.sandboxes.backend_label(row.user_id);
            m.create_to_running_seconds
                .with_label_values(&[backend])
                .observe(age.as_secs_f64());
        }
    }

    async fn act(
        &self,
        row: &Leased,
        action: &Action,
        observed: Observed,
        specs: &SpecInputs,
        stats: &mut CycleStats,
        applied: &mut Applied,
    ) -> Result<Observed, ActError> {
        let r = resource_ref(row);
        match (row.kind, action) {
            // A database that has just come up: it is RUNNING only once its
            // connection details can be read (the seed keeps STARTING too).
            (ResourceKind::Database, Action::Nothing | Action::Wait | Action::Settle)
                if observed == Observed::Running && row.status != ResourceStatus::Running =>
            {
                let spec = self.database_spec(row, r)?;
                stats.driver_calls += 1;
                self.with_credentials(&spec, observed, &mut applied.connection)
                    .await
            }
            // The batch observation already says where it is.
            (_, Action::Nothing | Action::Wait | Action::Settle) => Ok(observed),
            (_, Action::Forget) => Ok(Observed::Absent),
            // Kubelet would retry a failed clone forever, failing as
            // before; held stopped, the sandbox starts afresh on a retry
            // (with a token set meanwhile, say), as a local one does.
            (ResourceKind::Sandbox, Action::Fail(_))
                if matches!(observed, Observed::PrepareFailed(..)) =>
            {
                stats.driver_calls += 1;
                self.sandboxes.stop(&r).await?;
                Ok(observed)
            }
            // The observation itself: it says which failure it is.
            (_, Action::Fail(_)) => Ok(observed),
            (ResourceKind::Sandbox, Action::Ensure | Action::SyncEnv) => {
                let (version, spec, database) = self.sandbox_spec(row, &r, specs, stats).await?;
                stats.driver_calls += 1;
                // A claimed pooled sandbox's first start makes sure nothing
                // from before the claim is left in it.
                let adopt = row.pooled_from.is_some() && row.status == ResourceStatus::Creating;
                let observed = if *action == Action::Ensure && adopt {
                    self.sandboxes.adopt(&spec).await?
                } else if *action == Action::Ensure {
                    self.sandboxes.ensure(&spec).await?
                } else {
                    self.sandboxes.sync_env(&spec).await?;
                    Observed::Running
                };
                applied.env_version = Some(version);
                applied.database = database;
                Ok(observed)
            }
            (ResourceKind::Sandbox, Action::Stop) => {
                stats.driver_calls += 1;
                Ok(self.sandboxes.stop(&r).await?)
            }
            (ResourceKind::Sandbox, Action::Delete) => {
                stats.driver_calls += 1;
                self.sandboxes.delete(&r).await?;
                Ok(Observed::Absent)
            }
            (ResourceKind::Database, Action::Ensure) => {
                let mut spec = self.database_spec(row, r)?;
                // A database claimed from a cluster's pool is let through
                // to its project's sandbox alone: which one, by name.
                if crate::model::naming::is_pooled_database_name(&row.resource_name) {
                    spec.sandbox = self.store.project_sandbox_name(row.project_id).await?;
                }
                stats.driver_calls += 2;
                let observed = match &row.pooled_from {
                    Some(pooled) => self.databases.adopt(&spec, pooled).await?,
                    None => self.databases.ensure(&spec).await?,
                };
                self.with_credentials(&spec, observed, &mut applied.connection)
                    .await
            }
            (ResourceKind::Database, Action::Stop) => {
                let spec = self.database_spec(row, r)?;
                stats.driver_calls += 1;
                Ok(self.databases.stop(&spec).await?)
            }
            (ResourceKind::Database, Action::Delete) => {
                stats.driver_calls += 1;
                self.databases.delete(&r).await?;
                Ok(Observed::Absent)
            }
            (ResourceKind::Database, Action::SyncEnv) => Ok(Observed::Running),
        }
    }

    /// A running database's connection details, or `Starting` while they
    /// cannot be read yet.
    async fn with_credentials(
        &self,
        spec: &DatabaseSpec,
        observed: Observed,
        connection: &mut Option<(String, i32, String, String)>,
    ) -> Result<Observed, ActError> {
        if observed != Observed::Running {
            return Ok(observed);
        }
        match self.databases.credentials(spec).await? {
            Some(c) => {
                *connection = Some((c.host, i32::from(c.port), c.database, c.user));
                Ok(Observed::Running)
            }
            None => Ok(Observed::Starting),
        }
    }

    /// The sandbox's spec: the project's variables plus what Kiln injects;
    /// with the env version it carries and the database connection its
    /// `DATABASE_URL` was built from, if any.
    async fn sandbox_spec(
        &self,
        row: &Leased,
        r: &ResourceRef,
        specs: &SpecInputs,
        stats: &mut CycleStats,
    ) -> Result<(i64, SandboxSpec, Option<Connection>), ActError> {
        let inputs = specs
            .inputs
            .get(&row.project_id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound("the project is gone".into()))?;
        let (version, mut env, mut secret_keys) =
            (inputs.env_version, inputs.env, inputs.secret_keys);
        let mut database = None;
        if let Some((name, namespace, sealed)) = inputs.database {
            let password = self
                .store
                .key()
                .decrypt_string(&sealed, &ResourceKind::Database.password_context(&name))?;
            let spec = DatabaseSpec {
                resource: ResourceRef {
                    resource_name: name,
                    namespace,
                    project_slug: row.project_slug.clone(),
                    owner: row.user_id,
                },
                password: password.into(),
                sandbox: Some(row.resource_name.clone()),
            };
            stats.driver_calls += 1;
            if let Some(c) = self.databases.credentials(&spec).await? {
                env.push(("DATABASE_URL".into(), c.url()));
                secret_keys.insert("DATABASE_URL".into());
                database = Some((c.host, i32::from(c.port), c.database, c.user));
            }
        }
        // The user's Claude settings win over project variables of the same
        // name, as in the seed; the kubeconfig and the rest never leave.
        let configs = specs.configs.get(&row.user_id).cloned().unwrap_or_default();
        let repo = inputs.git_repo.map(|url| crate::driver::RepoSource {
            url,
            branch: inputs.git_branch,
            token: configs
                .iter()
                .find(|c| c.key == crate::store::user_configs::GIT_TOKEN)
                .map(|c| c.value.clone()),
        });
        for c in configs {
            if let Some(name) = crate::model::env::sandbox_name_of_user_setting(&c.key) {
                env.retain(|(k, _)| k != name);
                if c.is_secret {
                    secret_keys.insert(name.to_string());
                }
                env.push((name.to_string(), c.value.into_inner()));
            }
        }
        env.push(("PROJECT_NAME".into(), row.project_name.clone()));
        // Agent hooks over HTTP (Kubernetes): where to report, and the
        // sandbox's own token, kept in its Secret like every secret value.
        if let Some(url) = &self.cfg.hook_url {
            use crate::model::hook_token::{HOOK_TOKEN_VAR, HOOK_URL_VAR};
            for key in [HOOK_URL_VAR, HOOK_TOKEN_VAR] {
                env.retain(|(k, _)| k != key);
            }
            env.push((HOOK_URL_VAR.into(), url.clone()));
            env.push((
                HOOK_TOKEN_VAR.into(),
                self.store.key().hook_token(&r.resource_name),
            ));
            secret_keys.insert(HOOK_TOKEN_VAR.into());
        }
        env.sort();
        Ok((
            version,
            SandboxSpec {
                resource: r.clone(),
                env,
                secret_keys,
                repo,
                command: inputs.session_command,
                setup: inputs.setup_script,
                sizing: inputs.sizing,
            },
            database,
        ))
    }

    fn database_spec(&self, row: &Leased, r: ResourceRef) -> Result<DatabaseSpec, ActError> {
        let sealed = row.password_enc.as_deref().unwrap_or_default();
        let password = self.store.key().decrypt_string(
            sealed,
            &ResourceKind::Database.password_context(&row.resource_name),
        )?;
        Ok(DatabaseSpec {
            resource: r,
            password: password.into(),
            sandbox: None,
        })
    }
}

/// A database's connection details: host, port, database, user.
type Connection = (String, i32, String, String);

/// What acting on a row applied, for its outcome (all `None` unless the
/// driver calls succeeded and brought them).
#[derive(Default)]
struct Applied {
    /// The env version a sandbox now runs with.
    env_version: Option<i64>,
    /// A database's connection details, read once it runs.
    connection: Option<Connection>,
    /// The connection a sandbox's `DATABASE_URL` was built from.
    database: Option<Connection>,
}

/// What the sandbox specs of a batch are built from, read for the whole
/// batch at once ([`SpecInputs::read`]): one round trip per batch instead
/// of two per sandbox.
#[derive(Default)]
pub(super) struct SpecInputs {
    /// Project id → its variables, repository, database.
    inputs: HashMap<Uuid, SandboxInputs>,
    /// User id → the user's settings.
    configs: HashMap<Uuid, Vec<UserConfig>>,
}

impl SpecInputs {
    /// Reads what the specs of `rows` need, in two statements run side by
    /// side (none when `rows` is empty); the number of statements.
    pub(super) async fn read(store: &Store, rows: &[&Leased]) -> StoreResult<(Self, usize)> {
        if rows.is_empty() {
            return Ok((Self::default(), 0));
        }
        let projects: Vec<Uuid> = rows
            .iter()
            .map(|r| r.project_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let users: Vec<Uuid> = rows
            .iter()
            .map(|r| r.user_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (inputs, configs) = tokio::try_join!(
            store.sandbox_inputs_of(&projects),
            store.user_configs_of(&users)
        )?;
        Ok((Self { inputs, configs }, 2))
    }
}

/// A failure while acting: a driver error becomes the row's outcome; a store
/// error aborts the pass (the lease expires and the row is retried).
enum ActError {
    Driver(DriverError),
    Store(StoreError),
}

impl From<DriverError> for ActError {
    fn from(e: DriverError) -> Self {
        ActError::Driver(e)
    }
}

impl From<StoreError> for ActError {
    fn from(e: StoreError) -> Self {
        ActError::Store(e)
    }
}

impl From<crate::store::CryptoError> for ActError {
    fn from(e: crate::store::CryptoError) -> Self {
        ActError::Store(e.into())
    }
}

/// The `result` label of `kiln_reconcile_transitions_total`: a failed
/// driver call, else what the fenced write did.
pub(super) fn transition_label(ok: bool, written: &WriteResult, changed: bool) -> &'static str {
    match (ok, written) {
        (_, WriteResult::Superseded) => "superseded",
        (_, WriteResult::LeaseLost) => "lease_lost",
        (false, WriteResult::Written) => "failed",
        (true, WriteResult::Written) if changed => "changed",
        (true, WriteResult::Written) => "unchanged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_labelled_by_what_happened() {
        let w = WriteResult::Written;
        assert_eq!(transition_label(true, &w, true), "changed");
        assert_eq!(transition_label(true, &w, false), "unchanged");
        assert_eq!(transition_label(false, &w, true), "failed");
        assert_eq!(
            transition_label(true, &WriteResult::Superseded, true),
            "superseded"
        );
        assert_eq!(
            transition_label(false, &WriteResult::LeaseLost, false),
            "lease_lost"
        );
    }
}
