//! The warm pool of sandboxes on the server's cluster (issue 23), through
//! the real pool keeper and reconcile loop against the Kubernetes API
//! emulator over real HTTP. The test plays kubelet (StatefulSet status,
//! the pods exec needs) and KubeBlocks; the pooled pod's side of a claim,
//! `kiln-entrypoint claim`, is the emulator's canned exec, which keeps
//! what Kiln wrote on its stdin (the runtime image's own tests run the real
//! entrypoint on that input: `runtime_image::entrypoint`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kiln::backends::Backends;
use kiln::k8s::objects::{RESOURCE_LABEL, pod_name};
use kiln::k8s::pool_objects::{
    CLAIM_HEADER, POOL_CLAIMED, POOL_LABEL, POOL_UNCLAIMED, POOLED_ENV, TENANT_LABEL,
    claim_policy_name,
};
use kiln::k8s::settings::K8sSettings;
use kiln::model::ProjectStatus;
use kiln::model::pool::PoolKind;
use kiln::reconcile::Reconciler;
use kiln::reconcile::pool::PoolKeeper;
use kiln::store::Store;
use kiln::store::resources::ResourceKind;
use kiln::store::users::User;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

use crate::support::k8s::{Emulator, play_kubeblocks, play_statefulsets};
use crate::support::{TestDb, eventually};

const POOL_NS: &str = "kiln-pool";

struct Harness {
    _db: TestDb,
    store: Store,
    emu: Emulator,
    loop_: Reconciler,
    keeper: PoolKeeper,
    backends: Arc<Backends>,
}

impl Harness {
    /// A server cluster (the emulator) with a pool of `target` sandboxes.
    async fn new(target: u32) -> Harness {
        Self::with_pools(target, 0).await
    }

