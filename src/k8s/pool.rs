//! The warm pools on the server's cluster (issue 23): making and checking
//! pooled sandboxes and databases in the pool's namespace, and claiming
//! them for a tenant's project. What the objects are, and why claimed ones
//! stay in the pool's namespace, is in `pool_objects`. A claimed database
//! keeps its pooled name and is reached through its tenant's route
//! (`ensure_claimed_database`); the keeper works the unclaimed ones
//! through [`PooledDatabases`].
//!
//! **What a claim costs**, for a project whose sandbox fits the pooled pod
//! (no repository, setup script, image or size of its own), in API calls:
//!
//! 1. one GET of the StatefulSet (is it still the pooled, unclaimed one?);
//! 2. two server-side applies, the claim's NetworkPolicy in the pool's
//!    namespace and its peer in the tenant's;
//! 3. one exec, `kiln-entrypoint claim` with the environment on stdin,
//!    which opens the project's session in the running pod;
//! 4. one create of the Ingress, with a domain only;
//! 5. one merge PATCH of the StatefulSet's metadata labels.
//!
//! So 5 calls (6 with a domain), and no pod restart: neither the pod nor
//! its template changes. The env Secret is written by the next start from
//! the project's own template (after a stop), which rolls the pod as any
//! start does. A project that does not fit is started from its own
//! template at once: the ordinary ensure, plus the two policies.

use std::collections::HashMap;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, AttachParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cluster::{K8sCluster, classify, is_already_exists};
use super::network_policy::pool_namespace_policies;
use super::objects::{self, CONTAINER, MANAGED_BY};
use super::pool_objects::{
    ENTRYPOINT, POOL_LABEL, POOL_UNCLAIMED, claim_env_script, claim_policies, claim_policy_name,
    claimed_database_labels, claimed_labels, database_claim_policies, database_claim_policy_name,
    database_policy_name, fits_pooled, is_unclaimed, pooled_database_policy, pooled_objects,
    runs_pooled_template, unclaimed_labels,
};
use super::status::statefulset_observed;
use crate::driver::{
    DatabaseDriver, DatabaseSpec, DbCredentials, DriverError, DriverResult, Observed, ResourceRef,
    SandboxDriver, SandboxPoolDriver, SandboxSpec,
};

/// The label on the pool's namespace, which a tenant's never has.
pub const POOL_NAMESPACE_LABEL: &str = "kiln.dev/pool-namespace";

