//! What the warm pool of sandboxes on the server's cluster is made of, and
//! what a claim changes (issue 23). Pure: tested without a cluster; the
//! calls that apply them are in `k8s::pool`.
//!
//! **Where pooled sandboxes live.** A pod cannot move between namespaces,
//! so a pooled sandbox runs in the pool's namespace (`kubernetes.
//! pool_namespace`) from its start to its deletion, claimed or not. That
//! namespace gets the same three NetworkPolicies as a tenant's (default
//! deny; sandboxes out to the internet and DNS only, in from the ingress
//! controller on the app port), so two claimed sandboxes of different
//! tenants side by side can no more reach each other than two sandboxes in
//! two tenants' namespaces can. A claim adds one policy on each side so
//! that its sandbox, and no other pod, reaches its tenant's databases.
//!
//! **A claim without a restart.** A pod reads its environment at start and
//! a change to its StatefulSet's pod template rolls it, so a claim touches
//! neither: the project's environment goes in through one exec of
//! `kiln-entrypoint claim` with the environment on stdin (exec commands
//! are logged by the API server; stdin is not), which keeps it in the home
//! volume and opens the default session with it. Only metadata changes (the
//! StatefulSet's labels). A claimed sandbox is restarted from the
//! project's own pod template the next time it is started after a stop.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{EnvVar, ExecAction, Service};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use uuid::Uuid;

use super::network_policy::DATABASE_PORT;
use super::objects::{self, CONTAINER, MANAGED_BY, PROJECT_LABEL, RESOURCE_LABEL};
use super::settings::K8sSettings;
use crate::driver::{DriverError, ResourceRef, SandboxSpec};

/// On a pooled sandbox's StatefulSet: `ready` until claimed, then `claimed`.
pub const POOL_LABEL: &str = "kiln.dev/pool";
pub const POOL_UNCLAIMED: &str = "ready";
pub const POOL_CLAIMED: &str = "claimed";
/// On a claimed sandbox's StatefulSet: the tenant that claimed it.
pub const TENANT_LABEL: &str = "kiln.dev/tenant-id";
/// On a pooled pod template: it starts without a project (see the runtime
/// image's entrypoint).
pub const POOLED_ANNOTATION: &str = "kiln.dev/pooled";
/// The entrypoint's variable for a pooled start.
pub const POOLED_ENV: &str = "KILN_POOLED";
/// The runtime image's entrypoint on the PATH.
pub const ENTRYPOINT: &str = "kiln-entrypoint";
/// First line of a claim file, then the keys it sets.
pub const CLAIM_HEADER: &str = "# kiln-claim keys: ";

/// A pooled sandbox as the cluster knows it: in the pool's namespace.
pub fn pooled_ref(name: &str, s: &K8sSettings) -> ResourceRef {
    ResourceRef {
        resource_name: name.to_string(),
        namespace: s.pool_namespace.clone(),
        project_slug: String::new(),
        owner: Uuid::nil(),
    }
}

/// The spec a pooled sandbox is made from: no project, no environment, the
/// server's image and sizes.
fn pooled_spec(r: &ResourceRef) -> SandboxSpec {
    SandboxSpec {
        resource: r.clone(),
        env: Vec::new(),
        secret_keys: Default::default(),
        repo: None,
        command: None,
        setup: None,
        sizing: Default::default(),
    }
}

/// Whether a project's sandbox can be the pooled one as it runs: nothing in
/// its spec needs a pod other than the pooled pod (a repository or a setup
/// script runs in init containers before the start; a template's image
/// and sizes are the pod's). Otherwise its claim is started from the
/// project's own template, which restarts the pod.
pub fn fits_pooled(spec: &SandboxSpec) -> bool {
    spec.repo.is_none()
        && spec.setup.is_none()
        && spec.sizing.image.is_none()
        && spec.sizing.cpu.is_none()
        && spec.sizing.memory.is_none()
}