    /// A server cluster with pools of `sandboxes` and `databases`, wired as
    /// `kiln serve` wires them.
    async fn with_pools(target: u32, databases: u32) -> Harness {
        let db = TestDb::new().await;
        let settings = K8sSettings {
            pool_sandboxes: target,
            pool_databases: databases,
            ..K8sSettings::default()
        };
        let store = db
            .store()
            .await
            .with_sandbox_size(settings.sandbox_size())
            .with_sandbox_pool_claims(target > 0)
            .with_pool_claims(databases > 0)
            .with_database_claims_keeping_names(true);
        let emu = Emulator::start().await;
        let backends = Arc::new(crate::support::k8s::server_backends(&emu, &store, settings));
        let config = crate::support::k8s::quick_reconcile();
        let loop_ = Reconciler::new(
            store.clone(),
            backends.clone(),
            backends.clone(),
            config,
            "k8s-pool",
        );
        let pool = backends.sandbox_pool().expect("a server cluster");
        let keeper = PoolKeeper::new(
            store.clone(),
            Arc::new(kiln::k8s::pool::PooledDatabases(pool.clone())),
            databases,
            "k8s-pool",
        )
        .with_sandboxes(pool, target)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(200));
        // What the pooled pod's entrypoint answers a claim with.
        emu.set_exec_rules(serde_json::json!([
            { "contains": "kiln-entrypoint claim", "read_stdin": true, "exit": 0 },
            { "contains": "list-sessions", "stdout": "" }
        ]))
        .await;
        Harness {
            _db: db,
            store,
            emu,
            loop_,
            keeper,
            backends,
        }
    }

    async fn user(&self, name: &str) -> User {
        self.store
            .create_user(name, Some("a long password"), false)
            .await
            .unwrap()
    }

    async fn exec(&self, u: &User, line: &str) -> String {
        let o = kiln::ssh::exec::run(
            &kiln::console::Console::new(self.store.clone(), Some(self.backends.clone()), None)
                .as_user(u.clone(), kiln::console::Front::Exec),
            line,
            b"",
        )
        .await;
        let (out, err) = (
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        );
        assert_eq!(o.code, 0, "{line}: {out} {err}");
        out
    }

    fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.emu.client(), ns)
    }

    /// Plays kubelet in the pool's namespace: each StatefulSet's pod exists
    /// (exec needs it) and its status is ready.
    async fn kubelet(&self) {
        play_pool_kubelet(&self.emu.client()).await;
    }

    /// Keeper passes, kubelet playing, until `n` pooled sandboxes are ready.
    async fn fill(&self, n: usize) -> Vec<String> {
        eventually(
            &format!("{n} ready pooled sandboxes"),
            Duration::from_secs(30),
            || async {
                self.keeper.pass().await.unwrap();
                if self.emu_namespace_exists(POOL_NS).await {
                    self.kubelet().await;
                    play_kubeblocks(&self.emu.client(), POOL_NS).await;
                }
                let ready = self.store.ready_pooled(PoolKind::Sandbox).await.unwrap();
                (ready.len() == n).then(|| ready.into_iter().map(|(_, name)| name).collect())
            },
        )
        .await
    }

    async fn emu_namespace_exists(&self, ns: &str) -> bool {
        let api: Api<Namespace> = Api::all(self.emu.client());
        api.get_opt(ns).await.unwrap().is_some()
    }

    /// Drives the loop (kubelet and KubeBlocks playing) until `project`
    /// of `u` is RUNNING.
    async fn running(&self, u: &User, project: &str) {
        let ns = format!("kiln-{}", u.username);
        eventually(
            &format!("{project} RUNNING"),
            Duration::from_secs(30),
            || async {
                self.loop_.drain().await.unwrap();
                if self.emu_namespace_exists(&ns).await {
                    play_kubeblocks(&self.emu.client(), &ns).await;
                    play_statefulsets(&self.emu.client(), &ns).await;
                }
                self.kubelet().await;
                play_kubeblocks(&self.emu.client(), POOL_NS).await;
                let p = self.store.find_project(u.id, project).await.unwrap();
                (p.project.status == ProjectStatus::Running).then_some(())
            },
        )
        .await
    }

    async fn sandbox_name(&self, u: &User, project: &str) -> String {
        self.resource_name(u, project, ResourceKind::Sandbox).await
    }

    async fn resource_name(&self, u: &User, project: &str, kind: ResourceKind) -> String {
        let p = self.store.find_project(u.id, project).await.unwrap();
        p.resources
            .iter()
            .find(|r| r.kind == kind)
            .unwrap()
            .resource_name
            .clone()
    }

    /// Every exec of a claim into `pod`: its stdin, in order.
    async fn claims_of(&self, pod: &str) -> Vec<String> {
        let calls = self.emu.exec_calls().await;
        calls
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["pod"] == pod && c["argv"].to_string().contains("claim"))
            .map(|c| {
                assert_eq!(c["namespace"], POOL_NS, "{c}");
                assert_eq!(
                    c["argv"],
                    serde_json::json!(["kiln-entrypoint", "claim"]),
                    "nothing but the command in argv: {c}"
                );
                c["stdin_text"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }
}

/// Plays kubelet in the pool's namespace: each StatefulSet's pod exists
/// (exec needs it) and its status is ready.
async fn play_pool_kubelet(client: &kube::Client) {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), POOL_NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), POOL_NS);
    for s in sets.list(&ListParams::default()).await.unwrap().items {
        let r = pooled_ref(s.metadata.name.as_deref().unwrap());
        if pods.get_opt(&pod_name(&r)).await.unwrap().is_none() {
            let template = s.spec.clone().unwrap().template;
            let pod = Pod {
                metadata: ObjectMeta {
                    name: Some(pod_name(&r)),
                    labels: template.metadata.and_then(|m| m.labels),
                    ..Default::default()
                },
                spec: template.spec,
                ..Default::default()
            };
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
    }
    play_statefulsets(client, POOL_NS).await;
}

