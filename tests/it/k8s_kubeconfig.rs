//! Validating a tenant's kubeconfig against the Kubernetes API emulator: a
//! good one yields its namespace and a working client; an unreachable, slow,
//! unauthorised or denied one is refused with the reason.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kiln::k8s::kubeconfig::{self, ApiServerPolicy, KubeconfigError};

/// The emulator listens on loopback, which only an operator's opt-in allows.
const LOOPBACK_OK: ApiServerPolicy = ApiServerPolicy::ALLOW_PRIVATE;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::k8s::Emulator;

#[tokio::test]
async fn a_good_kubeconfig_validates_and_its_client_uses_the_namespace() {
    let emu = Emulator::start().await;
    let tenant = kubeconfig::validate(&emu.kubeconfig("team-a"), LOOPBACK_OK)
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
    let client = tenant.client(LOOPBACK_OK).await.unwrap();
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
async fn an_unreachable_server_is_refused_without_saying_why() {
    // A loopback port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let emu = Emulator::start().await;
    let yaml = emu
        .kubeconfig("team-a")
        .replace(&emu.url(), &format!("http://127.0.0.1:{port}"));
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        kubeconfig::validate(&yaml, LOOPBACK_OK),
    )
    .await
    .expect("validation is bounded")
    .unwrap_err();
    match &err {
        KubeconfigError::Unreachable { server, reason } => {
            assert_eq!(server, &format!("http://127.0.0.1:{port}"));
            // Refused, reset or another protocol all read the same: the
            // errors must not map which ports are open.
            assert!(!reason.to_lowercase().contains("refused"), "{reason}");
            assert!(err_text_is_unreachable(&err), "{err}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(!err.to_string().contains("emulator-token"), "{err}");
}

#[tokio::test]
async fn a_denied_namespace_is_refused_with_the_review_reason() {
    let emu = Emulator::start().await;
    emu.deny_namespaces(&["team-b"]).await;
    let err = kubeconfig::validate(&emu.kubeconfig("team-b"), LOOPBACK_OK)
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
    kubeconfig::validate(&emu.kubeconfig("team-a"), LOOPBACK_OK)
        .await
        .unwrap();
}

#[tokio::test]
async fn rejected_credentials_and_slow_servers_are_refused() {
    let emu = Emulator::start().await;
    emu.fail(json!([{ "path_contains": "/version", "status": 401, "times": 1 }]))
        .await;
    let err = kubeconfig::validate(&emu.kubeconfig("team-a"), LOOPBACK_OK)
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
    let err = kubeconfig::validate_within(
        &emu.kubeconfig("team-a"),
        Duration::from_millis(500),
        LOOPBACK_OK,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KubeconfigError::Timeout { .. }), "{err:?}");
}

fn err_text_is_unreachable(err: &KubeconfigError) -> bool {
    err.to_string().contains("unreachable")
}

/// A listener on loopback that answers like no API server: the answer is
/// the same as for a closed port, and its body is never echoed.
#[tokio::test]
async fn a_listener_that_is_not_an_api_server_reads_as_unreachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"SSH-2.0-OpenSSH_9.6 internal-banner-do-not-echo\r\n")
                .await;
        }
    });
    let emu = Emulator::start().await;
    let yaml = emu
        .kubeconfig("team-a")
        .replace(&emu.url(), &format!("http://127.0.0.1:{port}"));
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        kubeconfig::validate(&yaml, LOOPBACK_OK),
    )
    .await
    .expect("validation is bounded")
    .unwrap_err();
    assert!(err_text_is_unreachable(&err), "{err:?}");
    assert!(!err.to_string().contains("internal-banner"), "{err}");
    assert!(!err.to_string().contains("OpenSSH"), "{err}");
}

/// With private API servers not allowed (the default), a kubeconfig naming
/// a loopback listener is refused before any connection is made: the
/// listener never sees Kiln, so neither the token nor a probe reaches it.
#[tokio::test]
async fn a_loopback_api_server_is_refused_without_contacting_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let emu = Emulator::start().await;
    for host in [
        format!("http://127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
    ] {
        let yaml = emu.kubeconfig("team-a").replace(&emu.url(), &host);
        let err = kubeconfig::validate(&yaml, ApiServerPolicy::default())
            .await
            .unwrap_err();
        match &err {
            KubeconfigError::Unreachable { reason, .. } => {
                assert!(
                    reason.contains("allow_private_api_servers"),
                    "{host}: {reason}"
                );
            }
            other => panic!("{host}: expected Unreachable, got {other:?}"),
        }
        assert!(!err.to_string().contains("emulator-token"), "{err}");
    }
    // Nothing connected: a pending connection would be accepted here.
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("Kiln connected to the loopback listener from {from}"),
        Err(e) => panic!("accept failed: {e}"),
    }
    // The same kubeconfig against the emulator is refused too, while the
    // operator's opt-in lets it through.
    let err = kubeconfig::validate(&emu.kubeconfig("team-a"), ApiServerPolicy::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, KubeconfigError::Unreachable { .. }),
        "{err:?}"
    );
    kubeconfig::validate(&emu.kubeconfig("team-a"), LOOPBACK_OK)
        .await
        .unwrap();
}
