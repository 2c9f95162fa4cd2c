//! The NetworkPolicies of a tenant's namespace on the server's cluster
//! (issue 18 §4). Pure: the same namespace and settings always give the
//! same objects; `isolation.rs` applies them.
//!
//! Three policies, additive as NetworkPolicies are:
//!
//! - [`DEFAULT_DENY`] selects every pod and allows nothing: whatever the
//!   two others do not allow is refused, in and out, for any pod that ever
//!   runs in the namespace.
//! - [`SANDBOX_POLICY`], for sandbox pods: out to the internet (every
//!   address but private, shared, loopback and link-local ranges, so not
//!   the cluster's pods and services, nor the cloud metadata endpoint at
//!   169.254.169.254), to the cluster DNS on 53, and to the tenant's own
//!   database pods on the PostgreSQL port; in from the ingress controller's
//!   namespace on the app port only.
//! - [`DATABASE_POLICY`], for the KubeBlocks database pods: in from the
//!   namespace itself (the tenant's sandboxes, the database's own replicas
//!   and the jobs KubeBlocks runs beside them) and from the KubeBlocks
//!   operator's namespace; out to the namespace itself, the cluster DNS,
//!   and HTTPS on 443/6443, where the API server answers (Patroni keeps its
//!   leader lock in ConfigMaps). The API server's address is not known in
//!   advance, so those two ports stay open to any address: the database's
//!   superuser can reach HTTPS services on them, nothing else.
//!
//! Every tenant namespace denies ingress from other namespaces, so even a
//! port left open on the way out meets a closed door at another tenant.
//!
//! DNS is allowed to the cluster DNS pods (`k8s-app=kube-dns` in
//! `kube-system`, as CoreDNS and kube-dns both run); a cluster whose pods
//! resolve through a node-local cache on a link-local address needs that
//! cache to forward to those pods.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::{APP_PORT, KIND_LABEL, MANAGED_BY, SANDBOX_KIND};
use super::settings::K8sSettings;

pub const DEFAULT_DENY: &str = "kiln-default-deny";
pub const SANDBOX_POLICY: &str = "kiln-sandbox";
pub const DATABASE_POLICY: &str = "kiln-database";

/// The PostgreSQL port of a KubeBlocks cluster's pods (its `tcp-postgresql`).
pub const DATABASE_PORT: i32 = 5432;
/// Where the API server listens: 443 behind the `kubernetes` Service, 6443
/// on the control-plane nodes the Service forwards to.
pub const API_SERVER_PORTS: [i32; 2] = [443, 6443];
pub const DNS_PORT: i32 = 53;

/// Every IPv4 address but these: RFC 1918 private ranges (pod, service and
/// node networks live there), link-local (cloud metadata), shared address
/// space (carrier-grade NAT, some clouds' pod networks) and loopback.
pub const BLOCKED_V4: [&str; 6] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
];
/// Every IPv6 address but unique-local, link-local and loopback.
pub const BLOCKED_V6: [&str; 3] = ["fc00::/7", "fe80::/10", "::1/128"];

/// The label every namespace carries with its own name (Kubernetes 1.21+).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The cluster DNS: CoreDNS and kube-dns both carry `k8s-app=kube-dns`.
const DNS_NAMESPACE: &str = "kube-system";
const DNS_POD_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// Labels KubeBlocks puts on the pods of a cluster's component.
const KUBEBLOCKS_MANAGED: (&str, &str) = ("app.kubernetes.io/managed-by", "kubeblocks");
const KUBEBLOCKS_COMPONENT: &str = "apps.kubeblocks.io/component-name";

/// The namespace's three policies, in the order they are applied.
pub fn namespace_policies(namespace: &str, s: &K8sSettings) -> Vec<NetworkPolicy> {
    vec![
        default_deny(namespace),
        sandbox_policy(namespace, s),
        database_policy(namespace, s),
    ]
}

