//! Validating a tenant's kubeconfig against the Kubernetes API emulator: a
//! good one yields its namespace and a working client; an unreachable, slow,
//! unauthorised or denied one is refused with the reason.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kiln::k8s::kubeconfig::{self, KubeconfigError};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::k8s::Emulator;

#[tokio::test]
async fn a_good_kubeconfig_validates_and_its_client_uses_the_namespace() {
    let emu = Emulator::start().await;
    let tenant = kubeconfig::validate(&emu.kubeconfig("team-a"))
        .await
        .unwrap();
    assert_eq!(tenant.namespace, "team-a");
    assert_eq!(tenant.context, "tenant@emulator");
    assert_eq!(tenant.server, emu.url());

    // The review asked about the tenant's namespace.
    let reviews = emu.reviews().await;
    assert_eq!(reviews[0]["namespace"], "team-a");
    assert_eq!(reviews[0]["resource"], "statefulsets");
    assert_eq!(reviews[0]["verb"], "create");

    // The client's default namespace is the tenant's.
    let client = tenant.client().await.unwrap();
    let sts: Api<StatefulSet> = Api::default_namespaced(client);
    let created = sts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "probe" },
                "spec": { "selector": {}, "template": {} }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("team-a"));
}

#[tokio::test]
async fn an_unreachable_server_is_refused_with_the_reason() {
    // A loopback port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let emu = Emulator::start().await;
    let yaml = emu
        .kubeconfig("team-a")
        .replace(&emu.url(), &format!("http://127.0.0.1:{port}"));
    let err = tokio::time::timeout(Duration::from_secs(20), kubeconfig::validate(&yaml))
        .await
        .expect("validation is bounded")
        .unwrap_err();
    match &err {
        KubeconfigError::Unreachable { server, reason } => {
            assert_eq!(server, &format!("http://127.0.0.1:{port}"));
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(!err.to_string().contains("emulator-token"), "{err}");
}

#[tokio::test]
async fn a_denied_namespace_is_refused_with_the_review_reason() {
    let emu = Emulator::start().await;
    emu.deny_namespaces(&["team-b"]).await;
    let err = kubeconfig::validate(&emu.kubeconfig("team-b"))
        .await
        .unwrap_err();
    match &err {
        KubeconfigError::Denied {
            namespace,
            access,
            reason,
        } => {
            assert_eq!(namespace, "team-b");
            assert_eq!(access, "create statefulsets.apps");
            assert!(reason.contains("team-b"), "{reason}");
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    assert!(err.to_string().contains("Role"), "{err}");
    // Another namespace on the same cluster is fine.
    kubeconfig::validate(&emu.kubeconfig("team-a"))
        .await
        .unwrap();
}

#[tokio::test]
async fn rejected_credentials_and_slow_servers_are_refused() {
    let emu = Emulator::start().await;
    emu.fail(json!([{ "path_contains": "/version", "status": 401, "times": 1 }]))
        .await;
    let err = kubeconfig::validate(&emu.kubeconfig("team-a"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KubeconfigError::Unauthorized { .. }),
        "{err:?}"
    );

    emu.fail(
        json!([{ "path_contains": "selfsubjectaccessreviews", "delay_ms": 3000, "times": 1 }]),
    )
    .await;
    let err = kubeconfig::validate_within(&emu.kubeconfig("team-a"), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, KubeconfigError::Timeout { .. }), "{err:?}");
}
