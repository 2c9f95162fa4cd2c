//! Following a sandbox pod's log on Kubernetes through the API emulator:
//! the tail, then new lines as they come, and across a restart of the pod
//! the follower reconnects without repeating what it already showed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kiln::driver::{LogEvent, ResourceRef, SandboxLogs};
use kiln::k8s::cluster::K8sCluster;
use kiln::k8s::objects::{CONTAINER, pod_name};
use kiln::k8s::settings::K8sSettings;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

use crate::support::k8s::Emulator;

const NS: &str = "kiln-alice";

fn sandbox() -> ResourceRef {
    ResourceRef {
        resource_name: "shop-agentruntime-a1b2c3".into(),
        namespace: NS.into(),
        project_slug: "shop".into(),
        owner: Uuid::new_v4(),
    }
}

async fn create_pod(emu: &Emulator) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": pod_name(&sandbox()) },
        "spec": { "containers": [{ "name": CONTAINER, "image": "kiln-runtime" }] }
    }))
    .unwrap();
    Api::<Pod>::namespaced(emu.client(), NS)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

/// A line as the kubelet writes it with `timestamps=true`.
fn stamped(second: u32, text: &str) -> String {
    format!("2026-11-24T10:00:{second:02}.000000000Z {text}\n")
}

/// The next line, skipping notices; `None` if the follower ended.
async fn next_line(rx: &mut Receiver<LogEvent>, notices: &mut Vec<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await? {
                LogEvent::Line(l) => return Some(l),
                LogEvent::Notice(n) => notices.push(n),
            }
        }
    })
    .await
    .expect("no log line in time")
}

#[tokio::test]
async fn the_tail_without_follow_then_the_end() {
    let emu = Emulator::start().await;
    create_pod(&emu).await;
    let pod = pod_name(&sandbox());
    let text: String = (0..5).map(|i| stamped(i, &format!("line {i}"))).collect();
    emu.set_log(NS, &pod, &text).await;
    let cluster = K8sCluster::new(emu.client(), NS, Arc::new(K8sSettings::default()));
    let mut rx = cluster.logs(&sandbox(), Some(2), false).await.unwrap();
    let mut notices = Vec::new();
    assert_eq!(
        next_line(&mut rx, &mut notices).await.as_deref(),
        Some("line 3")
    );
    assert_eq!(
        next_line(&mut rx, &mut notices).await.as_deref(),
        Some("line 4")
    );
    assert_eq!(next_line(&mut rx, &mut notices).await, None);
    assert!(notices.is_empty(), "{notices:?}");
}

#[tokio::test]
async fn following_survives_a_pod_restart_without_repeating_lines() {
    let emu = Emulator::start().await;
    create_pod(&emu).await;
    let pod = pod_name(&sandbox());
    emu.set_log(NS, &pod, &(stamped(1, "booting") + &stamped(2, "ready")))
        .await;
    let cluster = K8sCluster::new(emu.client(), NS, Arc::new(K8sSettings::default()));
    let mut rx = cluster.logs(&sandbox(), None, true).await.unwrap();
    let mut notices = Vec::new();
    assert_eq!(
        next_line(&mut rx, &mut notices).await.as_deref(),
        Some("booting")
    );
    assert_eq!(
        next_line(&mut rx, &mut notices).await.as_deref(),
        Some("ready")
    );
    emu.append_log(NS, &pod, &stamped(3, "working")).await;
    assert_eq!(
        next_line(&mut rx, &mut notices).await.as_deref(),
        Some("working")
    );

    // The stream ends (the kubelet closed it); the follower reconnects and
    // the server sends the whole log again: nothing shown twice.
    emu.append_log(NS, &pod, &stamped(4, "after a hiccup"))
        .await;
    emu.end_log(NS, &pod).await;
    assert_eq!(
        next_line(&mut rx, &mut notices).await.as_deref(),
        Some("after a hiccup")
    );
    emu.set_log(
        NS,
        &pod,
        &(stamped(1, "booting")
            + &stamped(2, "ready")
            + &stamped(3, "working")
            + &stamped(4, "after a hiccup")
            + &stamped(5, "new after reconnect")),
    )
    .await;
    assert_eq!(
        next_line(&mut rx, &mut notices).await.as_deref(),
        Some("new after reconnect")
    );
    assert!(
        notices.iter().any(|n| n.contains("reconnecting")),
        "{notices:?}"
    );

    // The pod is replaced (a crash, a rescheduling): the follower waits
    // for the new one and goes on with its log.
    Api::<Pod>::namespaced(emu.client(), NS)
        .delete(&pod, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    create_pod(&emu).await;
    emu.set_log(NS, &pod, &stamped(30, "second life")).await;
    assert_eq!(
        next_line(&mut rx, &mut notices).await.as_deref(),
        Some("second life")
    );
}

#[tokio::test]
async fn no_pod_without_follow_is_a_notice_not_a_hang() {
    let emu = Emulator::start().await;
    let cluster = K8sCluster::new(emu.client(), NS, Arc::new(K8sSettings::default()));
    let mut rx = cluster.logs(&sandbox(), None, false).await.unwrap();
    let mut notices = Vec::new();
    assert_eq!(next_line(&mut rx, &mut notices).await, None);
    assert!(
        notices.iter().any(|n| n.contains("does not exist")),
        "{notices:?}"
    );
}