/// The StatefulSet and Service of a pooled sandbox: a plain sandbox's, with
/// the entrypoint told to wait for a claim and the readiness probe that
/// says so, and labelled unclaimed.
pub fn pooled_objects(name: &str, s: &K8sSettings) -> (StatefulSet, Service) {
    let r = pooled_ref(name, s);
    let objects = objects::sandbox_objects(&pooled_spec(&r), s);
    let mut sts = objects.statefulset;
    sts.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POOL_LABEL.into(), POOL_UNCLAIMED.into());
    if let Some(spec) = sts.spec.as_mut() {
        let template = &mut spec.template;
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(POOLED_ANNOTATION.into(), "true".into());
        if let Some(pod) = template.spec.as_mut() {
            for c in pod.containers.iter_mut().filter(|c| c.name == CONTAINER) {
                c.env.get_or_insert_with(Vec::new).push(EnvVar {
                    name: POOLED_ENV.into(),
                    value: Some("1".into()),
                    ..Default::default()
                });
                if let Some(probe) = c.readiness_probe.as_mut() {
                    probe.exec = Some(ExecAction {
                        command: Some(vec![ENTRYPOINT.into(), "ready".into()]),
                    });
                }
            }
        }
    }
    (sts, objects.service)
}

/// Whether a StatefulSet still runs the pooled pod template (claimed or
/// not): its pod started without a project.
pub fn runs_pooled_template(sts: &StatefulSet) -> bool {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(POOLED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Whether a pooled StatefulSet is still unclaimed.
pub fn is_unclaimed(sts: &StatefulSet) -> bool {
    is_unclaimed_meta(&sts.metadata)
}

/// Whether an object's labels say it is pooled and still unclaimed.
pub fn is_unclaimed_meta(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(POOL_LABEL))
        .is_some_and(|v| v == POOL_UNCLAIMED)
}

/// The metadata labels a pooled database's cluster gets once made.
pub fn unclaimed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(POOL_LABEL.into(), POOL_UNCLAIMED.into())])
}

/// The metadata labels of a claimed sandbox's StatefulSet (merged over its
/// pooled ones: only metadata, so the pod is not touched).
pub fn claimed_labels(spec: &SandboxSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PROJECT_LABEL.into(), spec.resource.project_slug.clone()),
        (POOL_LABEL.into(), POOL_CLAIMED.into()),
        (TENANT_LABEL.into(), spec.resource.owner.to_string()),
    ])
}

/// The name of a claim's policies (one in each namespace).
pub fn claim_policy_name(r: &ResourceRef) -> String {
    format!("kiln-claim-{}", objects::object_base_name(r))
}

fn policy_meta(name: String, namespace: &str, r: &ResourceRef) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (RESOURCE_LABEL.to_string(), r.resource_name.clone()),
        ])),
        ..Default::default()
    }
}

fn namespace_peer(namespace: &str, pods: BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                namespace.to_string(),
            )])),
            match_expressions: None,
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(pods),
            match_expressions: None,
        }),
        ip_block: None,
    }
}

fn postgres_port() -> Vec<NetworkPolicyPort> {
    vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(DATABASE_PORT)),
        protocol: Some("TCP".into()),
        end_port: None,
    }]
}

/// What a claimed sandbox `r` (in `pool_ns`) is let through to, and by
/// whom: out of the pool's namespace to its tenant's database pods on the
/// PostgreSQL port (`.0`, in the pool's namespace, for that pod only), and
/// into them from that pod alone (`.1`, in the tenant's namespace). The
/// pod is picked by its resource label, which is in its pod template and so
/// survives a restart; nothing else in the pool's namespace has it.
pub fn claim_policies(
    r: &ResourceRef,
    pool_ns: &str,
    tenant_ns: &str,
) -> (NetworkPolicy, NetworkPolicy) {
    let name = claim_policy_name(r);
    let sandbox_pod = BTreeMap::from([(RESOURCE_LABEL.to_string(), r.resource_name.clone())]);
    // KubeBlocks makes the database pods: they carry its labels, not Kiln's.
    let database_pods = super::network_policy::database_pods()
        .match_labels
        .unwrap_or_default();
    let egress = NetworkPolicy {
        metadata: policy_meta(name.clone(), pool_ns, r),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(sandbox_pod.clone()),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![namespace_peer(tenant_ns, database_pods.clone())]),
                ports: Some(postgres_port()),
            }]),
            ingress: None,
        }),
    };
    let ingress = NetworkPolicy {
        metadata: policy_meta(name, tenant_ns, r),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(database_pods),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![namespace_peer(pool_ns, sandbox_pod)]),
                ports: Some(postgres_port()),
            }]),
            egress: None,
        }),
    };
    (egress, ingress)
}

/// The label KubeBlocks puts on every pod of a database cluster (its
/// replicas and the jobs it runs beside them) with the cluster's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// A pooled database as the cluster knows it: in the pool's namespace.
pub fn pooled_database_ref(name: &str, s: &K8sSettings) -> ResourceRef {
    pooled_ref(name, s)
}

