//! The objects a database wants (DESIGN §6): a KubeBlocks PostgreSQL
//! `Cluster` (`apps.kubeblocks.io/v1alpha1`) and the service account, role
//! and binding its pods run as. Pure: the same spec and settings always give
//! the same objects.
//!
//! Two deliberate departures from the seed: the role grants only what the
//! PostgreSQL pods' own agents use (see [`role_rules`]; the seed granted
//! every verb on every resource), and the Cluster's name is kept short because KubeBlocks builds
//! longer names (pods, services, secrets) from it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use super::objects::{DATABASE_KIND, fnv1a64, labels};
use super::settings::{K8sSettings, is_dns1035_label};
use crate::driver::{DatabaseSpec, ResourceRef};

/// KubeBlocks' API group.
pub const KUBEBLOCKS_GROUP: &str = "apps.kubeblocks.io";
/// The single component of the PostgreSQL cluster definition.
pub const COMPONENT: &str = "postgresql";
/// Longest cluster name: KubeBlocks derives pod, service and secret names
/// from it, and some of those carry long suffixes of their own.
pub const MAX_CLUSTER_NAME_LEN: usize = 16;

pub struct DatabaseObjects {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub cluster: DynamicObject,
}

/// `apps.kubeblocks.io/v1alpha1` `Cluster`.
pub fn cluster_api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(KUBEBLOCKS_GROUP, "v1alpha1", "Cluster"),
        "clusters",
    )
}

/// The Cluster's name, also the name of its service account, role and
/// binding: the resource name when it fits, else its first letters and a
/// hash of the whole, so two resources never share a cluster.
pub fn cluster_name(r: &ResourceRef) -> String {
    let name = &r.resource_name;
    if name.len() <= MAX_CLUSTER_NAME_LEN && is_dns1035_label(name) {
        return name.clone();
    }
    let head: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(9)
        .collect();
    let head = if head.starts_with(|c: char| c.is_ascii_lowercase()) {
        head
    } else {
        format!("d{}", &head[..head.len().min(8)])
    };
    let hash = format!("{:016x}", fnv1a64(name.as_bytes()));
    format!("{head}-{}", &hash[..6])
}

/// The Secret KubeBlocks writes with the cluster's connection details.
pub fn credential_secret_name(r: &ResourceRef) -> String {
    format!("{}-conn-credential", cluster_name(r))
}

fn meta(r: &ResourceRef) -> ObjectMeta {
    ObjectMeta {
        name: Some(cluster_name(r)),
        namespace: Some(r.namespace.clone()),
        labels: Some(labels(r, DATABASE_KIND)),
        ..ObjectMeta::default()
    }
}

/// What the PostgreSQL pods' own agents do with the API, and nothing more.
///
/// Based on KubeBlocks' chart (`deploy/helm/templates/rbac/cluster_pod_required_role.yaml`
/// in apecloud/kubeblocks: `kubeblocks-patroni-pod-role` and
/// `kubeblocks-lorry-pod-role`, the roles KubeBlocks binds to the pods it
/// makes itself) and on the `postgresql` cluster definition of
/// apecloud/kubeblocks-addons, which runs Patroni (Spilo) with
/// `KUBERNETES_USE_CONFIGMAPS=true`:
///
/// - Patroni keeps its leader lock, configuration and sync state in
///   ConfigMaps (create, patch), and so does lorry's store
///   (`pkg/lorry/dcs/k8s.go` in apecloud/kubeblocks: it updates its
///   leader and HA-config maps, and deletes a stale leader map and a
///   finished switchover's); endpoints and a `-config` Service are only
///   for Patroni's endpoints mode, which this cluster definition does not
///   use. The only ConfigMaps in a tenant namespace are its own
///   database's, so these writes reach nothing of anyone else's.
/// - Patroni labels its own pod with its role and keeps its state in the
///   pod's annotations (get, list, watch, patch); it never replaces or
///   creates pods.
/// - The role probe (lorry) reports role changes as events (create only)
///   and reads the pods and its Cluster (get, list; the status too).
fn role_rules() -> Vec<PolicyRule> {
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    };
    vec![
        rule(
            "",
            &["configmaps"],
            &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
        ),
        rule("", &["pods"], &["get", "list", "patch", "watch"]),
        rule("", &["events"], &["create"]),
        rule(KUBEBLOCKS_GROUP, &["clusters"], &["get", "list"]),
        rule(KUBEBLOCKS_GROUP, &["clusters/status"], &["get"]),
    ]
}

/// The cluster's one component with `replicas`; a merge patch must carry it
/// whole, because a merge patch replaces lists rather than merging them.
fn component(spec: &DatabaseSpec, s: &K8sSettings, replicas: i32) -> Value {
    let mut volume_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": s.db_storage_size}},
    });
    if let Some(class) = &s.db_storage_class {
        volume_spec["storageClassName"] = json!(class);
    }
    json!({
        "name": COMPONENT,
        "componentDefRef": COMPONENT,
        "monitor": true,
        "noCreatePDB": false,
        "replicas": replicas,
        "serviceAccountName": cluster_name(&spec.resource),
        "switchPolicy": {"type": "Noop"},
        "resources": {
            "requests": {"cpu": s.db_cpu_request, "memory": s.db_memory_request},
            "limits": {"cpu": s.db_cpu_limit, "memory": s.db_memory_limit},
        },
        "volumeClaimTemplates": [{"name": "data", "spec": volume_spec}],
    })
}

