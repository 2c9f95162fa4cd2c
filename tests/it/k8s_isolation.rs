//! A tenant's namespace on the server's cluster is fenced off (issue 18 §4),
//! through the real reconcile loop against the API emulator: its
//! NetworkPolicies are applied before anything runs there, once, to the
//! exact rules of `network_policy`, and the database's Role holds exactly
//! the trimmed rules, even where an older Kiln made broader ones.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use kiln::k8s::database_objects::cluster_name;
use kiln::k8s::network_policy::{
    DATABASE_POLICY, DEFAULT_DENY, SANDBOX_POLICY, namespace_policies,
};
use kiln::k8s::settings::K8sSettings;
use kiln::model::ResourceStatus;
use kiln::reconcile::Reconciler;
use kiln::store::Store;
use kiln::store::resources::ResourceKind;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use serde_json::json;
use uuid::Uuid;

use crate::support::k8s::Emulator;
use crate::support::{TestDb, eventually};

/// A reconcile loop on the server's (emulated) cluster, as a fresh Kiln
/// replica would run it: its own back ends, so its own route cache.
fn replica(store: &Store, emu: &Emulator, settings: &K8sSettings) -> Reconciler {
    let backends = Arc::new(crate::support::k8s::server_backends(
        emu,
        store,
        settings.clone(),
    ));
    let config = crate::support::k8s::quick_reconcile();
    Reconciler::new(
        store.clone(),
        backends.clone(),
        backends,
        config,
        "isolation",
    )
}

async fn user(store: &Store, name: &str) -> Uuid {
    store
        .create_user(name, Some("a long password"), false)
        .await
        .unwrap()
        .id
}

/// The project's database resource name.
async fn database_name(store: &Store, owner: Uuid, project: &str) -> String {
    let p = store.find_project(owner, project).await.unwrap();
    p.resources
        .iter()
        .find(|r| r.kind == ResourceKind::Database)
        .unwrap()
        .resource_name
        .clone()
}

fn role_name(ns: &str, database: &str) -> String {
    cluster_name(&kiln::driver::ResourceRef {
        resource_name: database.into(),
        namespace: ns.into(),
        project_slug: String::new(),
        owner: Uuid::nil(),
    })
}

/// The namespace's policies by name, each as its spec.
async fn policies(emu: &Emulator, ns: &str) -> Vec<(String, serde_json::Value)> {
    let api: Api<NetworkPolicy> = Api::namespaced(emu.client(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap(),
                serde_json::to_value(p.spec.unwrap()).unwrap(),
            )
        })
        .collect()
}

/// What the namespace must hold: the pure builder's policies, sorted by name.
fn expected(ns: &str, s: &K8sSettings) -> Vec<(String, serde_json::Value)> {
    let mut want: Vec<_> = namespace_policies(ns, s)
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap(),
                serde_json::to_value(p.spec.unwrap()).unwrap(),
            )
        })
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    want
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// The database role's rules, written out: what Patroni (ConfigMaps mode)
/// and KubeBlocks' role probe use, nothing more.
fn trimmed_rules() -> Vec<PolicyRule> {
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
        rule("apps.kubeblocks.io", &["clusters"], &["get", "list"]),
        rule("apps.kubeblocks.io", &["clusters/status"], &["get"]),
    ]
}

async fn roles(emu: &Emulator, ns: &str) -> Vec<Role> {
    let api: Api<Role> = Api::namespaced(emu.client(), ns);
    api.list(&ListParams::default()).await.unwrap().items
}

