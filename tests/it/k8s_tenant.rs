//! A tenant's own kubeconfig, end to end: `kubeconfig set` over exec checks
//! it against the (emulated) cluster before storing anything, and once it is
//! stored the user's projects run in its namespace through the real
//! reconcile loop.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kiln::backends::{Backends, LocalBackend};
use kiln::fake_driver::FakeDriver;
use kiln::k8s::kubeconfig::ApiServerPolicy;
use kiln::k8s::settings::K8sSettings;
use kiln::reconcile::Reconciler;
use kiln::ssh::exec;
use kiln::store::Store;
use kiln::store::users::User;
use kube::api::{Api, ListParams};

use crate::support::k8s::Emulator;
use crate::support::{TestDb, eventually};

async fn user(store: &Store, name: &str) -> User {
    store
        .create_user(name, Some("a long password"), false)
        .await
        .unwrap()
}

/// Runs one exec command; (stdout, stderr, exit code).
async fn run(store: &Store, u: &User, line: &str, stdin: &str) -> (String, String, u32) {
    let o = exec::run(
        &kiln::console::Console::new(store.clone(), None, None)
            // The emulator listens on loopback.
            .with_api_servers(ApiServerPolicy::ALLOW_PRIVATE)
            .as_user(u.clone(), kiln::console::Front::Exec),
        line,
        stdin.as_bytes(),
    )
    .await;
    (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
        o.code,
    )
}

async fn stored(store: &Store, u: &User) -> Option<String> {
    store.tenant_backend_inputs(u.id).await.unwrap().1
}

#[tokio::test]
async fn a_bad_kubeconfig_is_refused_with_its_reason_and_nothing_is_stored() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let emu = Emulator::start().await;
    let alice = user(&store, "alice").await;
    let good = emu.kubeconfig("team-a");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = good.replace(&emu.url(), &format!("http://127.0.0.1:{dead_port}"));
    let marker = format!("/tmp/kiln-exec-plugin-{}", uuid::Uuid::new_v4().simple());
    let exec_plugin = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u, namespace: team-a}}\nclusters:\n- name: k\n  cluster: {{server: \"{}\"}}\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"touch {marker}\"]\n",
        emu.url()
    );
    emu.deny_namespaces(&["forbidden"]).await;
    let forbidden = emu.kubeconfig("forbidden");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed",
            "apiVersion: v1\nclusters: [oops".into(),
            "yaml",
        ),
        (
            "no current context",
            good.replace("current-context:", "previous-context:"),
            "context",
        ),
        ("unreachable", unreachable, "127.0.0.1"),
        ("exec plugin", exec_plugin, "exec"),
        ("forbidden namespace", forbidden, "forbidden"),
    ];
    for (what, text, expect) in cases {
        let (out, err, code) = run(&store, &alice, "kubeconfig set", &text).await;
        assert_eq!(code, 1, "{what}: {out} {err}");
        assert!(
            err.to_lowercase().contains(expect),
            "{what}: the reason names {expect:?}: {err}"
        );
        assert_eq!(stored(&store, &alice).await, None, "{what}: nothing stored");
    }
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the exec plugin never ran"
    );
    // The good one is stored, encrypted, and never printed back.
    let (out, err, code) = run(&store, &alice, "kubeconfig set --json", &good).await;
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["namespace"], "team-a");
    assert_eq!(stored(&store, &alice).await.as_deref(), Some(good.as_str()));
    let raw: Vec<u8> = sqlx::query_scalar(
        "SELECT coalesce(value_enc, convert_to(value, 'UTF8')) FROM user_configs WHERE key = 'KUBECONFIG'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&raw).contains("current-context"),
        "stored encrypted"
    );
    let (out, _, code) = run(&store, &alice, "kubeconfig", "").await;
    assert_eq!(code, 0);
    assert!(out.contains("team-a") && !out.contains("token"), "{out}");
}

#[tokio::test]
async fn a_users_kubeconfig_puts_their_projects_in_its_namespace() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let emu = Emulator::start().await;
    let alice = user(&store, "alice").await;
    let (_, err, code) = run(&store, &alice, "kubeconfig set", &emu.kubeconfig("team-a")).await;
    assert_eq!(code, 0, "{err}");
    let fake = Arc::new(FakeDriver::new());
    let backends = Arc::new(Backends::new(
        LocalBackend {
            sandboxes: fake.clone(),
            databases: fake.clone(),
            attach: None,
        },
        None,
        Arc::new(K8sSettings {
            allow_private_api_servers: true,
            ..K8sSettings::default()
        }),
        Arc::new(store.clone()),
    ));
    // Retries within 200 ms: a transient error under load must not push
    // the next try past the wait below (the default backoff reaches 8 s).
    let config = crate::support::k8s::quick_reconcile();
    let r = Reconciler::new(store.clone(), backends.clone(), backends, config, "t");
    let (_, err, code) = run(&store, &alice, "create Blog", "").await;
    assert_eq!(code, 0, "{err}");
    let sets: Api<StatefulSet> = Api::namespaced(emu.client(), "team-a");
    eventually("the sandbox in team-a", Duration::from_secs(60), || async {
        r.drain().await.unwrap();
        let n = sets.list(&ListParams::default()).await.unwrap().items.len();
        (n == 1).then_some(())
    })
    .await;
    // Nothing went to the local driver.
    use kiln::fake_driver::{Kind, Op};
    assert_eq!(fake.total_calls(Kind::Sandbox, Op::Ensure), 0);
    // With a project in place the kubeconfig cannot change under it.
    let (_, err, code) = run(&store, &alice, "kubeconfig unset", "").await;
    assert_eq!(code, 1);
    assert!(err.contains("project"), "{err}");
    assert!(stored(&store, &alice).await.is_some());
}
