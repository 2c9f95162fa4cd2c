//! Attach on Kubernetes through the API emulator's pod exec endpoint: the
//! exec runs tmux in the sandbox container, keystrokes and output cross the
//! websocket both ways, and the viewer's size goes through the resize
//! channel. The emulator's exec echoes stdin and answers each resize with
//! `[resize WxH]`, so what comes back proves what went in.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kiln::driver::{Attachment, ResourceRef, SessionAttach, SessionInfo, Viewer};
use kiln::k8s::attach::attach_command;
use kiln::k8s::cluster::K8sCluster;
use kiln::k8s::objects::{CONTAINER, DEFAULT_SESSION, pod_name};
use kiln::k8s::settings::K8sSettings;
use kube::api::{Api, PostParams};
use serde_json::json;
use uuid::Uuid;

use crate::support::k8s::Emulator;

const NS: &str = "kiln-alice";
const LIMIT: Duration = Duration::from_secs(10);

fn sandbox() -> ResourceRef {
    ResourceRef {
        resource_name: "shop-agentruntime-a1b2c3".into(),
        namespace: NS.into(),
        project_slug: "shop".into(),
        owner: Uuid::new_v4(),
    }
}

/// The emulator with the sandbox's pod (exec needs the pod, as on a cluster).
async fn setup() -> (Emulator, K8sCluster) {
    let emu = Emulator::start().await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": pod_name(&sandbox()) },
        "spec": { "containers": [{ "name": CONTAINER, "image": "kiln-runtime" }] }
    }))
    .unwrap();
    Api::<Pod>::namespaced(emu.client(), NS)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let cluster = K8sCluster::new(emu.client(), NS, Arc::new(K8sSettings::default()));
    (emu, cluster)
}

/// Reads the attachment's output until `want` has arrived; returns all of it.
async fn read_until(a: &mut Attachment, seen: &mut String, want: &str) {
    tokio::time::timeout(LIMIT, async {
        while !seen.contains(want) {
            let bytes = a.output.recv().await.expect("the session ended");
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} in the pane; got {seen:?}"));
}

#[tokio::test]
async fn keys_and_output_cross_the_exec_and_resizes_reach_the_pty() {
    let (emu, cluster) = setup().await;
    let mut a = cluster
        .attach(&sandbox(), None, &Viewer::pane(120, 40, false))
        .await
        .unwrap();
    let mut seen = String::new();
    // The first size is sent before any output is read.
    read_until(&mut a, &mut seen, "[resize 120x40]").await;
    assert!(a.input.try_send(b"echo from-the-pane\r".to_vec()));
    read_until(&mut a, &mut seen, "echo from-the-pane\r").await;
    a.resize.send((100, 30)).await.unwrap();
    read_until(&mut a, &mut seen, "[resize 100x30]").await;

    let calls = emu.exec_calls().await;
    let call = &calls[0];
    assert_eq!(call["pod"], pod_name(&sandbox()));
    assert_eq!(call["namespace"], NS);
    assert_eq!(call["container"], CONTAINER);
    assert_eq!(call["tty"], true);
    assert_eq!(
        call["argv"],
        json!(attach_command(DEFAULT_SESSION, false, None))
    );
    assert_eq!(
        call["resizes"],
        json!([{ "width": 120, "height": 40 }, { "width": 100, "height": 30 }])
    );
}

#[tokio::test]
async fn a_direct_viewers_terminal_type_reaches_the_pod_as_an_argument() {
    let (emu, cluster) = setup().await;
    let viewer = Viewer {
        term: Some("screen-256color".into()),
        ..Viewer::pane(80, 24, false)
    };
    let mut a = cluster.attach(&sandbox(), None, &viewer).await.unwrap();
    let mut seen = String::new();
    read_until(&mut a, &mut seen, "[resize 80x24]").await;
    let calls = emu.exec_calls().await;
    let argv = &calls[0]["argv"];
    assert_eq!(
        *argv,
        json!(attach_command(
            DEFAULT_SESSION,
            false,
            Some("screen-256color")
        ))
    );
    assert_eq!(argv[3], "screen-256color");
}

#[tokio::test]
async fn a_named_session_and_a_read_only_viewer() {
    let (emu, cluster) = setup().await;
    let mut a = cluster
        .attach(&sandbox(), Some("tests"), &Viewer::pane(80, 24, true))
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut a, &mut seen, "[resize 80x24]").await;
    // A read-only viewer's keys never leave Kiln: the resize sent after
    // them comes back, the keys do not.
    assert!(a.input.try_send(b"rm -rf ~\r".to_vec()));
    a.resize.send((90, 20)).await.unwrap();
    read_until(&mut a, &mut seen, "[resize 90x20]").await;
    assert!(!seen.contains("rm -rf"), "{seen:?}");
    let calls = emu.exec_calls().await;
    assert_eq!(calls[0]["argv"], json!(attach_command("tests", true, None)));
    assert_eq!(
        calls[0]["argv"],
        json!(["tmux", "-L", "kiln", "attach-session", "-r", "-t", "=tests"])
    );
}

#[tokio::test]
async fn a_hostile_session_name_never_reaches_the_pod() {
    let (emu, cluster) = setup().await;
    for bad in ["-t evil", "a;b", "", "x:y"] {
        let e = cluster
            .attach(&sandbox(), Some(bad), &Viewer::pane(80, 24, false))
            .await
            .unwrap_err();
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(emu.exec_calls().await, json!([]));
}

#[tokio::test]
async fn sessions_are_listed_from_tmux_in_the_pod() {
    let (emu, cluster) = setup().await;
    emu.set_exec_rules(json!([{
        "contains": "list-sessions",
        "stdout": "work\t1700000100\t0\nmain\t1700000000\t2\n",
        "exit": 0
    }]))
    .await;
    let sessions = cluster.sessions(&sandbox()).await.unwrap();
    let names: Vec<Option<&str>> = sessions.iter().map(|s| s.name.as_deref()).collect();
    assert_eq!(names, [None, Some("work")]);
    let main: &SessionInfo = &sessions[0];
    assert_eq!(main.viewers, 2);
    assert_eq!(main.last_activity, Some(1_700_000_000));
    let calls = emu.exec_calls().await;
    assert_eq!(calls[0]["tty"], false);
    assert_eq!(calls[0]["container"], CONTAINER);

    // No tmux server yet (the pod is starting): no sessions, not an error.
    emu.set_exec_rules(json!([{
        "contains": "list-sessions",
        "stderr": "no server running on /tmp/tmux-1001/kiln\n",
        "exit": 1
    }]))
    .await;
    assert!(cluster.sessions(&sandbox()).await.unwrap().is_empty());
}

#[tokio::test]
async fn attaching_to_a_sandbox_without_a_pod_says_so() {
    let emu = Emulator::start().await;
    let cluster = K8sCluster::new(emu.client(), NS, Arc::new(K8sSettings::default()));
    let e = cluster
        .attach(&sandbox(), None, &Viewer::pane(80, 24, false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&pod_name(&sandbox())), "{e}");
}
