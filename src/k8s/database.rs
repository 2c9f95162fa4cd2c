//! Databases on Kubernetes: a KubeBlocks PostgreSQL `Cluster` plus the
//! service account, role and binding its pods run as. Start and stop change
//! the component's replicas (1/0); the volume stays. Credentials come from
//! the `{cluster}-conn-credential` Secret KubeBlocks writes once the cluster
//! is up.

use std::collections::HashMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};

use super::cluster::{K8sCluster, classify, is_already_exists, is_not_found};
use super::database_objects::{self, DatabaseObjects};
use super::objects;
use super::status::{cluster_observed, credentials_from_secret};
use crate::driver::{
    DatabaseDriver, DatabaseSpec, DbCredentials, DriverError, DriverResult, Observed, ResourceRef,
};

const KIND: &str = "database";

impl K8sCluster {
    pub(crate) fn clusters(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client().clone(),
            self.namespace(),
            &database_objects::cluster_api_resource(),
        )
    }

    /// Merges `labels` into a database cluster's metadata labels (metadata
    /// only: KubeBlocks restarts nothing for it).
    pub(crate) async fn label_cluster(
        &self,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> DriverResult<()> {
        let what = format!("labelling database cluster {name}");
        let patch = serde_json::json!({ "metadata": { "labels": labels } });
        self.bounded(
            &what,
            self.clusters()
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify(e, &what))
    }

    /// Every database cluster Kiln made in the namespace, by name (one list).
    pub(crate) async fn database_clusters(&self) -> DriverResult<HashMap<String, DynamicObject>> {
        let what = "listing database clusters";
        let list = self
            .bounded(
                what,
                self.clusters()
                    .list(&ListParams::default().labels(&objects::selector(KIND))),
            )
            .await
            .map_err(|e| missing_kubeblocks(classify(e, what)))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name.clone().map(|n| (n, c)))
            .collect())
    }

    /// Sets the component's replicas; a cluster that is gone is `Absent`.
    /// `spec` is already scoped to this cluster.
    async fn scale_cluster(&self, spec: &DatabaseSpec, replicas: i32) -> DriverResult<Observed> {
        let name = database_objects::cluster_name(&spec.resource);
        let what = format!("scaling database cluster {name} to {replicas}");
        let patch = database_objects::cluster_replicas_merge_patch(spec, self.settings(), replicas);
        match self
            .bounded(
                &what,
                self.clusters()
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await
        {
            Ok(c) => Ok(cluster_observed(Some(&c))),
            Err(e) if is_not_found(&e) => Ok(Observed::Absent),
            Err(e) => Err(classify(e, &what)),
        }
    }
}

/// A 404 on creating a Cluster means the API server has no such kind: the
/// cluster has no KubeBlocks, which no retry fixes.
fn missing_kubeblocks(e: DriverError) -> DriverError {
    match e {
        DriverError::Transient(msg) if msg.contains(" 404 ") => DriverError::permanent(format!(
            "{msg} — is KubeBlocks installed on this cluster? (apps.kubeblocks.io/v1alpha1 Cluster)"
        )),
        other => other,
    }
}

#[async_trait]
impl DatabaseDriver for K8sCluster {
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let spec = DatabaseSpec {
            resource: self.scoped(&spec.resource),
            ..spec.clone()
        };
        let DatabaseObjects {
            service_account,
            role,
            role_binding,
            cluster,
        } = database_objects::database_objects(&spec, self.settings());
        // The identity first: the cluster's pods run as this account.
        self.create_or_adopt(&service_account, "service account")
            .await?;
        // Applied, not adopted: a role made by an older Kiln with broader
        // rules is cut down to today's.
        self.apply(&role, "role").await?;
        self.create_or_adopt(&role_binding, "role binding").await?;
        let name = database_objects::cluster_name(&spec.resource);
        let what = format!("creating database cluster {name}");
        match self
            .bounded(
                &what,
                self.clusters().create(&PostParams::default(), &cluster),
            )
            .await
        {
            Ok(c) => Ok(cluster_observed(Some(&c))),
            Err(e) if is_already_exists(&e) => {
                self.scale_cluster(&spec, self.settings().db_replicas).await
            }
            Err(e) => Err(missing_kubeblocks(classify(e, &what))),
        }
    }

    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let spec = DatabaseSpec {
            resource: self.scoped(&spec.resource),
            ..spec.clone()
        };
        self.scale_cluster(&spec, 0).await
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        let r = self.scoped(r);
        let name = database_objects::cluster_name(&r);
        // The cluster first: its pods use the account until they are gone.
        let what = format!("deleting database cluster {name}");
        match self.bounded(&what, self.clusters().get_opt(&name)).await {
            Ok(Some(c)) => {
                let deleting = c.metadata.deletion_timestamp.is_some()
                    || c.data["status"]["phase"] == "Deleting";
                if !deleting {
                    self.delete_quietly(&self.clusters(), &name, &what).await?;
                }
            }
            Ok(None) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(classify(e, &what)),
        }
        let account = database_objects::cluster_name(&r);
        self.delete_quietly(
            &self.api::<RoleBinding>(),
            &account,
            "deleting the role binding",
        )
        .await?;
        self.delete_quietly(&self.api::<Role>(), &account, "deleting the role")
            .await?;
        self.delete_quietly(
            &self.api::<ServiceAccount>(),
            &account,
            "deleting the service account",
        )
        .await
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let by_name = self.database_clusters().await?;
        Ok(rs
            .iter()
            .map(|r| {
                let r = self.scoped(r);
                // A pooled database not yet labelled claimed is not the
                // project's yet, however it runs: its claim (the ensure
                // that lets the project's sandboxes in) has not happened.
                let c = by_name
                    .get(&database_objects::cluster_name(&r))
                    .filter(|c| !super::pool_objects::is_unclaimed_meta(&c.metadata));
                (r.resource_name.clone(), cluster_observed(c))
            })
            .collect())
    }

    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        let r = self.scoped(&spec.resource);
        let name = database_objects::credential_secret_name(&r);
        let what = format!("reading secret {name}");
        match self
            .bounded(&what, self.api::<Secret>().get_opt(&name))
            .await
        {
            // KubeBlocks creates the `postgres` database only; the seed used
            // the cluster's name, which does not exist on a fresh cluster.
            Ok(Some(secret)) => Ok(credentials_from_secret(&secret, "postgres")),
            Ok(None) => Ok(None),
            Err(e) => Err(classify(e, &what)),
        }
    }
}