fn pooled_ref(name: &str) -> kiln::driver::ResourceRef {
    kiln::driver::ResourceRef {
        resource_name: name.into(),
        namespace: POOL_NS.into(),
        project_slug: String::new(),
        owner: uuid::Uuid::nil(),
    }
}

fn label<'a>(sts: &'a StatefulSet, key: &str) -> Option<&'a str> {
    sts.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// Pooled StatefulSets wait in the pool's namespace with no tenant data;
/// two tenants' creates claim one each; a claim opens the project's
/// session through one exec with the environment on stdin (none of it in
/// argv), relabels the StatefulSet for its tenant, opens its tenant's
/// databases to that pod alone, and never changes the pod template (so no
/// restart). A later DATABASE_URL reaches it the same way. The pool is
/// refilled; a deleted project takes its sandbox and policies along; a
/// pooled sandbox broken by hand is replaced and never claimed.
#[tokio::test]
async fn pooled_sandboxes_on_the_server_cluster_are_claimed_without_a_restart() {
    let h = Harness::new(2).await;
    let pooled = h.fill(2).await;

    // The pool's namespace: Kiln's, fenced as a tenant's is.
    let ns: Api<Namespace> = Api::all(h.emu.client());
    let pool_ns = ns.get(POOL_NS).await.unwrap();
    let ns_labels = pool_ns.metadata.labels.unwrap();
    assert_eq!(ns_labels["kiln.dev/pool-namespace"], "true");
    assert!(
        !ns_labels.contains_key("kiln.dev/tenant-id"),
        "{ns_labels:?}"
    );
    let policies: Api<NetworkPolicy> = h.api(POOL_NS);
    let names: Vec<String> = policies
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    for want in ["kiln-default-deny", "kiln-sandbox", "kiln-database"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let sets: Api<StatefulSet> = h.api(POOL_NS);
    for name in &pooled {
        let sts = sets.get(name).await.unwrap();
        assert_eq!(label(&sts, POOL_LABEL), Some(POOL_UNCLAIMED));
        assert_eq!(label(&sts, TENANT_LABEL), None);
        let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let env: Vec<&str> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(env, [POOLED_ENV], "no tenant data in a pooled pod");
    }

    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.exec(&alice, "create blog").await;
    h.exec(&bob, "create shop").await;
    let (a_name, b_name) = (
        h.sandbox_name(&alice, "blog").await,
        h.sandbox_name(&bob, "shop").await,
    );
    assert!(pooled.contains(&a_name) && pooled.contains(&b_name));
    assert_ne!(a_name, b_name, "one pooled sandbox per claim");
    let before: Vec<StatefulSet> =
        futures::future::join_all([&a_name, &b_name].map(|n| async { sets.get(n).await.unwrap() }))
            .await;
    h.running(&alice, "blog").await;
    h.running(&bob, "shop").await;

    for (u, project, name, old) in [
        (&alice, "blog", &a_name, &before[0]),
        (&bob, "shop", &b_name, &before[1]),
    ] {
        let sts = sets.get(name).await.unwrap();
        // Relabelled for its tenant, on metadata only: no restart.
        assert_eq!(label(&sts, POOL_LABEL), Some(POOL_CLAIMED));
        assert_eq!(label(&sts, TENANT_LABEL), Some(u.id.to_string().as_str()));
        assert_eq!(label(&sts, "kiln.dev/project"), Some(project));
        assert_eq!(sts.metadata.generation, old.metadata.generation, "{name}");
        assert_eq!(
            sts.spec.as_ref().unwrap().template,
            old.spec.as_ref().unwrap().template,
            "{name}'s pod template changed: its pod would restart"
        );
        // The project's environment went in on stdin; the database's URL
        // too, once the database ran (at the claim, or by a later sync).
        let pod = pod_name(&pooled_ref(name));
        let claims = eventually(
            &format!("DATABASE_URL in {name}"),
            Duration::from_secs(30),
            || async {
                h.loop_.drain().await.unwrap();
                let claims = h.claims_of(&pod).await;
                claims
                    .last()
                    .is_some_and(|c| c.contains("export DATABASE_URL='postgres"))
                    .then_some(claims)
            },
        )
        .await;
        for claim in &claims {
            assert!(claim.starts_with(CLAIM_HEADER), "{claim}");
            assert!(
                claim.contains(&format!("export PROJECT_NAME='{project}'")),
                "{claim}"
            );
        }
        let sts = sets.get(name).await.unwrap();
        assert_eq!(
            sts.spec.as_ref().unwrap().template,
            old.spec.as_ref().unwrap().template,
            "{name}'s pod template changed by the sync: its pod would restart"
        );
        // Its tenant's databases, open to that pod alone.
        let tenant_ns = format!("kiln-{}", u.username);
        let peer: Api<NetworkPolicy> = h.api(&tenant_ns);
        let policy = claim_policy_name(&pooled_ref(name));
        let ingress = peer.get(&policy).await.unwrap();
        let from = serde_json::to_value(&ingress.spec.unwrap().ingress).unwrap();
        assert_eq!(
            from[0]["from"][0]["podSelector"]["matchLabels"][RESOURCE_LABEL],
            name.as_str()
        );
        assert_eq!(
            from[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            POOL_NS
        );
        let egress = policies.get(&policy).await.unwrap();
        let to = serde_json::to_value(&egress.spec.unwrap().egress).unwrap();
        assert_eq!(
            to[0]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            tenant_ns
        );
    }

    // Nothing of one tenant in the other's namespace.
    for (ns, other, other_id) in [
        ("kiln-alice", &b_name, bob.id),
        ("kiln-bob", &a_name, alice.id),
    ] {
        let policies: Api<NetworkPolicy> = h.api(ns);
        let text =
            serde_json::to_string(&policies.list(&ListParams::default()).await.unwrap()).unwrap();
        assert!(!text.contains(other.as_str()), "{other} in {ns}: {text}");
        let sets: Api<StatefulSet> = h.api(ns);
        let text =
            serde_json::to_string(&sets.list(&ListParams::default()).await.unwrap()).unwrap();
        assert!(!text.contains(&other_id.to_string()), "{ns}: {text}");
    }

    // Sessions and the app go to the claimed pod, in the pool's namespace.
    h.exec(&alice, "sessions blog").await;
    let calls = h.emu.exec_calls().await.to_string();
    assert!(
        calls.contains(&pod_name(&pooled_ref(&a_name))),
        "no exec into the claimed pod: {calls}"
    );

    // The pool is refilled with fresh ones.
    let refilled = h.fill(2).await;
    assert!(!refilled.contains(&a_name) && !refilled.contains(&b_name));

    // A pooled sandbox broken by hand (scaled to 0) is replaced, not claimed.
    let broken = refilled[0].clone();
    sets.patch(
        &broken,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({ "spec": { "replicas": 0 } })),
    )
    .await
    .unwrap();
    play_statefulsets(&h.emu.client(), POOL_NS).await;
    let replaced = eventually(
        "the broken one replaced",
        Duration::from_secs(30),
        || async {
            h.keeper.pass().await.unwrap();
            h.kubelet().await;
            let ready = h.store.ready_pooled(PoolKind::Sandbox).await.unwrap();
            let names: Vec<String> = ready.into_iter().map(|(_, n)| n).collect();
            (names.len() == 2 && !names.contains(&broken)).then_some(names)
        },
    )
    .await;
    assert!(
        sets.get_opt(&broken).await.unwrap().is_none(),
        "{broken} kept"
    );
    h.exec(&alice, "create notes").await;
    let c_name = h.sandbox_name(&alice, "notes").await;
    assert!(replaced.contains(&c_name), "{c_name} not from {replaced:?}");

    // A pooled StatefulSet that nothing owns (a crash between its row and
    // its object, say) is ended; the pool's own are kept.
    let stray = kiln::model::naming::pooled_sandbox_name();
    let (stray_sts, _) = kiln::k8s::pool_objects::pooled_objects(&stray, &K8sSettings::default());
    sets.create(&PostParams::default(), &stray_sts)
        .await
        .unwrap();
    eventually(
        "the stray pooled sandbox ended",
        Duration::from_secs(30),
        || async {
            h.keeper.pass().await.unwrap();
            sets.get_opt(&stray).await.unwrap().is_none().then_some(())
        },
    )
    .await;
    for name in h.store.ready_pooled(PoolKind::Sandbox).await.unwrap() {
        assert!(
            sets.get_opt(&name.1).await.unwrap().is_some(),
            "{} swept",
            name.1
        );
    }
    assert!(
        sets.get_opt(&a_name).await.unwrap().is_some(),
        "a claimed one swept"
    );

    // Deleting a project deletes its claimed sandbox and both policies.
    h.exec(&bob, "delete shop --yes").await;
    eventually("shop's sandbox gone", Duration::from_secs(30), || async {
        h.loop_.drain().await.unwrap();
        play_kubeblocks(&h.emu.client(), "kiln-bob").await;
        let gone = sets.get_opt(&b_name).await.unwrap().is_none();
        let policy = claim_policy_name(&pooled_ref(&b_name));
        let peer: Api<NetworkPolicy> = h.api("kiln-bob");
        (gone
            && policies.get_opt(&policy).await.unwrap().is_none()
            && peer.get_opt(&policy).await.unwrap().is_none())
        .then_some(())
    })
    .await;
}

/// Which pooled sandboxes the keeper may end: only names that neither a
/// pool row nor a project's sandbox (of an owner still on the server's
/// cluster) accounts for.
#[tokio::test]
async fn a_pooled_sandbox_is_unowned_only_when_no_row_accounts_for_it() {
    let h = Harness::new(1).await;
    let pooled = h.fill(1).await;
    let alice = h.user("alice").await;
    h.exec(&alice, "create blog").await;
    let claimed = h.sandbox_name(&alice, "blog").await;
    assert_eq!(claimed, pooled[0]);
    let refilled = h.fill(1).await;
    let unknown = kiln::model::naming::pooled_sandbox_name();
    let names = vec![claimed.clone(), refilled[0].clone(), unknown.clone()];
    assert_eq!(
        h.store.orphaned_pooled_sandboxes(&names).await.unwrap(),
        std::slice::from_ref(&unknown),
        "a pool row or a claim accounts for the others"
    );
    // The claimer moved to a cluster of their own before the first start:
    // theirs is made there, and the pooled one is nobody's.
    h.store
        .set_user_config(alice.id, "KUBECONFIG", &h.emu.kubeconfig("team-a"), true)
        .await
        .unwrap();
    let mut want = vec![claimed, unknown];
    want.sort();
    assert_eq!(
        h.store.orphaned_pooled_sandboxes(&names).await.unwrap(),
        want
    );
}

/// What a claim costs on the server's cluster, counted at the emulator:
/// the first start of a claimed sandbox (the tenant's route already made)
/// is a GET of its StatefulSet, the claim's two NetworkPolicies, one exec
/// and one metadata PATCH. No Secret, no pod, no template is written.
#[tokio::test]
async fn a_claim_costs_five_api_calls_and_writes_no_pod_template() {
    use kiln::driver::SandboxDriver;
    let h = Harness::new(1).await;
    let pooled = h.fill(1).await;
    let alice = h.user("alice").await;
    h.exec(&alice, "create blog").await;
    let name = h.sandbox_name(&alice, "blog").await;
    assert_eq!(name, pooled[0]);
    h.backends.route(alice.id).await.unwrap();
    let spec = kiln::driver::SandboxSpec {
        resource: kiln::driver::ResourceRef {
            resource_name: name.clone(),
            namespace: "kiln-alice".into(),
            project_slug: "blog".into(),
            owner: alice.id,
        },
        env: vec![("PROJECT_NAME".into(), "blog".into())],
        secret_keys: Default::default(),
        repo: None,
        command: None,
        setup: None,
        sizing: Default::default(),
    };
    let before = h.emu.requests().await.len();
    let observed = SandboxDriver::adopt(h.backends.as_ref(), &spec)
        .await
        .unwrap();
    assert_eq!(observed, kiln::driver::Observed::Running);
    let calls: Vec<String> = h.emu.requests().await.split_off(before);
    let policy = claim_policy_name(&pooled_ref(&name));
    let pod = pod_name(&pooled_ref(&name));
    assert_eq!(
        calls,
        [
            format!("GET /apis/apps/v1/namespaces/{POOL_NS}/statefulsets/{name}"),
            format!(
                "PATCH /apis/networking.k8s.io/v1/namespaces/{POOL_NS}/networkpolicies/{policy}"
            ),
            format!(
                "PATCH /apis/networking.k8s.io/v1/namespaces/kiln-alice/networkpolicies/{policy}"
            ),
            format!("GET /api/v1/namespaces/{POOL_NS}/pods/{pod}/exec"),
            format!("PATCH /apis/apps/v1/namespaces/{POOL_NS}/statefulsets/{name}"),
        ],
        "the claim's API calls"
    );
}

/// `kiln serve` on a server cluster (the emulator) with
/// `kubernetes.pool_sandboxes = 1` and `pool_databases = 1`: its keeper
/// makes both in the pool's namespace and reports them ready in
/// `/metrics`; a create over SSH claims both and the server's own loop
/// opens the project's session in the sandbox, without touching its pod
/// template.
#[tokio::test]
async fn kiln_serve_on_a_server_cluster_keeps_both_pools_and_a_create_claims_from_them() {
    use crate::support::serve::Serve;
    use crate::support::ssh::{TEST_SECRET_KEY, connect};
    let db = TestDb::new().await;
    let store = db
        .store_with_key(kiln::store::SecretKey::from_hex(TEST_SECRET_KEY).unwrap())
        .await;
    let alice = store
        .create_user("alice", Some("correct horse battery"), false)
        .await
        .unwrap();
    let emu = Emulator::start().await;
    emu.set_exec_rules(serde_json::json!([
        { "contains": "kiln-entrypoint claim", "read_stdin": true, "exit": 0 }
    ]))
    .await;
    let kubeconfig = crate::support::k8s::KubeconfigFile::new(&emu, "default");
    let server = Serve::start(
        &db.url,
        "pool-k8s",
        "[ssh]\nrejection_delay_ms = 0\n\
         [reconcile]\nresync_ms = 100\npoll_interval_ms = 100\nbackoff_base_ms = 50\nbackoff_cap_secs = 1\n\
         [kubernetes]\npool_sandboxes = 1\npool_databases = 1\n",
        &[
            ("KILN_SERVER_CLUSTER", "kubeconfig"),
            ("KUBECONFIG", kubeconfig.path()),
        ],
    )
    .await;
    let client = emu.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), POOL_NS);
    let kubelet = || play_pool_kubelet(&client);
    let (pooled, pooled_db) = eventually(
        "a ready pooled sandbox and database, in /metrics",
        Duration::from_secs(60),
        || async {
            kubelet().await;
            play_kubeblocks(&client, POOL_NS).await;
            let ready = store.ready_pooled(PoolKind::Sandbox).await.unwrap();
            let dbs = store.ready_pooled(PoolKind::Database).await.unwrap();
            let (_, body) = server.get("/metrics").await;
            (ready.len() == 1
                && dbs.len() == 1
                && body.contains("kiln_pool_ready{kind=\"sandbox\"} 1")
                && body.contains("kiln_pool_ready{kind=\"database\"} 1"))
            .then(|| (ready[0].1.clone(), dbs[0].1.clone()))
        },
    )
    .await;
    let template = sets.get(&pooled).await.unwrap().spec.unwrap().template;

    let mut c = connect(server.ssh).await;
    assert!(c.password("alice", "correct horse battery").await);
    let r = c.exec("create blog", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let p = store.find_project(alice.id, "blog").await.unwrap();
    let sandbox = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    assert_eq!(sandbox.resource_name, pooled, "the create claimed it");
    let database = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Database)
        .unwrap();
    assert_eq!(database.resource_name, pooled_db, "and the pooled database");
    eventually("blog RUNNING", Duration::from_secs(60), || async {
        kubelet().await;
        play_kubeblocks(&client, "kiln-alice").await;
        play_kubeblocks(&client, POOL_NS).await;
        let p = store.find_project(alice.id, "blog").await.unwrap();
        (p.project.status == ProjectStatus::Running).then_some(())
    })
    .await;
    let sts = sets.get(&pooled).await.unwrap();
    assert_eq!(label(&sts, POOL_LABEL), Some(POOL_CLAIMED));
    assert_eq!(
        sts.spec.unwrap().template,
        template,
        "the pod template changed"
    );
    let calls = emu.exec_calls().await.to_string();
    assert!(calls.contains("kiln-entrypoint"), "no claim exec: {calls}");
}

