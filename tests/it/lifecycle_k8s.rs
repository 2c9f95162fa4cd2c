//! The Kubernetes back end through the real reconcile loop, against a
//! Kubernetes API emulator over real HTTP on loopback. The test plays
//! kubelet and KubeBlocks: it writes StatefulSet and Cluster status and the
//! credential Secret, as those controllers would.
//!
//! Over 500 lines: independent end-to-end scenarios through the real loop
//! and the emulator.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kiln::backends::{Backends, LocalBackend, spawn_drift_marker};
use kiln::fake_driver::FakeDriver;
use kiln::k8s::database_objects::{cluster_api_resource, cluster_name};
use kiln::k8s::settings::K8sSettings;
use kiln::model::intent::Intent;
use kiln::model::{ProjectStatus, ResourceStatus};
use kiln::reconcile::{ReconcileConfig, Reconciler};
use kiln::store::Store;
use kiln::store::resources::ResourceKind;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use uuid::Uuid;

use crate::support::k8s::Emulator;
use crate::support::{TestDb, eventually};

fn config() -> ReconcileConfig {
    crate::support::k8s::quick_reconcile()
}

/// A store, a reconcile loop on the server's (emulated) cluster, and the
/// drift watch wired as `serve` wires it.
struct Harness {
    _db: TestDb,
    store: Store,
    emu: Emulator,
    loop_: Reconciler,
    backends: Arc<Backends>,
    _marker: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn new() -> Harness {
        Self::with_config(config()).await
    }

    async fn with_config(config: ReconcileConfig) -> Harness {
        let db = TestDb::new().await;
        let store = db.store().await;
        let emu = Emulator::start().await;
        let fake = Arc::new(FakeDriver::new());
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let backends = Arc::new(
            Backends::new(
                LocalBackend {
                    sandboxes: fake.clone(),
                    databases: fake,
                    attach: None,
                },
                Some(emu.client()),
                Arc::new(K8sSettings::default()),
                Arc::new(store.clone()),
            )
            .with_drift_watch(tx),
        );
        let marker = spawn_drift_marker(store.clone(), rx);
        let loop_ = Reconciler::new(
            store.clone(),
            backends.clone(),
            backends.clone(),
            config,
            "k8s-test",
        );
        Harness {
            _db: db,
            store,
            emu,
            loop_,
            backends,
            _marker: marker,
        }
    }

    async fn user(&self, name: &str) -> Uuid {
        self.store
            .create_user(name, Some("a long password"), false)
            .await
            .unwrap()
            .id
    }

    fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.emu.client(), ns)
    }

    fn clusters(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.emu.client(), ns, &cluster_api_resource())
    }

    async fn settle(
        &self,
        user: Uuid,
        project: &str,
        want: ProjectStatus,
        kubelet: impl AsyncFn(),
    ) {
        eventually(
            &format!("{project} to be {want}"),
            Duration::from_secs(30),
            || async {
                kubelet().await;
                self.loop_.drain().await.unwrap();
                match self.store.find_project(user, project).await {
                    Ok(p) if p.project.status == want => Some(()),
                    _ => None,
                }
            },
        )
        .await;
    }

    async fn names(&self, user: Uuid, project: &str) -> (String, String) {
        let p = self.store.find_project(user, project).await.unwrap();
        let of = |k| {
            p.resources
                .iter()
                .find(|r| r.kind == k)
                .unwrap()
                .resource_name
                .clone()
        };
        (of(ResourceKind::Sandbox), of(ResourceKind::Database))
    }

    /// Plays the StatefulSet controller and kubelet: status follows spec.
    async fn kubelet(&self, ns: &str) {
        crate::support::k8s::play_statefulsets(&self.emu.client(), ns).await;
    }

    /// Plays KubeBlocks: the phase follows the replicas; the credential
    /// secret appears once the cluster first runs.
    async fn kubeblocks(&self, ns: &str) {
        crate::support::k8s::play_kubeblocks(&self.emu.client(), ns).await;
    }

    async fn play(&self, ns: &str) {
        self.kubelet(ns).await;
        self.kubeblocks(ns).await;
    }

    /// The sandbox container's env, by name: a value, or `secret:KEY` for a
    /// reference into the env Secret.
    async fn pod_env(&self, ns: &str, sandbox: &str) -> Vec<(String, String)> {
        let sts: StatefulSet = self.api(ns).get(sandbox).await.unwrap();
        let spec = sts.spec.unwrap().template.spec.unwrap();
        let container = spec
            .containers
            .iter()
            .find(|c| c.name == kiln::k8s::objects::CONTAINER)
            .expect("the sandbox container");
        container
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let v = match (e.value, e.value_from) {
                    (Some(v), _) => v,
                    (None, Some(from)) => {
                        format!("secret:{}", from.secret_key_ref.unwrap().key)
                    }
                    (None, None) => String::new(),
                };
                (e.name, v)
            })
            .collect()
    }

    async fn env_secret(&self, ns: &str, sandbox: &str) -> Secret {
        let r = kiln::driver::ResourceRef {
            resource_name: sandbox.into(),
            namespace: ns.into(),
            project_slug: String::new(),
            owner: Uuid::nil(),
        };
        self.api(ns)
            .get(&kiln::k8s::objects::env_secret_name(&r))
            .await
            .unwrap()
    }

    /// Every object the emulator holds that carries Kiln's label.
    async fn kiln_objects(&self) -> Vec<String> {
        let dump = self.emu.objects().await;
        let mut out = Vec::new();
        collect_labelled(&dump, &mut out);
        out
    }
}

