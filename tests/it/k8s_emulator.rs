//! Smoke tests of the Kubernetes API emulator (`tests/k8s_emulator/`) through
//! kube-rs: each feature the Kubernetes driver's tests rely on, over real HTTP.
//!
//! Over 500 lines: one smoke test per emulator feature the driver tests rely
//! on; they share nothing but the emulator.

use std::time::Duration;

use futures::{AsyncBufReadExt, SinkExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, ApiResource, AttachParams, DeleteParams, DynamicObject, GroupVersionKind, ListParams,
    LogParams, Patch, PatchParams, PostParams, TerminalSize,
};
use kube::runtime::watcher;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::k8s::Emulator;

const LIMIT: Duration = Duration::from_secs(10);

fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn statefulset(name: &str, labels: serde_json::Value) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "replicas": 1, "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } },
                          "spec": { "containers": [{ "name": "main", "image": "busybox" }] } }
        }
    }))
    .unwrap()
}

async fn pod(emu: &Emulator, ns: &str, name: &str) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(emu.client(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": { "containers": [{ "name": "main", "image": "busybox" }] }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods
}

#[tokio::test]
async fn namespaces_are_cluster_scoped_objects() {
    let emu = Emulator::start().await;
    let namespaces: Api<Namespace> = Api::all(emu.client());
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": "team-a" } })).unwrap();
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.resource_version.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let got = namespaces.get("team-a").await.unwrap();
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Active"));

    // Deleting a namespace deletes what is in it.
    let sts: Api<StatefulSet> = Api::namespaced(emu.client(), "team-a");
    sts.create(&PostParams::default(), &statefulset("db", json!({})))
        .await
        .unwrap();
    namespaces
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    assert!(namespaces.get_opt("team-a").await.unwrap().is_none());
    assert!(sts.get_opt("db").await.unwrap().is_none());
    assert_eq!(emu.objects().await, json!([]));
}

#[tokio::test]
async fn errors_carry_the_real_reasons() {
    let emu = Emulator::start().await;
    let sts: Api<StatefulSet> = Api::namespaced(emu.client(), "ns1");
    let first = sts
        .create(&PostParams::default(), &statefulset("db", json!({})))
        .await
        .unwrap();
    assert_eq!(first.metadata.namespace.as_deref(), Some("ns1"));
    assert_eq!(first.metadata.generation, Some(1));

    let again = api_status(
        sts.create(&PostParams::default(), &statefulset("db", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(again.code, 409);
    assert!(again.is_already_exists(), "{again:?}");

    assert!(sts.get_opt("missing").await.unwrap().is_none());
    let missing = api_status(sts.get("missing").await.unwrap_err());
    assert!(missing.is_not_found(), "{missing:?}");

    // PUT with a stale resourceVersion is a Conflict; with the current one it replaces.
    let mut stale = first.clone();
    sts.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": 2 } })),
    )
    .await
    .unwrap();
    stale.spec.as_mut().unwrap().replicas = Some(3);
    let conflict = api_status(
        sts.replace("db", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert!(conflict.is_conflict(), "{conflict:?}");
    let mut current = sts.get("db").await.unwrap();
    assert_eq!(current.metadata.generation, Some(2));
    current.spec.as_mut().unwrap().replicas = Some(3);
    let replaced = sts
        .replace("db", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().replicas, Some(3));
    assert_eq!(replaced.metadata.uid, first.metadata.uid);
}

#[tokio::test]
async fn server_side_apply_creates_a_missing_object() {
    let emu = Emulator::start().await;
    let sts: Api<StatefulSet> = Api::namespaced(emu.client(), "ns1");
    let applied = sts
        .patch(
            "db",
            &PatchParams::apply("kiln").force(),
            &Patch::Apply(statefulset("db", json!({ "app": "kiln" }))),
        )
        .await
        .unwrap();
    assert!(applied.metadata.uid.is_some());
    assert_eq!(
        sts.get("db").await.unwrap().metadata.uid,
        applied.metadata.uid
    );
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists_and_deletecollection() {
    let emu = Emulator::start().await;
    let sts: Api<StatefulSet> = Api::namespaced(emu.client(), "ns1");
    for (name, labels) in [
        ("web", json!({ "tier": "web", "kiln": "yes" })),
        ("db", json!({ "tier": "db", "kiln": "yes" })),
        ("other", json!({ "tier": "web" })),
    ] {
        sts.create(&PostParams::default(), &statefulset(name, labels))
            .await
            .unwrap();
    }
    let names = |list: kube::core::ObjectList<StatefulSet>| {
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect();
        names.sort();
        names
    };
    let list = |selector: &'static str| {
        let sts = sts.clone();
        async move {
            names(
                sts.list(&ListParams::default().labels(selector))
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(list("tier=web").await, ["other", "web"]);
    assert_eq!(list("tier==web,kiln").await, ["web"]);
    assert_eq!(list("tier!=web").await, ["db"]);
    assert_eq!(list("tier in (db, cache)").await, ["db"]);
    assert_eq!(list("tier notin (db),kiln").await, ["web"]);
    assert_eq!(list("!kiln").await, ["other"]);
    let by_name = sts
        .list(&ListParams::default().fields("metadata.name=db"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["db"]);
    let elsewhere: Api<StatefulSet> = Api::namespaced(emu.client(), "ns2");
    assert!(
        elsewhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let all: Api<StatefulSet> = Api::all(emu.client());
    let in_ns1 = all
        .list(&ListParams::default().fields("metadata.namespace=ns1"))
        .await
        .unwrap();
    assert_eq!(in_ns1.items.len(), 3);

    sts.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("kiln"),
    )
    .await
    .unwrap();
    assert_eq!(list("").await, ["other"]);
}

#[tokio::test]
async fn watcher_sees_apply_and_delete_of_a_labelled_statefulset() {
    let emu = Emulator::start().await;
    let sts: Api<StatefulSet> = Api::namespaced(emu.client(), "ns1");
    let mut events = watcher(sts.clone(), watcher::Config::default().labels("app=kiln")).boxed();
    let mut next = async || {
        tokio::time::timeout(LIMIT, events.try_next())
            .await
            .expect("a watch event in time")
            .expect("no watch error")
            .expect("the watch goes on")
    };
    assert!(matches!(next().await, watcher::Event::Init));
    assert!(matches!(next().await, watcher::Event::InitDone));

    sts.create(
        &PostParams::default(),
        &statefulset("ignored", json!({ "app": "other" })),
    )
    .await
    .unwrap();
    sts.create(
        &PostParams::default(),
        &statefulset("db", json!({ "app": "kiln" })),
    )
    .await
    .unwrap();
    match next().await {
        watcher::Event::Apply(s) => assert_eq!(s.metadata.name.as_deref(), Some("db")),
        other => panic!("expected Apply(db), got {other:?}"),
    }
    sts.delete("db", &DeleteParams::default()).await.unwrap();
    match next().await {
        watcher::Event::Delete(s) => assert_eq!(s.metadata.name.as_deref(), Some("db")),
        other => panic!("expected Delete(db), got {other:?}"),
    }
}

#[tokio::test]
async fn status_and_spec_are_written_separately() {
    let emu = Emulator::start().await;
    let sts: Api<StatefulSet> = Api::namespaced(emu.client(), "ns1");
    sts.create(&PostParams::default(), &statefulset("db", json!({})))
        .await
        .unwrap();

    let after_status = sts
        .patch_status(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 9 }, "status": { "replicas": 1, "readyReplicas": 1 } })),
        )
        .await
        .unwrap();
    assert_eq!(after_status.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        after_status.status.as_ref().unwrap().ready_replicas,
        Some(1)
    );
    assert_eq!(after_status.metadata.generation, Some(1));

    let after_spec = sts
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 0 }, "status": { "readyReplicas": 7 } })),
        )
        .await
        .unwrap();
    assert_eq!(after_spec.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(after_spec.status.as_ref().unwrap().ready_replicas, Some(1));
    assert_eq!(after_spec.metadata.generation, Some(2));
}

#[tokio::test]
async fn kubeblocks_cluster_as_a_dynamic_object() {
    let emu = Emulator::start().await;
    let gvk = GroupVersionKind::gvk("apps.kubeblocks.io", "v1alpha1", "Cluster");
    let (resource, caps) = kube::discovery::pinned_kind(&emu.client(), &gvk)
        .await
        .unwrap();
    assert_eq!(resource.plural, "clusters");
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "status"));

    let ar = ApiResource::from_gvk_with_plural(&gvk, "clusters");
    let clusters: Api<DynamicObject> = Api::namespaced_with(emu.client(), "ns1", &ar);
    let cluster = DynamicObject::new("pg", &ar).data(
        json!({ "spec": { "clusterDefinitionRef": "postgresql", "terminationPolicy": "Delete" } }),
    );
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    clusters
        .patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Running" } })),
        )
        .await
        .unwrap();
    let got = clusters.get("pg").await.unwrap();
    assert_eq!(got.data["status"]["phase"], "Running");
    assert_eq!(got.data["spec"]["clusterDefinitionRef"], "postgresql");
}

