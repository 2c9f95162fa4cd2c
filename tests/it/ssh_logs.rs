//! The sandbox log over SSH, against the Kubernetes API emulator: the
//! dashboard's log screen (detail → L) follows the pod's log live, and
//! `ssh host logs NAME` prints it. Another tenant's project reads as missing.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kiln::driver::{ResourceRef, SandboxLogs};
use kiln::k8s::cluster::K8sCluster;
use kiln::k8s::objects::{CONTAINER, pod_name};
use kiln::k8s::settings::K8sSettings;
use kiln::ssh::server::ConsoleDrivers;
use kiln::store::Store;
use kiln::store::resources::ResourceKind;
use kube::api::{Api, PostParams};
use russh::keys::PrivateKey;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::TestDb;
use crate::support::k8s::Emulator;
use crate::support::ssh::{connect, test_ssh_config};

const NS: &str = "kiln-alice";

struct Setup {
    addr: std::net::SocketAddr,
    _store: Store,
    emu: Emulator,
    pod: String,
    _db: TestDb,
    shutdown: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A console whose logs come from the emulator, alice with project "Shop"
/// whose sandbox pod exists and has printed two lines.
async fn setup() -> Setup {
    let db = TestDb::new().await;
    let store = db.store().await;
    let emu = Emulator::start().await;
    let alice = store
        .create_user("alice", Some("correct horse battery"), false)
        .await
        .unwrap();
    store
        .create_user("mallory", Some("another long password"), false)
        .await
        .unwrap();
    store
        .create_project(alice.id, "Shop", "", "alice")
        .await
        .unwrap();
    let view = store.find_project(alice.id, "Shop").await.unwrap();
    let sandbox = view
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    let r = ResourceRef {
        resource_name: sandbox.resource_name.clone(),
        namespace: NS.into(),
        project_slug: view.project.slug.clone(),
        owner: alice.id,
    };
    let pod = pod_name(&r);
    let manifest: Pod = serde_json::from_value(json!({
        "metadata": { "name": pod },
        "spec": { "containers": [{ "name": CONTAINER, "image": "kiln-runtime" }] }
    }))
    .unwrap();
    Api::<Pod>::namespaced(emu.client(), NS)
        .create(&PostParams::default(), &manifest)
        .await
        .unwrap();
    emu.set_log(
        NS,
        &pod,
        "2026-11-24T10:00:01.000000000Z server listening on :3000\n\
         2026-11-24T10:00:02.000000000Z GET / 200\n",
    )
    .await;

    let cluster = K8sCluster::new(emu.client(), NS, Arc::new(K8sSettings::default()));
    let logs: Arc<dyn SandboxLogs> = Arc::new(cluster);
    let feed = Arc::new(store.listen().await.unwrap());
    let listener = kiln::ssh::server::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let host_key = PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let (s, stop) = (store.clone(), shutdown.clone());
    tokio::spawn(async move {
        kiln::ssh::server::run(
            s,
            feed,
            ConsoleDrivers {
                attach: None,
                logs: Some(logs),
                ..ConsoleDrivers::default()
            },
            test_ssh_config(),
            host_key,
            listener,
            String::new(),
            stop,
        )
        .await
        .unwrap();
    });
    Setup {
        addr,
        _store: store,
        emu,
        pod,
        _db: db,
        shutdown,
    }
}

#[tokio::test]
async fn the_log_screen_follows_the_sandbox_log_live() {
    let s = setup().await;
    let mut c = connect(s.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let screen = c.shell(100, 30).await;
    screen.wait_for("Shop").await;
    screen.send(b"\r").await; // open the detail screen
    screen.wait_for("logs").await; // the key is offered in the footer
    screen.send(b"L").await;
    let text = screen.wait_for("GET / 200").await;
    assert!(text.contains("Sandbox log — Shop"), "{text}");
    assert!(text.contains("server listening on :3000"), "{text}");
    assert!(
        !text.contains("2026-11-24T10:00:01"),
        "timestamps are the follower's, not the reader's: {text}"
    );
    // New output appears without a key press.
    s.emu
        .append_log(NS, &s.pod, "2026-11-24T10:00:03.000000000Z POST /api 201\n")
        .await;
    screen.wait_for("POST /api 201").await;
    // Esc goes back to the detail screen and stops following.
    screen.send(b"\x1b").await;
    screen
        .wait_until("the detail screen", |t| !t.contains("Sandbox log"))
        .await;
}

#[tokio::test]
async fn logs_over_exec_and_another_tenant_sees_nothing() {
    let s = setup().await;
    let mut c = connect(s.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let out = c.exec("logs Shop", b"").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "server listening on :3000\nGET / 200\n");

    let out = c.exec("logs Shop --tail 1", b"").await;
    assert_eq!(out.stdout, "GET / 200\n", "{out:?}");

    let mut m = connect(s.addr).await;
    assert!(m.password("mallory", "another long password").await);
    let theirs = m.exec("logs Shop", b"").await;
    let missing = m.exec("logs NoSuchProject", b"").await;
    assert_eq!(theirs.code, Some(1));
    assert!(theirs.stdout.is_empty(), "{theirs:?}");
    assert_eq!(
        theirs.stderr.replace("Shop", "X"),
        missing.stderr.replace("NoSuchProject", "X"),
        "another tenant's project must read exactly like a missing one"
    );
}

/// `logs` applies the dashboard's display rules: a sandbox cannot write
/// the reader's clipboard (OSC 52), plant links (OSC 8), set titles, clear
/// the screen, end a bracketed paste, use C1 controls or flip text
/// direction. The text around the sequences survives, made inert.
#[tokio::test]
async fn logs_over_exec_are_filtered_as_the_log_screen_is() {
    let s = setup().await;
    let hostile = [
        "\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}clipboard",
        "\u{1b}]8;;https://evil.example\u{1b}\\link\u{1b}]8;;\u{1b}\\",
        "\u{1b}]0;fake title\u{7}title",
        "\u{1b}[2Jcleared",
        "\u{1b}[201~paste-end",
        "\u{9b}31mc1-csi \u{9d}0;c1-osc\u{9c}",
        "inv\u{202e}exe.txt",
    ];
    let log: String = hostile
        .iter()
        .enumerate()
        .map(|(i, l)| format!("2026-11-24T10:00:0{i}.000000000Z {l}\n"))
        .collect();
    s.emu.set_log(NS, &s.pod, &log).await;
    let mut c = connect(s.addr).await;
    assert!(c.password("alice", "correct horse battery").await);
    let out = c.exec("logs Shop", b"").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{9c}', '\u{9d}', '\u{202e}'] {
        assert!(
            !out.stdout.contains(bad),
            "{:?} reached the client: {:?}",
            bad,
            out.stdout
        );
    }
    let expected: Vec<String> = hostile.iter().map(|l| kiln::tui::text::clean(l)).collect();
    assert_eq!(out.stdout, format!("{}\n", expected.join("\n")));
    assert!(out.stdout.contains("?[2Jcleared"), "{}", out.stdout);
    assert!(out.stdout.contains("inv?exe.txt"), "{}", out.stdout);
}