/// Drains the loop until the database's role exists in `ns`.
async fn until_role(r: &Reconciler, emu: &Emulator, ns: &str) {
    eventually(
        &format!("the database role in {ns}"),
        Duration::from_secs(30),
        || async {
            r.drain().await.unwrap();
            (!roles(emu, ns).await.is_empty()).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn each_tenant_namespace_gets_its_policies_once_and_the_trimmed_role() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let emu = Emulator::start().await;
    let settings = K8sSettings::default();
    let alice = user(&store, "alice").await;
    store
        .create_project(alice, "Shop", "", "alice")
        .await
        .unwrap();
    let first = replica(&store, &emu, &settings);
    until_role(&first, &emu, "kiln-alice").await;

    // The namespace holds exactly the three policies, with the exact specs.
    let want = expected("kiln-alice", &settings);
    assert_eq!(policies(&emu, "kiln-alice").await, want);
    let names: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [DATABASE_POLICY, DEFAULT_DENY, SANDBOX_POLICY]);
    let sandbox = &want.iter().find(|(n, _)| n == SANDBOX_POLICY).unwrap().1;
    assert_eq!(
        sandbox["egress"][0]["to"][0]["ipBlock"],
        json!({"cidr": "0.0.0.0/0", "except": [
            "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
            "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"]})
    );
    assert_eq!(
        sandbox["egress"][0]["to"][1]["ipBlock"],
        json!({"cidr": "::/0", "except": ["fc00::/7", "fe80::/10", "::1/128"]})
    );
    // The Role holds exactly the trimmed rules.
    let database = database_name(&store, alice, "shop").await;
    let rs = roles(&emu, "kiln-alice").await;
    assert_eq!(rs.len(), 1);
    assert_eq!(
        rs[0].metadata.name.as_deref(),
        Some(role_name("kiln-alice", &database).as_str())
    );
    assert_eq!(rs[0].rules.clone().unwrap(), trimmed_rules());

    // Reconciling again, by this loop and by a second replica (a restart),
    // leaves one of each.
    for _ in 0..3 {
        first.drain().await.unwrap();
    }
    let second = replica(&store, &emu, &settings);
    for _ in 0..3 {
        second.drain().await.unwrap();
    }
    assert_eq!(policies(&emu, "kiln-alice").await, want);
    assert_eq!(roles(&emu, "kiln-alice").await.len(), 1);

    // A second tenant's namespace gets its own, and Alice's stay as they were.
    let bob = user(&store, "bob").await;
    store.create_project(bob, "Shop", "", "bob").await.unwrap();
    until_role(&second, &emu, "kiln-bob").await;
    assert_eq!(
        policies(&emu, "kiln-bob").await,
        expected("kiln-bob", &settings)
    );
    let api: Api<NetworkPolicy> = Api::namespaced(emu.client(), "kiln-bob");
    for p in api.list(&ListParams::default()).await.unwrap().items {
        assert_eq!(p.metadata.namespace.as_deref(), Some("kiln-bob"));
    }
    assert_eq!(policies(&emu, "kiln-alice").await, want);
    assert_eq!(
        roles(&emu, "kiln-bob").await[0].rules,
        Some(trimmed_rules())
    );
}

#[tokio::test]
async fn broader_rules_left_by_an_older_kiln_are_cut_down() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let emu = Emulator::start().await;
    let settings = K8sSettings {
        ingress_namespace: "traefik".into(),
        ..K8sSettings::default()
    };
    let carol = user(&store, "carol").await;
    store
        .create_project(carol, "Blog", "", "carol")
        .await
        .unwrap();
    let ns = "kiln-carol";
    let database = database_name(&store, carol, "blog").await;
    // What an older Kiln left: its namespace, a wide-open sandbox policy
    // and the role with endpoints, services and pod updates.
    Api::<Namespace>::all(emu.client())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns, "labels": {
                "app.kubernetes.io/managed-by": "kiln",
                "kiln.dev/tenant-id": carol.to_string(),
            }}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let open: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": SANDBOX_POLICY, "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(emu.client(), ns)
        .create(&PostParams::default(), &open)
        .await
        .unwrap();
    let old = Role {
        metadata: ObjectMeta {
            name: Some(role_name(ns, &database)),
            ..ObjectMeta::default()
        },
        rules: Some(vec![
            rule(
                "",
                &["configmaps", "endpoints"],
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
            ),
            rule("", &["pods"], &["get", "list", "patch", "update", "watch"]),
            rule("", &["services"], &["create", "get"]),
            rule("", &["events"], &["create", "patch"]),
        ]),
    };
    Api::<Role>::namespaced(emu.client(), ns)
        .create(&PostParams::default(), &old)
        .await
        .unwrap();

    let r = replica(&store, &emu, &settings);
    eventually("the role cut down", Duration::from_secs(30), || async {
        r.drain().await.unwrap();
        let rs = roles(&emu, ns).await;
        (rs.len() == 1 && rs[0].rules == Some(trimmed_rules())).then_some(())
    })
    .await;
    assert_eq!(policies(&emu, ns).await, expected(ns, &settings));
}