/// Reads from `out` until the text read so far contains `want`.
async fn read_until(out: &mut (impl tokio::io::AsyncRead + Unpin), seen: &mut String, want: &str) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(LIMIT, async {
        while !seen.contains(want) {
            let n = out.read(&mut buf).await.unwrap();
            assert!(n > 0, "stdout ended before {want:?}; got {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} on stdout; got {seen:?}"));
}

#[tokio::test]
async fn exec_with_a_tty_echoes_stdin_and_answers_resizes() {
    let emu = Emulator::start().await;
    let pods = pod(&emu, "ns1", "sandbox-0").await;
    let ap = AttachParams::interactive_tty().container("main");
    let mut proc = pods.exec("sandbox-0", ["sh", "-l"], &ap).await.unwrap();
    let mut stdin = proc.stdin().unwrap();
    let mut stdout = proc.stdout().unwrap();
    let mut sizes = proc.terminal_size().unwrap();
    let status = proc.take_status().unwrap();

    let mut seen = String::new();
    stdin.write_all(b"echo hi\r").await.unwrap();
    read_until(&mut stdout, &mut seen, "echo hi\r").await;
    sizes
        .send(TerminalSize {
            width: 100,
            height: 30,
        })
        .await
        .unwrap();
    read_until(&mut stdout, &mut seen, "\r\n[resize 100x30]\r\n").await;

    let calls = emu.exec_calls().await;
    assert_eq!(calls[0]["pod"], "sandbox-0");
    assert_eq!(calls[0]["namespace"], "ns1");
    assert_eq!(calls[0]["container"], "main");
    assert_eq!(calls[0]["argv"], json!(["sh", "-l"]));
    assert_eq!(calls[0]["tty"], true);
    assert_eq!(calls[0]["resizes"], json!([{ "width": 100, "height": 30 }]));

    stdin.write_all(b"\x04").await.unwrap(); // Ctrl-D ends the echo "shell"
    let status = tokio::time::timeout(LIMIT, status).await.unwrap().unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
    proc.join().await.unwrap();
}

#[tokio::test]
async fn exec_rules_give_canned_output_and_exit_codes() {
    let emu = Emulator::start().await;
    let pods = pod(&emu, "ns1", "db-0").await;
    emu.set_exec_rules(json!([
        { "contains": "psql", "stdout": "psql: ready\n", "stderr": "warning\n", "exit": 3 }
    ]))
    .await;
    let ap = AttachParams::default().stdout(true).stderr(true);
    let mut proc = pods
        .exec("db-0", ["psql", "-c", "select 1"], &ap)
        .await
        .unwrap();
    let mut stdout = proc.stdout().unwrap();
    let mut stderr = proc.stderr().unwrap();
    let status = proc.take_status().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    tokio::time::timeout(LIMIT, async {
        stdout.read_to_string(&mut out).await.unwrap();
        stderr.read_to_string(&mut err).await.unwrap();
    })
    .await
    .unwrap();
    assert_eq!(out, "psql: ready\n");
    assert_eq!(err, "warning\n");
    let status = status.await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("3"));

    // Exec needs the pod, as on a real cluster.
    let Err(missing) = pods.exec("nope", ["true"], &ap).await else {
        panic!("exec on a missing pod succeeded");
    };
    assert!(api_status(missing).is_not_found());
}