impl K8sCluster {
    /// The pool's namespace, created and labelled as Kiln's pool, and its
    /// NetworkPolicies (a tenant namespace's: see `pool_objects`). A
    /// namespace of that name that Kiln did not create as its pool (a
    /// tenant's, say) is refused, never used.
    async fn ensure_pool_namespace(&self) -> DriverResult<()> {
        let ns = self.namespace();
        let api: Api<Namespace> = Api::all(self.client().clone());
        let labels = std::collections::BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (POOL_NAMESPACE_LABEL.to_string(), "true".to_string()),
        ]);
        let object = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let what = format!("creating the pool's namespace {ns}");
        match self
            .bounded(&what, api.create(&PostParams::default(), &object))
            .await
        {
            Ok(_) => {}
            Err(e) if is_already_exists(&e) => {
                let what = format!("reading namespace {ns}");
                let existing = self
                    .bounded(&what, api.get(ns))
                    .await
                    .map_err(|e| classify(e, &what))?;
                let ours = existing.metadata.labels.as_ref().is_some_and(|l| {
                    l.get(POOL_NAMESPACE_LABEL).is_some_and(|v| v == "true")
                        && l.get(MANAGED_BY.0).is_some_and(|v| v == MANAGED_BY.1)
                });
                if !ours {
                    return Err(DriverError::permanent(format!(
                        "namespace {ns} exists and is not Kiln's sandbox pool; set kubernetes.pool_namespace to another name"
                    )));
                }
            }
            Err(e) => return Err(classify(e, &what)),
        }
        for policy in pool_namespace_policies(ns, self.settings()) {
            self.apply(&policy, "network policy").await?;
        }
        Ok(())
    }

    /// A database this tenant claimed from the pool (`self` is the pool's
    /// namespace, `tenant` the tenant's), started or started again: its
    /// claim's two policies (see `pool_objects::database_claim_policies`),
    /// the ordinary ensure in the pool's namespace, and its cluster
    /// labelled for its tenant (metadata only: KubeBlocks restarts
    /// nothing). The database is the pooled one as it was made: its
    /// credentials were never handed to anyone before.
    pub async fn ensure_claimed_database(
        &self,
        spec: &DatabaseSpec,
        tenant: &K8sCluster,
    ) -> DriverResult<Observed> {
        let spec = DatabaseSpec {
            resource: self.scoped(&spec.resource),
            ..spec.clone()
        };
        let r = &spec.resource;
        let (ingress, egress) = database_claim_policies(
            r,
            self.namespace(),
            tenant.namespace(),
            spec.sandbox.as_deref(),
        );
        self.apply(
            &pooled_database_policy(r, self.namespace()),
            "network policy",
        )
        .await?;
        self.apply(&ingress, "network policy").await?;
        tenant.apply(&egress, "network policy").await?;
        let observed = DatabaseDriver::ensure(self, &spec).await?;
        self.label_cluster(
            &super::database_objects::cluster_name(r),
            &claimed_database_labels(r),
        )
        .await?;
        Ok(observed)
    }

    /// Deletes a claimed database and its policies.
    pub async fn delete_claimed_database(
        &self,
        r: &ResourceRef,
        tenant: &K8sCluster,
    ) -> DriverResult<()> {
        DatabaseDriver::delete(self, r).await?;
        let r = self.scoped(r);
        let claim = database_claim_policy_name(&r);
        for (side, name) in [
            (self, claim.clone()),
            (tenant, claim),
            (self, database_policy_name(&r)),
        ] {
            side.delete_quietly(
                &side.api::<NetworkPolicy>(),
                &name,
                "deleting a claimed database's network policy",
            )
            .await?;
        }
        Ok(())
    }

    /// A StatefulSet of this namespace, if it is there.
    async fn statefulset(&self, name: &str) -> DriverResult<Option<StatefulSet>> {
        let what = format!("reading statefulset {name}");
        self.bounded(&what, self.api::<StatefulSet>().get_opt(name))
            .await
            .map_err(|e| classify(e, &what))
    }

    /// The first start of a sandbox this tenant claimed from the pool
    /// (`self` is the pool's namespace, `tenant` the tenant's): see the
    /// module doc for what it costs.
    pub async fn adopt_claimed(
        &self,
        spec: &SandboxSpec,
        tenant: &K8sCluster,
    ) -> DriverResult<Observed> {
        let spec = SandboxSpec {
            resource: self.scoped(&spec.resource),
            ..spec.clone()
        };
        let r = &spec.resource;
        let name = objects::statefulset_name(r);
        let sts = self.statefulset(&name).await?;
        self.ensure_claim_policies(r, tenant).await?;
        let Some(sts) = sts.filter(|s| runs_pooled_template(s) && fits_pooled(&spec)) else {
            // Gone since its last health check, or the project needs a pod
            // of its own: started from the project's template.
            return SandboxDriver::ensure(self, &spec).await;
        };
        // Idempotent: a retry after a later step failed claims again.
        self.claim_session(r, &spec).await?;
        if let Some(ingress) = objects::sandbox_objects(&spec, self.settings()).ingress {
            self.apply_ingress(&ingress).await?;
        }
        let what = format!("labelling statefulset {name} as claimed");
        let patch = json!({ "metadata": { "labels": claimed_labels(&spec) } });
        self.bounded(
            &what,
            self.api::<StatefulSet>()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map_err(|e| classify(e, &what))?;
        // What the pod was before the label (a metadata change) is what it is.
        Ok(statefulset_observed(Some(&sts), &[]))
    }

    /// Starts a claimed sandbox's ordinary life (after a stop, say): from
    /// the project's own template, in the pool's namespace, with its
    /// policies.
    pub async fn ensure_claimed(
        &self,
        spec: &SandboxSpec,
        tenant: &K8sCluster,
    ) -> DriverResult<Observed> {
        self.ensure_claim_policies(&self.scoped(&spec.resource), tenant)
            .await?;
        SandboxDriver::ensure(self, spec).await
    }

    /// A claimed sandbox's new environment: while it still runs the pooled
    /// pod, another claim (every session made from now on gets it, as on
    /// the local driver; no restart); once restarted from the project's
    /// template, the ordinary sync.
    pub async fn sync_claimed(&self, spec: &SandboxSpec) -> DriverResult<()> {
        let spec = SandboxSpec {
            resource: self.scoped(&spec.resource),
            ..spec.clone()
        };
        let name = objects::statefulset_name(&spec.resource);
        match self.statefulset(&name).await? {
            Some(sts) if runs_pooled_template(&sts) && fits_pooled(&spec) => {
                self.claim_session(&spec.resource, &spec).await
            }
            _ => SandboxDriver::sync_env(self, &spec).await,
        }
    }

    /// Deletes a claimed sandbox and its claim's policies.
    pub async fn delete_claimed(&self, r: &ResourceRef, tenant: &K8sCluster) -> DriverResult<()> {
        SandboxDriver::delete(self, r).await?;
        let name = claim_policy_name(&self.scoped(r));
        for side in [self, tenant] {
            side.delete_quietly(
                &side.api::<NetworkPolicy>(),
                &name,
                "deleting the claim's network policy",
            )
            .await?;
        }
        Ok(())
    }

    async fn ensure_claim_policies(
        &self,
        r: &ResourceRef,
        tenant: &K8sCluster,
    ) -> DriverResult<()> {
        let (egress, ingress) = claim_policies(r, self.namespace(), tenant.namespace());
        self.apply(&egress, "network policy").await?;
        tenant.apply(&ingress, "network policy").await
    }

    /// Opens the project's session in the pooled pod: `kiln-entrypoint
    /// claim`, with the environment on stdin.
    async fn claim_session(&self, r: &ResourceRef, spec: &SandboxSpec) -> DriverResult<()> {
        let script = claim_env_script(&spec.env)?;
        let argv = vec![ENTRYPOINT.to_string(), "claim".to_string()];
        let (output, code) = self.exec_with_stdin(r, argv, script.as_bytes()).await?;
        match code {
            Some(0) => Ok(()),
            Some(code) => Err(DriverError::transient(format!(
                "claiming pooled sandbox {}: kiln-entrypoint claim exited with {code}: {}",
                r.resource_name,
                crate::model::naming::printable(output.trim(), 300)
            ))),
            None => Err(DriverError::transient(format!(
                "claiming pooled sandbox {}: no exit status",
                r.resource_name
            ))),
        }
    }

    /// Runs a command in the sandbox container with `input` on its stdin
    /// (closed after it), and returns its output (stdout then stderr, at
    /// most 64 KiB: the sandbox writes it) and exit status.
    async fn exec_with_stdin(
        &self,
        r: &ResourceRef,
        argv: Vec<String>,
        input: &[u8],
    ) -> DriverResult<(String, Option<i32>)> {
        let pod = objects::pod_name(r);
        let what = format!("running {} in pod {pod}", argv.join(" "));
        let ap = AttachParams::default()
            .container(CONTAINER)
            .stdin(true)
            .stdout(true)
            .stderr(true);
        let mut proc = self
            .bounded(&what, self.api::<Pod>().exec(&pod, argv, &ap))
            .await
            .map_err(|e| classify(e, &what))?;
        let status = proc.take_status();
        let mut stdin = proc
            .stdin()
            .ok_or_else(|| DriverError::transient(format!("{what}: no stdin")))?;
        let mut stdout = proc
            .stdout()
            .ok_or_else(|| DriverError::transient(format!("{what}: no stdout")))?;
        let mut stderr = proc
            .stderr()
            .ok_or_else(|| DriverError::transient(format!("{what}: no stderr")))?;
        let run = async {
            stdin.write_all(input).await?;
            stdin.shutdown().await?;
            // Dropping the writer closes the stream (kube sends the close).
            drop(stdin);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let limit = 64 << 10;
            let (mut so, mut se) = ((&mut stdout).take(limit), (&mut stderr).take(limit));
            let (a, b) = tokio::join!(so.read_to_end(&mut out), se.read_to_end(&mut err));
            a?;
            b?;
            out.extend_from_slice(&err);
            std::io::Result::Ok(out)
        };
        let out = match tokio::time::timeout(self.settings().api_timeout(), run).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                proc.abort();
                return Err(DriverError::transient(format!("{what}: {e}")));
            }
            Err(_) => {
                proc.abort();
                return Err(DriverError::transient(format!("{what}: no answer in time")));
            }
        };
        let code = match status {
            Some(s) => match tokio::time::timeout(self.settings().api_timeout(), s).await {
                Ok(Some(s)) => exit_code(&s),
                Ok(None) => None,
                Err(_) => None,
            },
            None => None,
        };
        Ok((String::from_utf8_lossy(&out).into_owned(), code))
    }
}