/// The pods of one database cluster.
fn instance_pods(r: &ResourceRef) -> BTreeMap<String, String> {
    let mut pods = super::network_policy::database_pods()
        .match_labels
        .unwrap_or_default();
    pods.insert(
        INSTANCE_LABEL.into(),
        super::database_objects::cluster_name(r),
    );
    pods
}

/// The name of a pooled database's own policy.
pub fn database_policy_name(r: &ResourceRef) -> String {
    format!("kiln-db-{}", super::database_objects::cluster_name(r))
}

/// The name of a claimed database's policies (one in each namespace).
pub fn database_claim_policy_name(r: &ResourceRef) -> String {
    format!("kiln-claim-{}", super::database_objects::cluster_name(r))
}

fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}

/// A pooled database's own policy, made with it: its pods let each other
/// in (replication, KubeBlocks' jobs), and nothing else of the pool's
/// namespace; the KubeBlocks operator comes in through the namespace's
/// database policy.
pub fn pooled_database_policy(r: &ResourceRef, pool_ns: &str) -> NetworkPolicy {
    let pods = instance_pods(r);
    NetworkPolicy {
        metadata: policy_meta(database_policy_name(r), pool_ns, r),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(pods.clone())),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(selector(pods)),
                    namespace_selector: None,
                    ip_block: None,
                }]),
                ports: None,
            }]),
            egress: None,
        }),
    }
}

/// What a database claimed from the pool (`r`, in `pool_ns`) lets in, on
/// the PostgreSQL port: its tenant's sandboxes in their namespace, and its
/// project's sandbox when that one was claimed from the pool too (`.0`, in
/// the pool's namespace); and the way out to it from the tenant's
/// sandboxes (`.1`, in the tenant's namespace, whose own sandbox policy
/// lets them reach their own namespace's databases only).
pub fn database_claim_policies(
    r: &ResourceRef,
    pool_ns: &str,
    tenant_ns: &str,
    sandbox: Option<&str>,
) -> (NetworkPolicy, NetworkPolicy) {
    let name = database_claim_policy_name(r);
    let pods = instance_pods(r);
    let sandboxes = BTreeMap::from([(
        super::objects::KIND_LABEL.to_string(),
        super::objects::SANDBOX_KIND.to_string(),
    )]);
    let mut from = vec![namespace_peer(tenant_ns, sandboxes.clone())];
    if let Some(sandbox) = sandbox.filter(|n| crate::model::naming::is_pooled_sandbox_name(n)) {
        from.push(NetworkPolicyPeer {
            pod_selector: Some(selector(BTreeMap::from([(
                RESOURCE_LABEL.to_string(),
                sandbox.to_string(),
            )]))),
            namespace_selector: None,
            ip_block: None,
        });
    }
    let ingress = NetworkPolicy {
        metadata: policy_meta(name.clone(), pool_ns, r),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(pods.clone())),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(postgres_port()),
            }]),
            egress: None,
        }),
    };
    let egress = NetworkPolicy {
        metadata: policy_meta(name, tenant_ns, r),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(sandboxes)),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![namespace_peer(pool_ns, pods)]),
                ports: Some(postgres_port()),
            }]),
            ingress: None,
        }),
    };
    (ingress, egress)
}

/// The metadata labels of a claimed database's cluster.
pub fn claimed_database_labels(r: &ResourceRef) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PROJECT_LABEL.into(), r.project_slug.clone()),
        (POOL_LABEL.into(), POOL_CLAIMED.into()),
        (TENANT_LABEL.into(), r.owner.to_string()),
    ])
}

/// The claim file `kiln-entrypoint claim` reads on stdin: a header naming
/// the keys, then `export KEY='value'` per variable, single-quoted so the
/// shell takes every value byte for byte. A key that is not a shell name,
/// or a value with a NUL (no environment can hold one), is refused.
pub fn claim_env_script(env: &[(String, String)]) -> Result<String, DriverError> {
    let mut sorted: Vec<&(String, String)> = env.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in &sorted {
        if !is_shell_name(key) {
            return Err(DriverError::permanent(format!(
                "the variable name {key:?} cannot be passed to a pooled sandbox"
            )));
        }
        if value.contains('\0') {
            return Err(DriverError::permanent(format!(
                "the value of {key} holds a NUL byte"
            )));
        }
    }
    let keys: Vec<&str> = sorted.iter().map(|(k, _)| k.as_str()).collect();
    let mut out = format!("{CLAIM_HEADER}{}\n", keys.join(" "));
    for (key, value) in sorted {
        out.push_str(&format!(
            "export {key}='{}'\n",
            value.replace('\'', r"'\''")
        ));
    }
    Ok(out)
}

