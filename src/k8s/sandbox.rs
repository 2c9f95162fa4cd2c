//! Sandboxes on Kubernetes: a StatefulSet (stop = 0 replicas, the home
//! volume kept), its Service, an Ingress for the app port, and a Secret for
//! the secret part of the environment. Every step is idempotent: an object
//! that exists is adopted and brought to the desired shape; one that is gone
//! counts as deleted.

use std::collections::HashMap;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::cluster::{K8sCluster, classify, is_already_exists, is_not_found};
use super::objects::{self, RESOURCE_LABEL, SandboxObjects};
use super::status::statefulset_observed;
use crate::driver::{DriverResult, Observed, ResourceRef, SandboxDriver, SandboxSpec};

const KIND: &str = "sandbox";

impl K8sCluster {
    /// Creates the Secret or replaces its data, so a key removed from the
    /// project is removed from the cluster too.
    async fn upsert_env_secret(&self, secret: &Secret) -> DriverResult<()> {
        let api = self.api::<Secret>();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let what = format!("writing secret {name}");
        match self.bounded(&what, api.get_opt(&name)).await {
            Ok(None) => match self
                .bounded(&what, api.create(&PostParams::default(), secret))
                .await
            {
                Ok(_) => Ok(()),
                // Another replica made it between our read and our write.
                Err(e) if is_already_exists(&e) => Err(crate::driver::DriverError::transient(
                    format!("{what}: created concurrently; retrying"),
                )),
                Err(e) => Err(classify(e, &what)),
            },
            Ok(Some(existing)) => {
                let mut desired = secret.clone();
                desired.metadata.resource_version = existing.metadata.resource_version;
                self.bounded(&what, api.replace(&name, &PostParams::default(), &desired))
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(e, &what))
            }
            Err(e) => Err(classify(e, &what)),
        }
    }

    /// Creates the StatefulSet, or brings an existing one to the desired pod
    /// template and replica count. A JSON merge patch replaces lists whole,
    /// so the container's env ends up exactly the desired one.
    async fn apply_statefulset(
        &self,
        sts: &StatefulSet,
        replicas: Option<i32>,
    ) -> DriverResult<StatefulSet> {
        let api = self.api::<StatefulSet>();
        let name = sts.metadata.name.clone().unwrap_or_default();
        let what = format!("creating statefulset {name}");
        let mut wanted = sts.clone();
        if let (Some(n), Some(spec)) = (replicas, wanted.spec.as_mut()) {
            spec.replicas = Some(n);
        }
        if replicas.is_some() {
            match self
                .bounded(&what, api.create(&PostParams::default(), &wanted))
                .await
            {
                Ok(created) => return Ok(created),
                Err(e) if is_already_exists(&e) => {}
                Err(e) => return Err(classify(e, &what)),
            }
        }
        let template = wanted.spec.as_ref().map(|s| &s.template);
        let mut spec = json!({ "template": template });
        if let Some(n) = replicas {
            spec["replicas"] = json!(n);
        }
        let patch = json!({
            "metadata": { "labels": wanted.metadata.labels },
            "spec": spec,
        });
        let what = format!("updating statefulset {name}");
        self.bounded(
            &what,
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map_err(|e| classify(e, &what))
    }

    pub(crate) async fn create_or_adopt<K>(&self, obj: &K, kind: &str) -> DriverResult<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let what = format!("creating {kind} {name}");
        match self
            .bounded(&what, self.api::<K>().create(&PostParams::default(), obj))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) => Err(classify(e, &what)),
        }
    }

    /// Ingresses are adopted and then patched: the domain or TLS secret in
    /// the settings may have changed since the object was made.
    pub(crate) async fn apply_ingress(&self, ingress: &Ingress) -> DriverResult<()> {
        let api = self.api::<Ingress>();
        let name = ingress.metadata.name.clone().unwrap_or_default();
        let what = format!("creating ingress {name}");
        match self
            .bounded(&what, api.create(&PostParams::default(), ingress))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_already_exists(&e) => {
                let patch = json!({ "metadata": { "labels": ingress.metadata.labels }, "spec": ingress.spec });
                let what = format!("updating ingress {name}");
                self.bounded(
                    &what,
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
                )
                .await
                .map(|_| ())
                .map_err(|e| classify(e, &what))
            }
            Err(e) => Err(classify(e, &what)),
        }
    }

    /// The namespace's StatefulSets that match a label selector.
    pub(crate) async fn statefulsets(
        &self,
        selector: &str,
        what: &str,
    ) -> DriverResult<Vec<StatefulSet>> {
        self.bounded(
            what,
            self.api::<StatefulSet>()
                .list(&ListParams::default().labels(selector)),
        )
        .await
        .map(|list| list.items)
        .map_err(|e| classify(e, what))
    }

    /// Pods of every sandbox in the namespace, by resource name.
    async fn sandbox_pods(&self) -> DriverResult<HashMap<String, Vec<Pod>>> {
        let what = "listing sandbox pods";
        let pods = self
            .bounded(
                what,
                self.api::<Pod>()
                    .list(&ListParams::default().labels(&objects::selector(KIND))),
            )
            .await
            .map_err(|e| classify(e, what))?;
        let mut by_resource: HashMap<String, Vec<Pod>> = HashMap::new();
        for pod in pods.items {
            if let Some(r) = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(RESOURCE_LABEL))
            {
                by_resource.entry(r.clone()).or_default().push(pod);
            }
        }
        Ok(by_resource)
    }
}