/// The exit status kubelet reports for an exec: `Success` is 0, a failure
/// carries it as an `ExitCode` cause.
fn exit_code(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Option<i32> {
    if s.status.as_deref() == Some("Success") {
        return Some(0);
    }
    s.details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.trim().parse().ok())
}

#[async_trait]
impl SandboxPoolDriver for K8sCluster {
    /// Makes the pooled sandbox's objects (idempotent) and answers once its
    /// pod is ready, so a pooled sandbox is READY only when a claim can
    /// open its session at once; until then the keeper retries.
    async fn prepare_pooled(&self, r: &ResourceRef) -> DriverResult<()> {
        if !crate::model::naming::is_pooled_sandbox_name(&r.resource_name) {
            return Err(DriverError::permanent(format!(
                "{:?} is not a pooled sandbox's name",
                r.resource_name
            )));
        }
        self.ensure_pool_namespace().await?;
        let (sts, service) = pooled_objects(&r.resource_name, self.settings());
        self.create_or_adopt(&service, "service").await?;
        let name = sts.metadata.name.clone().unwrap_or_default();
        let what = format!("creating statefulset {name}");
        let existing = match self
            .bounded(
                &what,
                self.api::<StatefulSet>()
                    .create(&PostParams::default(), &sts),
            )
            .await
        {
            Ok(created) => created,
            Err(e) if is_already_exists(&e) => self.statefulset(&name).await?.ok_or_else(|| {
                DriverError::transient(format!("{what}: deleted while being made"))
            })?,
            Err(e) => return Err(classify(e, &what)),
        };
        match pooled_health(Some(&existing)) {
            Observed::Running => Ok(()),
            other => Err(DriverError::transient(format!(
                "pooled sandbox {name}: {}",
                describe(&other)
            ))),
        }
    }