fn collect_labelled(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            let managed = m
                .get("metadata")
                .and_then(|md| md.get("labels"))
                .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                .and_then(|v| v.as_str())
                == Some("kiln");
            let kind = m.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            // The namespace and its network policies belong to the tenant,
            // not to a project: they stay when the last project goes.
            if managed && kind != "Namespace" && kind != "NetworkPolicy" {
                let name = m["metadata"]["name"].as_str().unwrap_or("?");
                out.push(format!("{kind}/{name}"));
            } else {
                for x in m.values() {
                    collect_labelled(x, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_labelled(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn full_lifecycle_on_the_server_cluster() {
    let h = Harness::new().await;
    let alice = h.user("alice").await;
    let ns = "kiln-alice";
    h.store
        .create_project(alice, "Web App", "", "alice")
        .await
        .unwrap();
    h.store
        .set_env(alice, "webapp", "PLAIN", "visible", false)
        .await
        .unwrap();
    h.store
        .set_env(alice, "webapp", "TOKEN", "hidden-value", true)
        .await
        .unwrap();
    let (sandbox, database) = h.names(alice, "webapp").await;
    let cluster = cluster_name(&resource(ns, &database));

    // create → (kubelet, KubeBlocks) → RUNNING, with DATABASE_URL in the pod.
    h.settle(alice, "webapp", ProjectStatus::Running, || h.play(ns))
        .await;
    let namespace: Namespace = Api::all(h.emu.client()).get(ns).await.unwrap();
    assert_eq!(
        namespace.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "kiln"
    );
    // The URL reaches the pod once the credentials exist: an env re-sync.
    eventually(
        "DATABASE_URL in the pod spec",
        Duration::from_secs(20),
        || async {
            h.play(ns).await;
            h.loop_.drain().await.unwrap();
            let env = h.pod_env(ns, &sandbox).await;
            env.iter()
                .any(|(k, v)| k == "DATABASE_URL" && v == "secret:DATABASE_URL")
                .then_some(())
        },
    )
    .await;
    let env = h.pod_env(ns, &sandbox).await;
    assert!(env.contains(&("PLAIN".into(), "visible".into())), "{env:?}");
    assert!(
        env.contains(&("TOKEN".into(), "secret:TOKEN".into())),
        "{env:?}"
    );
    assert!(
        env.contains(&("PROJECT_NAME".into(), "Web App".into())),
        "{env:?}"
    );
    let secret = h.env_secret(ns, &sandbox).await;
    let data = secret.data.unwrap();
    let url = String::from_utf8(data["DATABASE_URL"].0.clone()).unwrap();
    assert!(
        url.starts_with("postgres://postgres:s3cret-Pw@")
            && url.contains(&format!(
                "@{}-postgresql.",
                cluster_name(&resource(ns, &database))
            )),
        "{url}"
    );
    assert_eq!(data["TOKEN"].0, b"hidden-value");
    let sts_text =
        serde_json::to_string(&h.api::<StatefulSet>(ns).get(&sandbox).await.unwrap()).unwrap();
    assert!(!sts_text.contains("hidden-value") && !sts_text.contains("s3cret-Pw"));

    // An env change reaches the pod spec; a removed key leaves it.
    h.store.unset_env(alice, "webapp", "PLAIN").await.unwrap();
    h.store
        .set_env(alice, "webapp", "ADDED", "new", false)
        .await
        .unwrap();
    eventually(
        "the env change in the pod spec",
        Duration::from_secs(20),
        || async {
            h.play(ns).await;
            h.loop_.drain().await.unwrap();
            let env = h.pod_env(ns, &sandbox).await;
            (env.contains(&("ADDED".into(), "new".into()))
                && !env.iter().any(|(k, _)| k == "PLAIN"))
            .then_some(())
        },
    )
    .await;

    // stop → STOPPED: replicas 0 on both, the volume claim template kept.
    h.store
        .record_intent(alice, "webapp", Intent::Stop, "alice")
        .await
        .unwrap();
    h.settle(alice, "webapp", ProjectStatus::Stopped, || h.play(ns))
        .await;
    let sts: StatefulSet = h.api(ns).get(&sandbox).await.unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(0));
    let cluster = h.clusters(ns).get(&cluster).await.unwrap();
    assert_eq!(cluster.data["spec"]["componentSpecs"][0]["replicas"], 0);

    // start → RUNNING again.
    h.store
        .record_intent(alice, "webapp", Intent::Start, "alice")
        .await
        .unwrap();
    h.settle(alice, "webapp", ProjectStatus::Running, || h.play(ns))
        .await;
    let sts: StatefulSet = h.api(ns).get(&sandbox).await.unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(1));

    // delete → the rows go and nothing labelled kiln is left.
    h.store
        .record_intent(alice, "webapp", Intent::Delete, "alice")
        .await
        .unwrap();
    eventually(
        "the project to be gone",
        Duration::from_secs(30),
        || async {
            h.play(ns).await;
            h.loop_.drain().await.unwrap();
            h.store
                .find_project(alice, "webapp")
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert_eq!(h.kiln_objects().await, Vec::<String>::new());
    drop(h.backends);
}

#[tokio::test]
async fn a_hand_scaled_statefulset_is_noticed_and_put_back() {
    let h = Harness::new().await;
    let bob = h.user("bob").await;
    let ns = "kiln-bob";
    h.store.create_project(bob, "Svc", "", "bob").await.unwrap();
    let (sandbox, _) = h.names(bob, "svc").await;
    h.settle(bob, "svc", ProjectStatus::Running, || h.play(ns))
        .await;
    let events_before = h
        .store
        .list_events(
            bob,
            h.store.find_project(bob, "svc").await.unwrap().project.id,
            100,
        )
        .await
        .unwrap()
        .len();

    // Someone scales it to 0 by hand; its pods go.
    let sets: Api<StatefulSet> = h.api(ns);
    sets.patch(
        &sandbox,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    h.kubelet(ns).await;
    // Only the watch makes the row due (the periodic observation is a minute away).
    eventually(
        "the loop to notice and scale back",
        Duration::from_secs(20),
        || async {
            h.loop_.drain().await.unwrap();
            let s = sets.get(&sandbox).await.unwrap();
            (s.spec.unwrap().replicas == Some(1)).then_some(())
        },
    )
    .await;
    let p = h.store.find_project(bob, "svc").await.unwrap();
    let events = h.store.list_events(bob, p.project.id, 100).await.unwrap();
    assert!(events.len() > events_before, "the drift left an event");
    h.settle(bob, "svc", ProjectStatus::Running, || h.play(ns))
        .await;
}

#[tokio::test]
async fn two_tenants_get_two_namespaces_and_never_meet() {
    let h = Harness::new().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.store
        .create_project(alice, "Shop", "", "alice")
        .await
        .unwrap();
    h.store
        .create_project(bob, "Shop", "", "bob")
        .await
        .unwrap();
    let (a_sbx, _) = h.names(alice, "shop").await;
    let (b_sbx, _) = h.names(bob, "shop").await;
    h.settle(alice, "shop", ProjectStatus::Running, || async {
        h.play("kiln-alice").await;
        h.play("kiln-bob").await;
    })
    .await;
    h.settle(bob, "shop", ProjectStatus::Running, || async {
        h.play("kiln-alice").await;
        h.play("kiln-bob").await;
    })
    .await;
    assert_eq!(statefulsets(&h, "kiln-alice").await, vec![a_sbx.clone()]);
    assert_eq!(statefulsets(&h, "kiln-bob").await, vec![b_sbx.clone()]);
    // Bob deleting his project touches nothing of Alice's.
    h.store
        .record_intent(bob, "shop", Intent::Delete, "bob")
        .await
        .unwrap();
    eventually("bob's project to go", Duration::from_secs(30), || async {
        h.play("kiln-alice").await;
        h.play("kiln-bob").await;
        h.loop_.drain().await.unwrap();
        h.store
            .find_project(bob, "shop")
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert_eq!(statefulsets(&h, "kiln-alice").await, vec![a_sbx]);
    assert!(statefulsets(&h, "kiln-bob").await.is_empty());
    h.settle(alice, "shop", ProjectStatus::Running, || {
        h.play("kiln-alice")
    })
    .await;
    let p = h.store.find_project(alice, "shop").await.unwrap();
    assert!(
        p.resources
            .iter()
            .all(|r| r.status == ResourceStatus::Running)
    );
}

async fn statefulsets(h: &Harness, ns: &str) -> Vec<String> {
    h.api::<StatefulSet>(ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect()
}

fn resource(ns: &str, name: &str) -> kiln::driver::ResourceRef {
    kiln::driver::ResourceRef {
        resource_name: name.into(),
        namespace: ns.into(),
        project_slug: String::new(),
        owner: Uuid::nil(),
    }
}

#[tokio::test]
async fn the_hook_token_reaches_the_pod_through_the_secret_and_the_endpoint_takes_only_it() {
    let hook_url = "http://kiln-ops.kiln.svc:9090/hooks/v1/event";
    let h = Harness::with_config(ReconcileConfig {
        hook_url: Some(hook_url.into()),
        ..config()
    })
    .await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let ns = "kiln-alice";
    for (user, name) in [(alice, "webapp"), (bob, "shop")] {
        h.store.create_project(user, name, "", "t").await.unwrap();
    }
    let (sandbox, _) = h.names(alice, "webapp").await;
    let (bobs, _) = h.names(bob, "shop").await;
    h.settle(alice, "webapp", ProjectStatus::Running, || h.play(ns))
        .await;
    h.settle(bob, "shop", ProjectStatus::Running, || h.play("kiln-bob"))
        .await;

    // The URL is in the pod spec; the token only as a reference into the
    // sandbox's Secret, which holds this sandbox's own token.
    let env = h.pod_env(ns, &sandbox).await;
    assert!(
        env.contains(&("KILN_HOOK_URL".into(), hook_url.into())),
        "{env:?}"
    );
    assert!(
        env.contains(&("KILN_HOOK_TOKEN".into(), "secret:KILN_HOOK_TOKEN".into())),
        "{env:?}"
    );
    let secret = h.env_secret(ns, &sandbox).await;
    let token = String::from_utf8(secret.data.unwrap()["KILN_HOOK_TOKEN"].0.clone()).unwrap();
    assert_eq!(
        h.store.key().hook_token_sandbox(&token),
        Some(sandbox.as_str())
    );
    let bobs_secret = h.env_secret("kiln-bob", &bobs).await;
    let bobs_token =
        String::from_utf8(bobs_secret.data.unwrap()["KILN_HOOK_TOKEN"].0.clone()).unwrap();
    assert_ne!(token, bobs_token);

    // The endpoint, over real HTTP: the token from the Secret is taken for
    // alice's sandbox alone; a wrong one is refused and writes nothing.
    let (addr, stop) = crate::support::http::ops_listener(&h.store).await;
    let perm = br#"{"hook_event_name":"Notification","notification_type":"permission_prompt","message":"May I?"}"#;
    let path = "/hooks/v1/event";
    let wrong = format!("Bearer {bobs}.{}", token.rsplit_once('.').unwrap().1);
    let got =
        crate::support::http::request(addr, "POST", path, &[("Authorization", &wrong)], perm).await;
    assert_eq!(got.status, 401, "{got:?}");
    assert!(h.store.agent_states(bob).await.unwrap().is_empty());
    assert!(h.store.agent_states(alice).await.unwrap().is_empty());
    let right = format!("Bearer {token}");
    let got =
        crate::support::http::request(addr, "POST", path, &[("Authorization", &right)], perm).await;
    assert_eq!(got.status, 204, "{got:?}");
    let states = h.store.agent_states(alice).await.unwrap();
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0].state, kiln::model::agent::AgentState::NeedsInput);
    assert_eq!(states[0].message, "May I?");
    assert!(h.store.agent_states(bob).await.unwrap().is_empty());
    stop.cancel();
}