#[async_trait]
impl SandboxDriver for K8sCluster {
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        let spec = SandboxSpec {
            resource: self.scoped(&spec.resource),
            ..spec.clone()
        };
        let SandboxObjects {
            statefulset,
            service,
            ingress,
            env_secret,
        } = objects::sandbox_objects(&spec, self.settings());
        // The Secret first: a pod that starts before it exists fails with
        // CreateContainerConfigError.
        self.upsert_env_secret(&env_secret).await?;
        let sts = self.apply_statefulset(&statefulset, Some(1)).await?;
        self.create_or_adopt(&service, "service").await?;
        if let Some(ingress) = &ingress {
            self.apply_ingress(ingress).await?;
        }
        Ok(statefulset_observed(Some(&sts), &[]))
    }

    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed> {
        let r = self.scoped(r);
        let name = objects::statefulset_name(&r);
        let what = format!("scaling statefulset {name} to 0");
        let patch = json!({ "spec": { "replicas": 0 } });
        match self
            .bounded(
                &what,
                self.api::<StatefulSet>().patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                ),
            )
            .await
        {
            Ok(sts) => Ok(statefulset_observed(Some(&sts), &[])),
            Err(e) if is_not_found(&e) => Ok(Observed::Absent),
            Err(e) => Err(classify(e, &what)),
        }
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        let r = self.scoped(r);
        // The StatefulSet first, so nothing recreates the pod (and with it a
        // claim) while the rest goes; the claim last, once nothing mounts it.
        self.delete_quietly(
            &self.api::<StatefulSet>(),
            &objects::statefulset_name(&r),
            "deleting the statefulset",
        )
        .await?;
        self.delete_quietly(
            &self.api::<Ingress>(),
            &objects::ingress_name(&r),
            "deleting the ingress",
        )
        .await?;
        self.delete_quietly(
            &self.api::<Service>(),
            &objects::service_name(&r),
            "deleting the service",
        )
        .await?;
        self.delete_quietly(
            &self.api::<Secret>(),
            &objects::env_secret_name(&r),
            "deleting the env secret",
        )
        .await?;
        self.delete_quietly(
            &self.api::<PersistentVolumeClaim>(),
            &objects::home_claim_name(&r),
            "deleting the home volume claim",
        )
        .await
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        // Two lists for the whole namespace, however many sandboxes.
        let sets = self
            .statefulsets(&objects::selector(KIND), "listing sandboxes")
            .await?;
        let pods = self.sandbox_pods().await?;
        let by_name: HashMap<String, &StatefulSet> = sets
            .iter()
            .filter_map(|s| s.metadata.name.clone().map(|n| (n, s)))
            .collect();
        Ok(rs
            .iter()
            .map(|r| {
                let r = self.scoped(r);
                // A pooled sandbox not yet labelled claimed is not the
                // project's yet, however ready its pod: its claim (adopt)
                // has not opened the project's session in it.
                let sts = by_name
                    .get(&objects::statefulset_name(&r))
                    .copied()
                    .filter(|s| !super::pool_objects::is_unclaimed(s));
                let pods = pods.get(&r.resource_name).map(Vec::as_slice).unwrap_or(&[]);
                (r.resource_name.clone(), statefulset_observed(sts, pods))
            })
            .collect())
    }

    async fn sync_env(&self, spec: &SandboxSpec) -> DriverResult<()> {
        let spec = SandboxSpec {
            resource: self.scoped(&spec.resource),
            ..spec.clone()
        };
        let objects = objects::sandbox_objects(&spec, self.settings());
        self.upsert_env_secret(&objects.env_secret).await?;
        self.apply_statefulset(&objects.statefulset, None).await?;
        Ok(())
    }
}