/// The warm pool's namespace's three policies: a tenant namespace's, but
/// no database pod there lets in the namespace itself, since pooled
/// sandboxes and databases of many tenants live side by side in it. Each
/// pooled database lets in its own pods (`pool_objects::
/// pooled_database_policy`) and, once claimed, its tenant's sandboxes.
pub fn pool_namespace_policies(namespace: &str, s: &K8sSettings) -> Vec<NetworkPolicy> {
    let mut database = database_policy(namespace, s);
    if let Some(spec) = database.spec.as_mut() {
        spec.ingress = Some(vec![NetworkPolicyIngressRule {
            from: Some(vec![namespace_peer(&s.kubeblocks_namespace)]),
            ports: None,
        }]);
    }
    vec![
        default_deny(namespace),
        sandbox_policy(namespace, s),
        database,
    ]
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([(
            MANAGED_BY.0.to_string(),
            MANAGED_BY.1.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }
}

fn both_directions() -> Option<Vec<String>> {
    Some(vec!["Ingress".into(), "Egress".into()])
}

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(number)),
        end_port: None,
    }
}

/// Pods of a namespace, by its name.
fn namespace_peer(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(match_labels(&[(NAMESPACE_NAME_LABEL, name)])),
        ..NetworkPolicyPeer::default()
    }
}

/// Pods of this namespace matching `selector`.
fn pod_peer(selector: LabelSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selector),
        ..NetworkPolicyPeer::default()
    }
}

fn ip_block(cidr: &str, except: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.into(),
            except: Some(except.iter().map(|c| c.to_string()).collect()),
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// DNS lookups, to the cluster DNS pods only (namespace and pod selector in
/// one peer: both must match).
fn dns_egress() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(match_labels(&[(NAMESPACE_NAME_LABEL, DNS_NAMESPACE)])),
            pod_selector: Some(match_labels(&[DNS_POD_LABEL])),
            ip_block: None,
        }]),
        ports: Some(vec![port("UDP", DNS_PORT), port("TCP", DNS_PORT)]),
    }
}

/// The database pods of the namespace: KubeBlocks' PostgreSQL component.
/// (KubeBlocks makes them: they carry its labels, not Kiln's.)
pub(crate) fn database_pods() -> LabelSelector {
    match_labels(&[
        KUBEBLOCKS_MANAGED,
        (KUBEBLOCKS_COMPONENT, super::database_objects::COMPONENT),
    ])
}

fn default_deny(namespace: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(namespace, DEFAULT_DENY),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: both_directions(),
            ingress: None,
            egress: None,
        }),
    }
}

fn sandbox_policy(namespace: &str, s: &K8sSettings) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(namespace, SANDBOX_POLICY),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels(&[(KIND_LABEL, SANDBOX_KIND)])),
            policy_types: both_directions(),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![namespace_peer(&s.ingress_namespace)]),
                ports: Some(vec![port("TCP", APP_PORT)]),
            }]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![
                        ip_block("0.0.0.0/0", &BLOCKED_V4),
                        ip_block("::/0", &BLOCKED_V6),
                    ]),
                    ports: None,
                },
                dns_egress(),
                NetworkPolicyEgressRule {
                    to: Some(vec![pod_peer(database_pods())]),
                    ports: Some(vec![port("TCP", DATABASE_PORT)]),
                },
            ]),
        }),
    }
}

