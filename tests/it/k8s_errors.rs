//! How the Kubernetes back end meets a misbehaving API server, through the
//! real reconcile loop: 5xx answers keep the status and retry with backoff,
//! 403 puts the resource in ERROR with the server's reason, and an object
//! that already exists (409 on create) is adopted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use kiln::k8s::settings::K8sSettings;
use kiln::model::ResourceStatus;
use kiln::reconcile::{ReconcileConfig, Reconciler};
use kiln::store::Store;
use kiln::store::resources::ResourceKind;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;
use uuid::Uuid;

use crate::support::k8s::Emulator;
use crate::support::{TestDb, eventually};

struct Setup {
    _db: TestDb,
    store: Store,
    emu: Emulator,
    r: Reconciler,
    user: Uuid,
}

async fn setup() -> Setup {
    setup_with(K8sSettings::default()).await
}

async fn setup_with(settings: K8sSettings) -> Setup {
    let db = TestDb::new().await;
    let store = db.store().await;
    let emu = Emulator::start().await;
    let backends = Arc::new(crate::support::k8s::server_backends(&emu, &store, settings));
    let mut config = ReconcileConfig {
        resync: Duration::from_millis(50),
        ..Default::default()
    };
    config.schedule.poll_interval = Duration::from_millis(50);
    config.schedule.backoff_base = Duration::from_millis(50);
    config.schedule.backoff_cap = Duration::from_millis(200);
    let r = Reconciler::new(store.clone(), backends.clone(), backends, config, "t");
    let user = store
        .create_user("alice", Some("a long password"), false)
        .await
        .unwrap()
        .id;
    Setup {
        _db: db,
        store,
        emu,
        r,
        user,
    }
}

/// The sandbox row: status, attempts, last error.
async fn sandbox(s: &Setup, project: &str) -> (ResourceStatus, i32, Option<String>) {
    let p = s.store.find_project(s.user, project).await.unwrap();
    let r = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    (r.status, r.attempts, r.last_error.clone())
}

#[tokio::test]
async fn server_errors_keep_the_status_and_are_retried() {
    let s = setup().await;
    s.emu
        .fail(json!([{ "method": "POST", "path_contains": "statefulsets", "status": 500, "times": 3 }]))
        .await;
    s.store
        .create_project(s.user, "Api", "", "alice")
        .await
        .unwrap();
    // The failure is recorded on the row, which keeps its status.
    let (status, attempts, error) =
        eventually("a recorded failure", Duration::from_secs(20), || async {
            s.r.drain().await.unwrap();
            let row = sandbox(&s, "api").await;
            (row.1 > 0).then_some(row)
        })
        .await;
    assert_eq!(status, ResourceStatus::Creating);
    assert!(attempts >= 1);
    assert!(error.unwrap().contains("500"));
    // Once the server recovers, the next attempt goes through.
    let sets: Api<StatefulSet> = Api::namespaced(s.emu.client(), "kiln-alice");
    eventually(
        "the statefulset after the retries",
        Duration::from_secs(20),
        || async {
            s.r.drain().await.unwrap();
            sets.get_opt(&sandbox_name(&s, "api").await).await.unwrap()
        },
    )
    .await;
    let (status, attempts, _) = sandbox(&s, "api").await;
    assert_ne!(status, ResourceStatus::Error);
    assert_eq!(attempts, 0, "a success resets the attempt count");
}

#[tokio::test]
async fn a_hung_api_call_times_out_keeps_the_status_and_is_retried() {
    let s = setup_with(K8sSettings {
        api_timeout_secs: 1,
        ..K8sSettings::default()
    })
    .await;
    // The server sits on the create for longer than Kiln waits (and then
    // performs it anyway, as a slow real server would).
    s.emu
        .fail(json!([{
            "method": "POST", "path_contains": "statefulsets", "delay_ms": 2500, "times": 2
        }]))
        .await;
    s.store
        .create_project(s.user, "Slow", "", "alice")
        .await
        .unwrap();
    let (status, _, error) = eventually("a recorded timeout", Duration::from_secs(20), || async {
        s.r.drain().await.unwrap();
        let row = sandbox(&s, "slow").await;
        (row.1 > 0).then_some(row)
    })
    .await;
    assert_eq!(status, ResourceStatus::Creating);
    let error = error.unwrap();
    assert!(error.contains("did not answer within 1s"), "{error}");
    // Later attempts find the object the slow create made and adopt it.
    let sets: Api<StatefulSet> = Api::namespaced(s.emu.client(), "kiln-alice");
    let name = sandbox_name(&s, "slow").await;
    eventually(
        "the sandbox after the retries",
        Duration::from_secs(30),
        || async {
            s.r.drain().await.unwrap();
            let row = sandbox(&s, "slow").await;
            let exists = sets.get_opt(&name).await.unwrap().is_some();
            (exists && row.1 == 0 && row.0 != ResourceStatus::Error).then_some(())
        },
    )
    .await;
}

async fn sandbox_name(s: &Setup, project: &str) -> String {
    let p = s.store.find_project(s.user, project).await.unwrap();
    p.resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap()
        .resource_name
        .clone()
}