fn is_shell_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::objects::{sandbox_objects, statefulset_name};

    fn settings() -> K8sSettings {
        K8sSettings::default()
    }

    fn project_spec(owner: Uuid) -> SandboxSpec {
        SandboxSpec {
            resource: ResourceRef {
                resource_name: "sb-abcdefghijklm".into(),
                namespace: "kiln-alice".into(),
                project_slug: "blog".into(),
                owner,
            },
            env: vec![
                ("PROJECT_NAME".into(), "blog".into()),
                ("DATABASE_URL".into(), "postgres://u:p@h/db".into()),
            ],
            secret_keys: ["DATABASE_URL".to_string()].into(),
            repo: None,
            command: None,
            setup: None,
            sizing: Default::default(),
        }
    }

    #[test]
    fn a_pooled_sandbox_is_a_plain_one_waiting_for_its_claim_in_the_pool_namespace() {
        let s = settings();
        let (sts, svc) = pooled_objects("sb-abcdefghijklm", &s);
        assert_eq!(sts.metadata.namespace.as_deref(), Some("kiln-pool"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("kiln-pool"));
        assert!(runs_pooled_template(&sts) && is_unclaimed(&sts));
        let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let env: Vec<(&str, Option<&str>)> = c
            .env
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v.value.as_deref()))
            .collect();
        assert_eq!(env, [(POOLED_ENV, Some("1"))], "no tenant variable at all");
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .exec
                .as_ref()
                .unwrap()
                .command,
            Some(vec![ENTRYPOINT.to_string(), "ready".to_string()])
        );
        assert!(pod.init_containers.is_none(), "nothing to clone or set up");
        // The same confinement as a project's sandbox.
        let plain = sandbox_objects(&project_spec(Uuid::nil()), &s).statefulset;
        let plain_pod = plain.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.security_context, plain_pod.security_context);
        assert_eq!(c.security_context, plain_pod.containers[0].security_context);
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(c.resources, plain_pod.containers[0].resources);
    }

    #[test]
    fn only_a_spec_without_repository_setup_image_or_size_fits_the_pooled_pod() {
        let plain = project_spec(Uuid::nil());
        assert!(fits_pooled(&plain));
        let mut with_setup = plain.clone();
        with_setup.setup = Some("make".into());
        let mut with_image = plain.clone();
        with_image.sizing.image = Some("node:22".into());
        let mut with_cpu = plain.clone();
        with_cpu.sizing.cpu = Some("2".into());
        let mut with_repo = plain.clone();
        with_repo.repo = Some(crate::driver::RepoSource {
            url: "https://example.com/r.git".into(),
            branch: None,
            token: None,
        });
        for s in [with_setup, with_image, with_cpu, with_repo] {
            assert!(!fits_pooled(&s), "{s:?}");
        }
    }

    #[test]
    fn a_claim_labels_the_tenant_and_project_on_metadata_only() {
        let owner = Uuid::from_u128(7);
        let labels = claimed_labels(&project_spec(owner));
        assert_eq!(labels[PROJECT_LABEL], "blog");
        assert_eq!(labels[POOL_LABEL], POOL_CLAIMED);
        assert_eq!(labels[TENANT_LABEL], owner.to_string());
        assert!(
            !labels.contains_key(RESOURCE_LABEL),
            "the selector's label never changes"
        );
    }

    #[test]
    fn a_claims_policies_open_only_its_pod_to_its_tenants_databases() {
        let spec = project_spec(Uuid::nil());
        let (egress, ingress) = claim_policies(&spec.resource, "kiln-pool", "kiln-alice");
        assert_eq!(egress.metadata.namespace.as_deref(), Some("kiln-pool"));
        assert_eq!(ingress.metadata.namespace.as_deref(), Some("kiln-alice"));
        let e = egress.spec.unwrap();
        assert_eq!(
            e.pod_selector.unwrap().match_labels.unwrap()[RESOURCE_LABEL],
            "sb-abcdefghijklm"
        );
        let to = &e.egress.unwrap()[0];
        let peer = &to.to.as_ref().unwrap()[0];
        assert_eq!(
            peer.namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "kiln-alice"
        );
        // KubeBlocks makes the database pods: they carry its labels.
        assert_eq!(
            peer.pod_selector,
            Some(crate::k8s::network_policy::database_pods())
        );
        assert_eq!(
            ingress.spec.as_ref().unwrap().pod_selector,
            Some(crate::k8s::network_policy::database_pods())
        );
        assert_eq!(
            to.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(DATABASE_PORT))
        );
        let i = ingress.spec.unwrap();
        let from = &i.ingress.unwrap()[0].from.clone().unwrap()[0];
        assert_eq!(
            from.namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "kiln-pool"
        );
        assert_eq!(
            from.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()[RESOURCE_LABEL],
            "sb-abcdefghijklm"
        );
        assert_eq!(
            statefulset_name(&spec.resource),
            "sb-abcdefghijklm",
            "a pooled name is its own object name"
        );
    }

    #[test]
    fn a_claimed_pooled_database_lets_in_its_tenants_sandboxes_and_its_projects_pooled_one() {
        let s = settings();
        let db = ResourceRef {
            owner: Uuid::from_u128(9),
            project_slug: "blog".into(),
            ..pooled_database_ref("pool-abcdefghijklm", &s)
        };
        let (ingress, egress) =
            database_claim_policies(&db, "kiln-pool", "kiln-alice", Some("sb-abcdefghijklm"));
        let i = serde_json::to_value(&ingress).unwrap();
        let e = serde_json::to_value(&egress).unwrap();
        assert_eq!(i["metadata"]["namespace"], "kiln-pool");
        assert_eq!(e["metadata"]["namespace"], "kiln-alice");
        let cluster = crate::k8s::database_objects::cluster_name(&db);
        assert_eq!(
            i["spec"]["podSelector"]["matchLabels"][INSTANCE_LABEL],
            cluster.as_str(),
            "this database's pods only"
        );
        let from = &i["spec"]["ingress"][0]["from"];
        assert_eq!(
            from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "kiln-alice"
        );
        assert_eq!(
            from[0]["podSelector"]["matchLabels"]["kiln.dev/kind"],
            "sandbox"
        );
        assert_eq!(
            from[1],
            serde_json::json!({ "podSelector": { "matchLabels": {
                RESOURCE_LABEL: "sb-abcdefghijklm" } } }),
            "the project's pooled sandbox, in the pool's namespace"
        );
        assert_eq!(i["spec"]["ingress"][0]["ports"][0]["port"], DATABASE_PORT);
        assert_eq!(
            e["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"][INSTANCE_LABEL],
            cluster.as_str()
        );
        // A sandbox of the tenant's own namespace: no pool peer.
        let (ingress, _) = database_claim_policies(
            &db,
            "kiln-pool",
            "kiln-alice",
            Some("blog-agentruntime-abcdef"),
        );
        let from = serde_json::to_value(&ingress).unwrap()["spec"]["ingress"][0]["from"].clone();
        assert_eq!(from.as_array().unwrap().len(), 1, "{from}");
        // Its own policy lets its own pods in, nothing else.
        let own = serde_json::to_value(pooled_database_policy(&db, "kiln-pool")).unwrap();
        assert_eq!(
            own["spec"]["ingress"][0]["from"][0]["podSelector"],
            own["spec"]["podSelector"]
        );
        assert!(own["spec"]["ingress"][0]["from"][0]["namespaceSelector"].is_null());
    }

    #[test]
    fn the_claim_script_quotes_every_value_and_refuses_what_a_shell_cannot_hold() {
        let env = vec![
            ("Z_LAST".to_string(), "it's $HOME `x`\nline2".to_string()),
            ("A_FIRST".to_string(), "plain".to_string()),
        ];
        let script = claim_env_script(&env).unwrap();
        assert_eq!(
            script,
            "# kiln-claim keys: A_FIRST Z_LAST\nexport A_FIRST='plain'\nexport Z_LAST='it'\\''s $HOME `x`\nline2'\n"
        );
        // What a shell makes of it is the values, byte for byte.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{script}printf '%s|%s' \"$A_FIRST\" \"$Z_LAST\""))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "plain|it's $HOME `x`\nline2"
        );
        for (k, v) in [
            ("1X", "v"),
            ("A-B", "v"),
            ("", "v"),
            ("A;rm", "v"),
            ("OK", "a\0b"),
        ] {
            assert!(
                claim_env_script(&[(k.to_string(), v.to_string())]).is_err(),
                "{k:?}={v:?}"
            );
        }
    }
}