/// Pooled databases on the server's cluster: KubeBlocks clusters in the
/// pool's namespace, each letting in only its own pods; a create claims
/// one under its pooled name (a cluster cannot be renamed), and it then
/// lets in its tenant's sandboxes and its project's pooled sandbox, on the
/// PostgreSQL port, and no other tenant's. Its URL, from its credentials in
/// the pool's namespace, reaches the sandbox. Deleting the project deletes
/// it and its policies; the pool refills.
#[tokio::test]
async fn pooled_databases_on_the_server_cluster_are_claimed_under_their_names_for_their_project_alone()
 {
    use kiln::k8s::database_objects::cluster_name;
    use kiln::k8s::pool_objects::{
        INSTANCE_LABEL, database_claim_policy_name, database_policy_name, pooled_database_ref,
    };
    let h = Harness::with_pools(1, 1).await;
    let settings = K8sSettings::default();
    let ready_dbs = || async {
        h.store
            .ready_pooled(PoolKind::Database)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
    };
    h.fill(1).await;
    let first_db = eventually(
        "a ready pooled database",
        Duration::from_secs(30),
        || async {
            h.keeper.pass().await.unwrap();
            play_kubeblocks(&h.emu.client(), POOL_NS).await;
            let r = ready_dbs().await;
            (r.len() == 1).then(|| r[0].clone())
        },
    )
    .await;
    let db_ref = pooled_database_ref(&first_db, &settings);
    let cluster = cluster_name(&db_ref);
    let clusters: Api<kube::api::DynamicObject> = Api::namespaced_with(
        h.emu.client(),
        POOL_NS,
        &kiln::k8s::database_objects::cluster_api_resource(),
    );
    assert!(clusters.get_opt(&cluster).await.unwrap().is_some());
    let policies: Api<NetworkPolicy> = h.api(POOL_NS);
    let own = policies.get(&database_policy_name(&db_ref)).await.unwrap();
    let own = serde_json::to_value(own.spec.unwrap()).unwrap();
    assert_eq!(
        own["podSelector"]["matchLabels"][INSTANCE_LABEL],
        cluster.as_str()
    );
    assert_eq!(
        own["ingress"][0]["from"][0]["podSelector"],
        own["podSelector"]
    );
    let pool_db_policy = policies.get("kiln-database").await.unwrap();
    let ingress = serde_json::to_value(pool_db_policy.spec.unwrap().ingress).unwrap();
    assert!(
        !ingress.to_string().contains("\"podSelector\":{}"),
        "the pool's databases must not let the whole namespace in: {ingress}"
    );

    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.exec(&alice, "create blog").await;
    let (a_db, a_sb) = (
        h.resource_name(&alice, "blog", ResourceKind::Database)
            .await,
        h.sandbox_name(&alice, "blog").await,
    );
    assert_eq!(a_db, first_db, "claimed under its pooled name");
    h.running(&alice, "blog").await;

    // Its URL reached the sandbox: the pool's namespace's host.
    let pod = pod_name(&pooled_ref(&a_sb));
    eventually(
        "the pooled database's URL in the sandbox",
        Duration::from_secs(30),
        || async {
            h.loop_.drain().await.unwrap();
            h.claims_of(&pod)
                .await
                .last()
                .is_some_and(|c| c.contains(&format!("postgresql.{POOL_NS}.svc")))
                .then_some(())
        },
    )
    .await;
    // Let in: alice's sandboxes, and blog's pooled sandbox, on 5432.
    let claim = database_claim_policy_name(&db_ref);
    let a_in = serde_json::to_value(policies.get(&claim).await.unwrap().spec.unwrap()).unwrap();
    assert_eq!(
        a_in["podSelector"]["matchLabels"][INSTANCE_LABEL],
        cluster.as_str()
    );
    let from = &a_in["ingress"][0]["from"];
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "kiln-alice"
    );
    assert_eq!(
        from[1]["podSelector"]["matchLabels"][RESOURCE_LABEL],
        a_sb.as_str()
    );
    assert_eq!(a_in["ingress"][0]["ports"][0]["port"], 5432);
    let a_out: Api<NetworkPolicy> = h.api("kiln-alice");
    let a_out = serde_json::to_value(a_out.get(&claim).await.unwrap().spec.unwrap()).unwrap();
    assert_eq!(
        a_out["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        POOL_NS
    );
    let labels = clusters
        .get(&cluster)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(labels[TENANT_LABEL], alice.id.to_string());
    assert_eq!(labels[POOL_LABEL], POOL_CLAIMED);

    // The pool refills; bob claims the next one, and nothing of one
    // tenant's is let into the other's.
    let second_db = eventually(
        "the database pool refilled",
        Duration::from_secs(30),
        || async {
            h.keeper.pass().await.unwrap();
            h.kubelet().await;
            play_kubeblocks(&h.emu.client(), POOL_NS).await;
            let r = ready_dbs().await;
            (r.len() == 1 && r[0] != first_db).then(|| r[0].clone())
        },
    )
    .await;
    h.fill(1).await;
    h.exec(&bob, "create shop").await;
    assert_eq!(
        h.resource_name(&bob, "shop", ResourceKind::Database).await,
        second_db
    );
    h.running(&bob, "shop").await;
    let b_claim = database_claim_policy_name(&pooled_database_ref(&second_db, &settings));
    let b_in = serde_json::to_value(policies.get(&b_claim).await.unwrap())
        .unwrap()
        .to_string();
    assert!(
        !b_in.contains("kiln-alice") && !b_in.contains(&a_sb),
        "{b_in}"
    );
    let a_in = serde_json::to_value(policies.get(&claim).await.unwrap())
        .unwrap()
        .to_string();
    let b_sb = h.sandbox_name(&bob, "shop").await;
    assert!(
        !a_in.contains("kiln-bob") && !a_in.contains(&b_sb),
        "{a_in}"
    );

    // Deleting blog deletes its database and its three policies.
    h.exec(&alice, "delete blog --yes").await;
    eventually("blog's database gone", Duration::from_secs(30), || async {
        h.loop_.drain().await.unwrap();
        let peer: Api<NetworkPolicy> = h.api("kiln-alice");
        (clusters.get_opt(&cluster).await.unwrap().is_none()
            && policies.get_opt(&claim).await.unwrap().is_none()
            && policies
                .get_opt(&database_policy_name(&db_ref))
                .await
                .unwrap()
                .is_none()
            && peer.get_opt(&claim).await.unwrap().is_none())
        .then_some(())
    })
    .await;
}