#[tokio::test]
async fn forbidden_is_an_error_with_the_servers_reason() {
    let s = setup().await;
    s.emu
        .fail(json!([{
            "method": "POST", "path_contains": "statefulsets", "status": 403,
            "reason": "Forbidden",
            "message": "statefulsets.apps is forbidden: quota exceeded for team"
        }]))
        .await;
    s.store
        .create_project(s.user, "Locked", "", "alice")
        .await
        .unwrap();
    let (status, _, error) = eventually("ERROR", Duration::from_secs(20), || async {
        s.r.drain().await.unwrap();
        let row = sandbox(&s, "locked").await;
        (row.0 == ResourceStatus::Error).then_some(row)
    })
    .await;
    assert_eq!(status, ResourceStatus::Error);
    let error = error.unwrap();
    assert!(
        error.contains("forbidden") && error.contains("quota exceeded"),
        "{error}"
    );
}

#[tokio::test]
async fn an_existing_statefulset_is_adopted() {
    let s = setup().await;
    s.store
        .create_project(s.user, "Adopt", "", "alice")
        .await
        .unwrap();
    let name = sandbox_name(&s, "adopt").await;
    // Someone (a previous replica that died mid-create) made it already,
    // labelled as Kiln labels alice's namespace.
    let ns: Api<Namespace> = Api::all(s.emu.client());
    ns.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some("kiln-alice".into()),
                labels: Some(
                    [
                        ("app.kubernetes.io/managed-by", "kiln".to_string()),
                        ("kiln.dev/tenant-id", s.user.to_string()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        },
    )
    .await
    .unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(s.emu.client(), "kiln-alice");
    let stale: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": name },
        "spec": {
            "replicas": 0,
            "serviceName": name,
            "selector": { "matchLabels": { "stale": "yes" } },
            "template": { "metadata": { "labels": { "stale": "yes" } },
                          "spec": { "containers": [{ "name": "old", "image": "old:1" }] } }
        }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &stale).await.unwrap();
    eventually(
        "the adopted statefulset in shape",
        Duration::from_secs(20),
        || async {
            s.r.drain().await.unwrap();
            let sts = sets.get(&name).await.unwrap();
            let spec = sts.spec.unwrap();
            let image = spec.template.spec.as_ref().unwrap().containers[0]
                .image
                .clone();
            (spec.replicas == Some(1) && image == Some(K8sSettings::default().image)).then_some(())
        },
    )
    .await;
    let (status, _, error) = sandbox(&s, "adopt").await;
    assert_ne!(status, ResourceStatus::Error, "{error:?}");
}

/// A namespace that exists but that Kiln did not create for the user (here
/// `kiln-system`, which the user `system` would map to) is never adopted:
/// the project fails with the reason and nothing is created in it.
#[tokio::test]
async fn a_namespace_kiln_did_not_create_is_not_adopted() {
    let s = setup().await;
    let ns: Api<Namespace> = Api::all(s.emu.client());
    ns.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some("kiln-system".into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        },
    )
    .await
    .unwrap();
    let system = s
        .store
        .create_user("system", Some("a long password"), false)
        .await
        .unwrap()
        .id;
    s.store
        .create_project(system, "Probe", "", "system")
        .await
        .unwrap();
    let error = eventually("the refusal", Duration::from_secs(20), || async {
        s.r.drain().await.unwrap();
        let p = s.store.find_project(system, "probe").await.unwrap();
        p.resources
            .iter()
            .find(|r| r.kind == ResourceKind::Sandbox)
            .and_then(|r| r.last_error.clone())
    })
    .await;
    assert!(error.contains("kiln-system"), "{error}");
    assert!(error.contains("did not create"), "{error}");
    let sets: Api<StatefulSet> = Api::namespaced(s.emu.client(), "kiln-system");
    assert!(
        sets.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing was created in a namespace Kiln does not own"
    );
    let labels = ns.get("kiln-system").await.unwrap().metadata.labels;
    assert!(labels.unwrap_or_default().is_empty(), "it was left alone");
}

/// A username that is not a DNS label (`bob.smith`) still gets a valid
/// namespace of its own, and its projects run there.
#[tokio::test]
async fn a_username_with_a_dot_gets_a_valid_namespace() {
    let s = setup().await;
    let bob = s
        .store
        .create_user("bob.smith", Some("a long password"), false)
        .await
        .unwrap()
        .id;
    s.store
        .create_project(bob, "Blog", "", "bob.smith")
        .await
        .unwrap();
    let expected = kiln::backends::tenant_namespace("bob.smith", bob);
    assert!(expected.starts_with("kiln-bob-smith-"), "{expected}");
    let sets: Api<StatefulSet> = Api::namespaced(s.emu.client(), &expected);
    eventually("bob's sandbox", Duration::from_secs(20), || async {
        s.r.drain().await.unwrap();
        let n = sets.list(&Default::default()).await.unwrap().items.len();
        (n == 1).then_some(())
    })
    .await;
    let ns: Api<Namespace> = Api::all(s.emu.client());
    let labels = ns.get(&expected).await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get("kiln.dev/tenant-id"), Some(&bob.to_string()));
}