#[tokio::test]
async fn nothing_runs_in_a_namespace_whose_policies_could_not_be_applied() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let emu = Emulator::start().await;
    // Kiln's own service account may not write NetworkPolicies.
    emu.fail(json!([{ "method": "PATCH", "path_contains": "networkpolicies", "status": 403, "times": 1000 }]))
        .await;
    let dave = user(&store, "dave").await;
    store.create_project(dave, "Api", "", "dave").await.unwrap();
    let r = replica(&store, &emu, &K8sSettings::default());
    let error = eventually("the reason on the row", Duration::from_secs(30), || async {
        r.drain().await.unwrap();
        let p = store.find_project(dave, "api").await.unwrap();
        let sandbox = p
            .resources
            .iter()
            .find(|r| r.kind == ResourceKind::Sandbox)
            .unwrap()
            .clone();
        (sandbox.status == ResourceStatus::Error).then_some(sandbox.last_error)
    })
    .await;
    let error = error.unwrap_or_default();
    assert!(
        error.contains("network policy")
            && error.contains("403")
            && error.contains("networkpolicies")
            && error.contains("ask the operator"),
        "{error}"
    );
    let sets: Api<StatefulSet> = Api::namespaced(emu.client(), "kiln-dave");
    assert!(
        sets.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(roles(&emu, "kiln-dave").await.is_empty());
}

/// Every object in the dump that carries `kiln.dev/project`: (namespace,
/// kind, that label), wherever in the dump it sits.
fn project_objects(v: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            let md = m.get("metadata");
            let project = md
                .and_then(|md| md.get("labels"))
                .and_then(|l| l.get("kiln.dev/project"))
                .and_then(|v| v.as_str());
            match (project, md.and_then(|md| md.get("namespace"))) {
                (Some(p), Some(ns)) => out.push((
                    ns.as_str().unwrap_or("").to_string(),
                    m.get("kind")
                        .and_then(|k| k.as_str())
                        .unwrap_or("")
                        .to_string(),
                    p.to_string(),
                )),
                _ => m.values().for_each(|x| project_objects(x, out)),
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| project_objects(x, out)),
        _ => {}
    }
}

/// A team is a tenant like a user: its projects live in its own namespace
/// (`kiln-TEAM`), fenced by the same policies, and nothing of a member's
/// own projects lands there, nor anything of the team's in theirs, even
/// under the same project name.
#[tokio::test]
async fn a_teams_projects_live_in_the_teams_namespace_alone() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let emu = Emulator::start().await;
    let settings = K8sSettings::default();
    let alice = user(&store, "alice").await;
    let acme = store.create_team("acme").await.unwrap().id;
    store
        .set_member(acme, "alice", kiln::model::team::TeamRole::Member)
        .await
        .unwrap();
    store
        .create_project(acme, "Site", "", "alice")
        .await
        .unwrap();
    store
        .create_project(alice, "Site", "", "alice")
        .await
        .unwrap();
    let r = replica(&store, &emu, &settings);
    until_role(&r, &emu, "kiln-acme").await;
    until_role(&r, &emu, "kiln-alice").await;

    assert_eq!(
        policies(&emu, "kiln-acme").await,
        expected("kiln-acme", &settings)
    );
    // The team's namespace is labelled for the team's account, so no
    // user's route could adopt it.
    let ns = Api::<Namespace>::all(emu.client())
        .get("kiln-acme")
        .await
        .unwrap();
    assert_eq!(
        ns.metadata.labels.unwrap().get("kiln.dev/tenant-id"),
        Some(&acme.to_string())
    );
    // Both projects are `site`: the namespace is what tells them apart,
    // and each one's objects are in its owner's namespace only.
    let client = emu.client();
    let sets = |ns: &'static str| {
        let client = client.clone();
        async move {
            Api::<StatefulSet>::namespaced(client, ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(sets("kiln-acme").await, 1);
    assert_eq!(sets("kiln-alice").await, 1);
    let mut found = Vec::new();
    project_objects(&emu.objects().await, &mut found);
    let team_db = database_name(&store, acme, "site").await;
    let own_db = database_name(&store, alice, "site").await;
    assert_ne!(team_db, own_db);
    for (ns, kind, project) in &found {
        assert!(
            ns == "kiln-acme" || ns == "kiln-alice",
            "{kind} of {project} in {ns}"
        );
    }
    let in_ns = |ns: &str| found.iter().filter(|(n, _, _)| n == ns).count();
    assert!(
        in_ns("kiln-acme") > 0 && in_ns("kiln-alice") > 0,
        "{found:?}"
    );
    // The team's database role names the team's database; alice's hers.
    assert_eq!(
        roles(&emu, "kiln-acme").await[0].metadata.name.as_deref(),
        Some(role_name("kiln-acme", &team_db).as_str())
    );
    assert_eq!(
        roles(&emu, "kiln-alice").await[0].metadata.name.as_deref(),
        Some(role_name("kiln-alice", &own_db).as_str())
    );
}