    async fn unopened_pooled(&self) -> DriverResult<Vec<String>> {
        let selector = format!(
            "{},{POOL_LABEL}={POOL_UNCLAIMED}",
            objects::selector(objects::SANDBOX_KIND)
        );
        let sets = self
            .statefulsets(&selector, "listing unclaimed pooled sandboxes")
            .await?;
        Ok(sets
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .filter(|n| crate::model::naming::is_pooled_sandbox_name(n))
            .collect())
    }

    async fn observe_pooled(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let selector = format!("{},{POOL_LABEL}", objects::selector(objects::SANDBOX_KIND));
        let sets = self
            .statefulsets(&selector, "listing pooled sandboxes")
            .await?;
        let by_name: HashMap<String, &StatefulSet> = sets
            .iter()
            .filter_map(|s| s.metadata.name.clone().map(|n| (n, s)))
            .collect();
        Ok(rs
            .iter()
            .map(|r| {
                let sts = by_name.get(&objects::statefulset_name(&self.scoped(r)));
                (r.resource_name.clone(), pooled_health(sts.copied()))
            })
            .collect())
    }
}

/// The warm pool's databases on the server's cluster, as the pool keeper
/// makes, checks and drops them: KubeBlocks clusters in the pool's
/// namespace, each with its own policy (its pods let each other in,
/// nothing else of the namespace). Claimed ones are the tenant's, reached
/// through the tenant's route (`ensure_claimed_database`).
pub struct PooledDatabases(pub std::sync::Arc<K8sCluster>);