pub fn database_objects(spec: &DatabaseSpec, s: &K8sSettings) -> DatabaseObjects {
    let r = &spec.resource;
    let name = cluster_name(r);
    let service_account = ServiceAccount {
        metadata: meta(r),
        // The pods talk to the API through their own token; nothing else does.
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: meta(r),
        rules: Some(role_rules()),
    };
    let role_binding = RoleBinding {
        metadata: meta(r),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: name.clone(),
            ..Subject::default()
        }]),
    };
    let mut cluster_labels: BTreeMap<String, String> = labels(r, DATABASE_KIND);
    cluster_labels.insert(
        "clusterdefinition.kubeblocks.io/name".into(),
        s.db_cluster_definition.clone(),
    );
    cluster_labels.insert(
        "clusterversion.kubeblocks.io/name".into(),
        s.db_cluster_version.clone(),
    );
    let mut cluster = DynamicObject::new(&name, &cluster_api_resource());
    cluster.metadata.namespace = Some(r.namespace.clone());
    cluster.metadata.labels = Some(cluster_labels);
    cluster.data = json!({
        "spec": {
            "clusterDefinitionRef": s.db_cluster_definition,
            "clusterVersionRef": s.db_cluster_version,
            "terminationPolicy": "Delete",
            "affinity": {
                "podAntiAffinity": "Preferred",
                "tenancy": "SharedNode",
                "topologyKeys": ["kubernetes.io/hostname"],
            },
            "tolerations": [],
            "componentSpecs": [component(spec, s, s.db_replicas)],
        }
    });
    DatabaseObjects {
        service_account,
        role,
        role_binding,
        cluster,
    }
}

/// Merge patch that sets the component's replicas (1 or more = start,
/// 0 = stop; the volume stays).
pub fn cluster_replicas_merge_patch(spec: &DatabaseSpec, s: &K8sSettings, replicas: i32) -> Value {
    json!({"spec": {"componentSpecs": [component(spec, s, replicas)]}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn spec(resource_name: &str) -> DatabaseSpec {
        DatabaseSpec {
            resource: ResourceRef {
                owner: Uuid::nil(),
                namespace: "kiln-alice".into(),
                project_slug: "shop".into(),
                resource_name: resource_name.into(),
            },
            password: "unused".into(),
            sandbox: None,
        }
    }

    #[test]
    fn cluster_names_are_short_valid_and_distinct() {
        assert_eq!(cluster_name(&spec("shop-db-a1b2").resource), "shop-db-a1b2");
        let long = cluster_name(&spec("a-very-long-project-name-db-x1y2").resource);
        let other = cluster_name(&spec("a-very-long-project-name-db-x1y3").resource);
        for n in [&long, &other] {
            assert!(
                n.len() <= MAX_CLUSTER_NAME_LEN && is_dns1035_label(n),
                "{n}"
            );
        }
        assert_ne!(long, other);
        let digit = cluster_name(&spec("9lives-db-0000").resource);
        assert!(is_dns1035_label(&digit), "{digit}");
        assert_eq!(
            credential_secret_name(&spec("shop-db-a1b2").resource),
            "shop-db-a1b2-conn-credential"
        );
    }

    #[test]
    fn the_role_is_least_privilege() {
        let o = database_objects(&spec("shop-db-a1b2"), &K8sSettings::default());
        let rules: Vec<(String, Vec<String>, Vec<String>)> = o
            .role
            .rules
            .unwrap()
            .into_iter()
            .map(|r| {
                let groups = r.api_groups.unwrap();
                assert_eq!(groups.len(), 1);
                assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
                (groups[0].clone(), r.resources.unwrap(), r.verbs)
            })
            .collect();
        let want = |g: &str, res: &[&str], verbs: &[&str]| {
            (
                g.to_string(),
                res.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                verbs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            rules,
            vec![
                want(
                    "",
                    &["configmaps"],
                    &[
                        "create", "delete", "get", "list", "patch", "update", "watch"
                    ]
                ),
                want("", &["pods"], &["get", "list", "patch", "watch"]),
                want("", &["events"], &["create"]),
                want("apps.kubeblocks.io", &["clusters"], &["get", "list"]),
                want("apps.kubeblocks.io", &["clusters/status"], &["get"]),
            ]
        );
        // Nothing beyond the namespace's database: no secrets, no
        // wildcards, no endpoints or services, no pods replaced or deleted.
        for (_, resources, verbs) in &rules {
            for r in resources {
                assert!(
                    !["*", "secrets", "endpoints", "services"].contains(&r.as_str()),
                    "{r}"
                );
            }
            for v in verbs {
                assert!(
                    !["*", "deletecollection", "escalate", "bind", "impersonate"]
                        .contains(&v.as_str()),
                    "{v}"
                );
            }
        }
        assert_eq!(o.role_binding.role_ref.name, "shop-db-a1b2");
        assert_eq!(o.role_binding.subjects.unwrap()[0].name, "shop-db-a1b2");
    }

    #[test]
    fn replicas_patch_carries_the_whole_component() {
        let s = K8sSettings::default();
        let p = cluster_replicas_merge_patch(&spec("shop-db-a1b2"), &s, 0);
        let c = &p["spec"]["componentSpecs"][0];
        assert_eq!(c["replicas"], 0);
        assert_eq!(c["name"], COMPONENT);
        assert_eq!(
            c["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            s.db_storage_size.as_str()
        );
        let created = database_objects(&spec("shop-db-a1b2"), &s).cluster;
        let mut started = created.data["spec"]["componentSpecs"][0].clone();
        started["replicas"] = json!(0);
        assert_eq!(&started, c, "stopping changes only the replicas");
    }
}
