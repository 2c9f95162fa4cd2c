//! The namespace a tenant gets on the server's cluster, created on first use.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::driver::DriverResult;
use crate::k8s::cluster::K8sCluster;

/// The namespace a user gets on the server's cluster.
pub fn tenant_namespace(username: &str) -> String {
    format!("kiln-{}", username.to_ascii_lowercase())
}

pub(super) async fn ensure_namespace(cluster: &K8sCluster, username: &str) -> DriverResult<()> {
    let ns = cluster.namespace();
    let api: Api<Namespace> = Api::all(cluster.client().clone());
    let labels = [
        ("app.kubernetes.io/managed-by", "kiln"),
        ("kiln.dev/tenant", username),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let what = format!("creating namespace {ns}");
    match cluster
        .bounded(&what, api.create(&PostParams::default(), &object))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::k8s::cluster::is_already_exists(&e) => Ok(()),
        Err(e) => Err(crate::k8s::cluster::classify(e, &what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_get_their_own_namespace() {
        assert_eq!(tenant_namespace("alice"), "kiln-alice");
        assert_ne!(tenant_namespace("alice"), tenant_namespace("bob"));
    }
}