#[async_trait]
impl DatabaseDriver for PooledDatabases {
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let pool = &self.0;
        if !crate::model::naming::is_pooled_database_name(&spec.resource.resource_name) {
            return Err(DriverError::permanent(format!(
                "{:?} is not a pooled database's name",
                spec.resource.resource_name
            )));
        }
        pool.ensure_pool_namespace().await?;
        let r = pool.scoped(&spec.resource);
        pool.apply(
            &pooled_database_policy(&r, pool.namespace()),
            "network policy",
        )
        .await?;
        let observed = DatabaseDriver::ensure(pool.as_ref(), spec).await?;
        // Labelled unclaimed, so no tenant's observation takes it for
        // theirs before their claim (see `K8sCluster::observe`).
        pool.label_cluster(
            &super::database_objects::cluster_name(&r),
            &unclaimed_labels(),
        )
        .await?;
        Ok(observed)
    }

    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        DatabaseDriver::stop(self.0.as_ref(), spec).await
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        let pool = &self.0;
        DatabaseDriver::delete(pool.as_ref(), r).await?;
        let name = database_policy_name(&pool.scoped(r));
        pool.delete_quietly(
            &pool.api::<NetworkPolicy>(),
            &name,
            "deleting a pooled database's network policy",
        )
        .await
    }

    /// Health, unclaimed or not (a tenant's observation hides unclaimed
    /// ones; the keeper looks at exactly those).
    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let pool = &self.0;
        let by_name = pool.database_clusters().await?;
        Ok(rs
            .iter()
            .map(|r| {
                let c = by_name.get(&super::database_objects::cluster_name(&pool.scoped(r)));
                (r.resource_name.clone(), super::status::cluster_observed(c))
            })
            .collect())
    }

    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        self.0.credentials(spec).await
    }
}

/// A pooled sandbox's health: `Running` when it is still unclaimed, still
/// runs the pooled template, and its pod is ready (its tmux server
/// answers); anything else is not handed out.
fn pooled_health(sts: Option<&StatefulSet>) -> Observed {
    let Some(sts) = sts else {
        return Observed::Absent;
    };
    if !runs_pooled_template(sts) {
        return Observed::Failed("its pod template is no longer the pooled one".into());
    }
    if !is_unclaimed(sts) {
        return Observed::Failed("it is labelled as claimed".into());
    }
    match statefulset_observed(Some(sts), &[]) {
        Observed::Running => Observed::Running,
        Observed::Stopped | Observed::Stopping => Observed::Failed("it was scaled to 0".into()),
        _ => Observed::Starting,
    }
}

fn describe(o: &Observed) -> String {
    match o {
        Observed::Starting => "its pod is not ready yet".into(),
        Observed::Absent => "it is gone".into(),
        Observed::Failed(why) => why.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::settings::K8sSettings;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

    fn ready(mut sts: StatefulSet) -> StatefulSet {
        sts.status = Some(StatefulSetStatus {
            replicas: 1,
            ready_replicas: Some(1),
            current_replicas: Some(1),
            updated_replicas: Some(1),
            ..Default::default()
        });
        sts
    }

    #[test]
    fn only_an_unclaimed_ready_pooled_sandbox_is_healthy() {
        let s = K8sSettings::default();
        let (sts, _) = pooled_objects("sb-abcdefghijklm", &s);
        assert_eq!(pooled_health(None), Observed::Absent);
        assert_eq!(pooled_health(Some(&sts)), Observed::Starting);
        assert_eq!(pooled_health(Some(&ready(sts.clone()))), Observed::Running);
        let mut claimed = ready(sts.clone());
        claimed.metadata.labels.as_mut().unwrap().insert(
            POOL_LABEL.into(),
            crate::k8s::pool_objects::POOL_CLAIMED.into(),
        );
        assert!(matches!(pooled_health(Some(&claimed)), Observed::Failed(_)));
        let mut rolled = ready(sts.clone());
        rolled
            .spec
            .as_mut()
            .unwrap()
            .template
            .metadata
            .as_mut()
            .unwrap()
            .annotations = None;
        assert!(matches!(pooled_health(Some(&rolled)), Observed::Failed(_)));
        let mut scaled = ready(sts);
        scaled.spec.as_mut().unwrap().replicas = Some(0);
        scaled.status = None;
        assert!(matches!(pooled_health(Some(&scaled)), Observed::Failed(_)));
    }

    #[test]
    fn exit_codes_are_read_from_kubelets_status() {
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(&ok), Some(0));
        let failed = Status {
            status: Some("Failure".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("3".into()),
                    field: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_code(&failed), Some(3));
        let unknown = Status {
            status: Some("Failure".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(&unknown), None);
    }
}