fn database_policy(namespace: &str, s: &K8sSettings) -> NetworkPolicy {
    let this_namespace = || pod_peer(LabelSelector::default());
    NetworkPolicy {
        metadata: meta(namespace, DATABASE_POLICY),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels(&[KUBEBLOCKS_MANAGED])),
            policy_types: both_directions(),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    this_namespace(),
                    namespace_peer(&s.kubeblocks_namespace),
                ]),
                ports: None,
            }]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![this_namespace()]),
                    ports: None,
                },
                dns_egress(),
                NetworkPolicyEgressRule {
                    to: None,
                    ports: Some(API_SERVER_PORTS.map(|p| port("TCP", p)).to_vec()),
                },
            ]),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn policies() -> BTreeMap<String, Value> {
        namespace_policies("kiln-alice", &K8sSettings::default())
            .into_iter()
            .map(|p| {
                assert_eq!(p.metadata.namespace.as_deref(), Some("kiln-alice"));
                (
                    p.metadata.name.clone().unwrap(),
                    serde_json::to_value(&p).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn in_the_pool_namespace_no_database_lets_the_namespace_in() {
        let s = K8sSettings::default();
        let pool = pool_namespace_policies("kiln-pool", &s);
        let tenant = namespace_policies("kiln-pool", &s);
        assert_eq!(
            pool[..2],
            tenant[..2],
            "deny and sandbox policies as a tenant's"
        );
        let db = serde_json::to_value(&pool[2]).unwrap();
        assert_eq!(
            db["spec"]["ingress"],
            json!([{ "from": [{ "namespaceSelector": { "matchLabels": {
                "kubernetes.io/metadata.name": "kb-system" } } }] }])
        );
        assert_eq!(
            db["spec"]["egress"],
            serde_json::to_value(&tenant[2]).unwrap()["spec"]["egress"]
        );
    }

    #[test]
    fn every_pod_is_denied_by_default() {
        let p = &policies()[DEFAULT_DENY];
        assert_eq!(
            p["spec"],
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        );
        assert_eq!(p["kind"], "NetworkPolicy");
        assert_eq!(p["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(
            p["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kiln"
        );
    }

    #[test]
    fn sandboxes_reach_the_internet_dns_and_their_database_only() {
        let p = &policies()[SANDBOX_POLICY];
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"kiln.dev/kind": "sandbox"}})
        );
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(
            p["spec"]["egress"],
            json!([
                {"to": [
                    {"ipBlock": {"cidr": "0.0.0.0/0", "except": [
                        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                        "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"]}},
                    {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10", "::1/128"]}},
                ]},
                {"to": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"to": [{"podSelector": {"matchLabels": {
                    "app.kubernetes.io/managed-by": "kubeblocks",
                    "apps.kubeblocks.io/component-name": "postgresql",
                }}}], "ports": [{"protocol": "TCP", "port": 5432}]},
            ])
        );
        assert_eq!(
            p["spec"]["ingress"],
            json!([{
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                "ports": [{"protocol": "TCP", "port": 3000}],
            }])
        );
    }

    #[test]
    fn the_metadata_endpoint_and_private_ranges_are_outside_what_sandboxes_reach() {
        let p = &policies()[SANDBOX_POLICY];
        let blocks: Vec<&Value> = p["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["to"].as_array().into_iter().flatten())
            .filter_map(|peer| peer.get("ipBlock"))
            .collect();
        let v4 = blocks.iter().find(|b| b["cidr"] == "0.0.0.0/0").unwrap();
        let except: Vec<&str> = v4["except"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let covered = |ip: std::net::Ipv4Addr| {
            except.iter().any(|c| {
                let (net, len) = c.split_once('/').unwrap();
                let net: std::net::Ipv4Addr = net.parse().unwrap();
                let len: u32 = len.parse().unwrap();
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(ip) & mask == u32::from(net) & mask
            })
        };
        for ip in [
            "169.254.169.254",
            "10.96.0.1",
            "172.20.1.1",
            "192.168.1.1",
            "100.100.100.200",
            "127.0.0.1",
        ] {
            assert!(covered(ip.parse().unwrap()), "{ip} is blocked");
        }
        for ip in ["1.1.1.1", "140.82.112.3", "172.32.0.1"] {
            assert!(!covered(ip.parse().unwrap()), "{ip} is reachable");
        }
    }

    #[test]
    fn databases_talk_to_their_namespace_the_operator_dns_and_the_api_server() {
        let s = K8sSettings {
            kubeblocks_namespace: "kubeblocks".into(),
            ingress_namespace: "traefik".into(),
            ..K8sSettings::default()
        };
        let all = namespace_policies("kiln-bob", &s);
        let p = serde_json::to_value(&all[2]).unwrap();
        assert_eq!(p["metadata"]["name"], DATABASE_POLICY);
        assert_eq!(
            p["spec"],
            json!({
                "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "kubeblocks"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [
                    {"podSelector": {}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeblocks"}}},
                ]}],
                "egress": [
                    {"to": [{"podSelector": {}}]},
                    {"to": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                    {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]},
                ],
            })
        );
        // The ingress controller's namespace is the setting's.
        let sandbox = serde_json::to_value(&all[1]).unwrap();
        assert_eq!(
            sandbox["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "traefik"
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_policies() {
        let s = K8sSettings::default();
        assert_eq!(
            namespace_policies("kiln-alice", &s),
            namespace_policies("kiln-alice", &s)
        );
        let names: Vec<_> = namespace_policies("kiln-alice", &s)
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        assert_eq!(names, [DEFAULT_DENY, SANDBOX_POLICY, DATABASE_POLICY]);
    }
}