#[tokio::test]
async fn logs_follow_appended_text_until_ended() {
    let emu = Emulator::start().await;
    let pods = pod(&emu, "ns1", "sandbox-0").await;
    emu.set_log("ns1", "sandbox-0", "one\ntwo\nthree\n").await;
    let tail = LogParams {
        tail_lines: Some(2),
        ..LogParams::default()
    };
    assert_eq!(pods.logs("sandbox-0", &tail).await.unwrap(), "two\nthree\n");

    let follow = LogParams {
        follow: true,
        tail_lines: Some(1),
        ..LogParams::default()
    };
    let mut lines = pods.log_stream("sandbox-0", &follow).await.unwrap().lines();
    let mut next = async || {
        tokio::time::timeout(LIMIT, lines.try_next())
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(next().await.as_deref(), Some("three"));
    emu.append_log("ns1", "sandbox-0", "four\n").await;
    assert_eq!(next().await.as_deref(), Some("four"));
    emu.end_log("ns1", "sandbox-0").await;
    assert_eq!(next().await, None);

    // Deleting the pod also ends a follower.
    emu.set_log("ns1", "sandbox-0", "again\n").await;
    let mut lines = pods.log_stream("sandbox-0", &follow).await.unwrap().lines();
    let mut next = async || {
        tokio::time::timeout(LIMIT, lines.try_next())
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(next().await.as_deref(), Some("again"));
    pods.delete("sandbox-0", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(next().await, None);
}

#[tokio::test]
async fn injected_failures_then_success() {
    let emu = Emulator::start().await;
    emu.fail(
        json!([{ "method": "POST", "path_contains": "statefulsets", "status": 500, "times": 2 }]),
    )
    .await;
    let sts: Api<StatefulSet> = Api::namespaced(emu.client(), "ns1");
    for _ in 0..2 {
        let err = api_status(
            sts.create(&PostParams::default(), &statefulset("db", json!({})))
                .await
                .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    }
    sts.create(&PostParams::default(), &statefulset("db", json!({})))
        .await
        .unwrap();

    emu.fail(json!([{ "method": "GET", "path_contains": "statefulsets/db", "status": 403 }]))
        .await;
    assert!(api_status(sts.get("db").await.unwrap_err()).is_forbidden());

    // A delay outlasts a client-side deadline.
    emu.fail(json!([{ "path_contains": "statefulsets", "delay_ms": 2000, "times": 1 }]))
        .await;
    let slow = tokio::time::timeout(Duration::from_millis(300), sts.get("db")).await;
    assert!(slow.is_err(), "the delayed request answered early");
    assert!(sts.get("db").await.is_ok());
}

#[tokio::test]
async fn access_reviews_are_allowed_unless_denied() {
    let emu = Emulator::start().await;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(emu.client());
    let review = |ns: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.to_string()),
                verb: Some("create".into()),
                group: Some("apps".into()),
                resource: Some("statefulsets".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let ok = reviews
        .create(&PostParams::default(), &review("ns1"))
        .await
        .unwrap();
    assert!(ok.status.unwrap().allowed);
    emu.deny_namespaces(&["ns1"]).await;
    let denied = reviews
        .create(&PostParams::default(), &review("ns1"))
        .await
        .unwrap();
    let status = denied.status.unwrap();
    assert!(!status.allowed);
    assert!(status.reason.unwrap().contains("ns1"));
    assert_eq!(emu.reviews().await.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn strategic_patches_and_finalizers() {
    let emu = Emulator::start().await;
    let sts: Api<StatefulSet> = Api::namespaced(emu.client(), "ns1");
    sts.create(
        &PostParams::default(),
        &statefulset("db", json!({ "a": "1" })),
    )
    .await
    .unwrap();
    // (JSON patch needs kube's `jsonpatch` feature, which Kiln does not enable.)
    let patched = sts
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 4 }, "metadata": { "finalizers": ["kiln.dev/cleanup"] } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(4));
    let patched = sts
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Strategic(json!({ "metadata": { "labels": { "b": "2" } } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap().len(), 2);

    // A finalizer holds the deletion until it is removed.
    sts.delete("db", &DeleteParams::default()).await.unwrap();
    let held = sts.get("db").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    sts.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    assert!(sts.get_opt("db").await.unwrap().is_none());
}

#[tokio::test]
async fn deleting_the_pod_ends_an_exec_session() {
    let emu = Emulator::start().await;
    let pods = pod(&emu, "ns1", "sandbox-0").await;
    let mut proc = pods
        .exec("sandbox-0", ["bash"], &AttachParams::interactive_tty())
        .await
        .unwrap();
    let mut stdout = proc.stdout().unwrap();
    let _stdin = proc.stdin().unwrap();
    pods.delete("sandbox-0", &DeleteParams::default())
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, stdout.read_to_end(&mut rest))
        .await
        .expect("stdout ends when the pod is deleted")
        .unwrap();
}
