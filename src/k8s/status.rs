//! What cluster objects say about a resource, as the seed platform reads
//! them (notes/seed-specs.md §1a, §1b), plus the reasons a pod is stuck.
//! Pure: tested as tables.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::DynamicObject;

use crate::driver::{DbCredentials, Observed, PrepareStep};

/// Container waiting reasons that mean "not coming up without a change";
/// the pod keeps retrying, so they are `Blocked`, not failures.
const STUCK_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why a pod is stuck, if it is: a container waiting for one of the reasons
/// above, or a scheduler that found no node.
pub fn pod_problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in containers {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if STUCK_WAITING.contains(&reason) {
            return Some(match waiting.message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => format!("{reason}: {m}"),
                None => reason.to_string(),
            });
        }
    }
    status.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable"))
        .then(|| match c.message.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => format!("Unschedulable: {m}"),
            None => "Unschedulable".to_string(),
        })
    })
}

/// How many of a failed clone's or setup script's last lines are kept.
const PREPARE_ERROR_LINES: usize = 4;

/// Why the pod's clone or setup init container failed, if one did (it
/// exited with an error, now or before its current retry): which step, and
/// git's or the script's last lines, which its termination message holds
/// (`FallbackToLogsOnError`). Kubelet would retry it forever; a clone or a
/// script that failed is the user's to fix.
pub fn prepare_failure(pod: &Pod) -> Option<(PrepareStep, String)> {
    // A pod on its way out (the sandbox was stopped) is no news.
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    // In the order they run: a clone that failed is why nothing else ran.
    [
        (super::objects::CLONE_CONTAINER, PrepareStep::Clone),
        (super::objects::SETUP_CONTAINER, PrepareStep::Setup),
    ]
    .into_iter()
    .find_map(|(name, step)| {
        let c = status
            .init_container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == name)?;
        let terminated = [c.state.as_ref(), c.last_state.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|s| s.terminated.as_ref())
            .find(|t| t.exit_code != 0)?;
        let text = terminated.message.as_deref().unwrap_or_default();
        let lines: Vec<&str> = text
            .split('\n')
            .filter_map(|l| l.rsplit('\r').next())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = lines[lines.len().saturating_sub(PREPARE_ERROR_LINES)..].join("; ");
        let why = if tail.is_empty() {
            format!("exit status {}", terminated.exit_code)
        } else {
            crate::model::naming::printable(&tail, 600)
        };
        let what = match step {
            PrepareStep::Clone => "git clone failed",
            // The local driver's words for the same failure.
            PrepareStep::Setup => "the setup script failed",
        };
        Some((step, format!("{what}: {why}")))
    })
}

/// The seed's StatefulSet reading: missing → gone; 0 replicas → stopping
/// while pods remain, else stopped; running only when every replica count
/// equals the spec (and the controller has seen the latest spec).
pub fn statefulset_observed(sts: Option<&StatefulSet>, pods: &[Pod]) -> Observed {
    let Some(sts) = sts else {
        return Observed::Absent;
    };
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = sts.status.clone().unwrap_or_default();
    let current = status.current_replicas.unwrap_or(0);
    if want == 0 {
        return if current > 0 || status.replicas > 0 || !pods.is_empty() {
            Observed::Stopping
        } else {
            Observed::Stopped
        };
    }
    let seen_latest = match (status.observed_generation, sts.metadata.generation) {
        (Some(seen), Some(latest)) => seen >= latest,
        _ => true,
    };
    let all = status.replicas == want
        && status.ready_replicas.unwrap_or(0) == want
        && current == want
        && status.updated_replicas.unwrap_or(0) == want;
    if all && seen_latest {
        return Observed::Running;
    }
    if let Some((step, failure)) = pods.iter().find_map(prepare_failure) {
        return Observed::PrepareFailed(step, failure);
    }
    match pods.iter().find_map(pod_problem) {
        Some(problem) => Observed::Blocked(problem),
        // Shown as the local driver shows its clone and setup: the step
        // under way is the status's reason.
        None => match pods.iter().find_map(prepare_progress) {
            Some(step) => Observed::Blocked(step.into()),
            None => Observed::Starting,
        },
    }
}

/// Which preparation step the pod is running now, if one is.
fn prepare_progress(pod: &Pod) -> Option<&'static str> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .find_map(|c| match c.name.as_str() {
            super::objects::CLONE_CONTAINER => Some("cloning the repository"),
            super::objects::SETUP_CONTAINER => Some("running the setup script"),
            _ => None,
        })
}

/// The component's replica count as the spec asks.
fn cluster_replicas(c: &DynamicObject) -> i64 {
    c.data["spec"]["componentSpecs"][0]["replicas"]
        .as_i64()
        .unwrap_or(1)
}

/// The seed's KubeBlocks phase table. `Deleting` reads as stopping: the
/// driver's `Observed` has no "terminating", and the row's own status
/// already says TERMINATING while a delete is under way.
pub fn cluster_observed(cluster: Option<&DynamicObject>) -> Observed {
    let Some(c) = cluster else {
        return Observed::Absent;
    };
    let replicas = cluster_replicas(c);
    let phase = c.data["status"]["phase"].as_str().unwrap_or_default();
    match phase {
        "Running" => Observed::Running,
        "Creating" => Observed::Starting,
        "Updating" if replicas == 0 => Observed::Stopping,
        "Updating" => Observed::Starting,
        "Stopping" | "Deleting" => Observed::Stopping,
        "Stopped" => Observed::Stopped,
        "Failed" | "Abnormal" => {
            let message = c.data["status"]["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Observed::Failed(format!("the database cluster is {phase}{message}"))
        }
        _ if replicas == 0 => Observed::Stopped,
        _ => Observed::Starting,
    }
}

/// The connection secret KubeBlocks writes; `None` while it is empty or
/// incomplete (the cluster is still coming up).
pub fn credentials_from_secret(secret: &Secret, database: &str) -> Option<DbCredentials> {
    let data = secret.data.as_ref()?;
    let field = |k: &str| {
        data.get(k)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|v| !v.is_empty())
    };
    Some(DbCredentials {
        host: field("host")?,
        port: field("port")?.trim().parse().ok()?,
        database: database.to_string(),
        user: field("username")?,
        password: field("password")?.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn sts(replicas: i32, status: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": { "name": "s", "generation": 2 },
            "spec": { "replicas": replicas, "serviceName": "s",
                      "selector": {}, "template": {} },
            "status": status,
        }))
        .unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "s-0" }, "status": status })).unwrap()
    }

    #[test]
    fn the_seed_statefulset_table() {
        let all1 = json!({ "replicas": 1, "readyReplicas": 1, "currentReplicas": 1,
                           "updatedReplicas": 1, "observedGeneration": 2 });
        let table: Vec<(Option<StatefulSet>, Vec<Pod>, Observed)> = vec![
            (None, vec![], Observed::Absent),
            (
                Some(sts(0, json!({ "replicas": 1, "currentReplicas": 1 }))),
                vec![],
                Observed::Stopping,
            ),
            (
                Some(sts(0, json!({ "replicas": 0 }))),
                vec![pod(json!({}))],
                Observed::Stopping,
            ),
            (
                Some(sts(0, json!({ "replicas": 0 }))),
                vec![],
                Observed::Stopped,
            ),
            (Some(sts(1, all1.clone())), vec![], Observed::Running),
            (
                Some(sts(
                    1,
                    json!({ "replicas": 1, "readyReplicas": 0, "currentReplicas": 1,
                                 "updatedReplicas": 1 }),
                )),
                vec![],
                Observed::Starting,
            ),
            (
                Some(sts(
                    1,
                    json!({ "replicas": 1, "readyReplicas": 1, "currentReplicas": 1 }),
                )),
                vec![],
                Observed::Starting,
            ),
            // The controller has not seen the latest spec yet.
            (
                Some(sts(
                    1,
                    json!({ "replicas": 1, "readyReplicas": 1, "currentReplicas": 1,
                                 "updatedReplicas": 1, "observedGeneration": 1 }),
                )),
                vec![],
                Observed::Starting,
            ),
            (
                Some(sts(1, json!({ "replicas": 0 }))),
                vec![],
                Observed::Starting,
            ),
        ];
        for (i, (s, pods, want)) in table.into_iter().enumerate() {
            assert_eq!(statefulset_observed(s.as_ref(), &pods), want, "row {i}");
        }
    }

    #[test]
    fn a_stuck_pod_says_why() {
        let waiting = |reason: &str, message: &str| {
            pod(json!({ "containerStatuses": [{
                "name": "sandbox", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
                "state": { "waiting": { "reason": reason, "message": message } } }] }))
        };
        let starting = sts(1, json!({ "replicas": 1 }));
        for (p, want) in [
            (
                waiting("ImagePullBackOff", "Back-off pulling image \"nope:1\""),
                "ImagePullBackOff: Back-off pulling image \"nope:1\"",
            ),
            (waiting("CrashLoopBackOff", ""), "CrashLoopBackOff"),
            (
                waiting("CreateContainerConfigError", "secret \"x\" not found"),
                "CreateContainerConfigError: secret \"x\" not found",
            ),
            (
                pod(
                    json!({ "conditions": [{ "type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu." }] }),
                ),
                "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.",
            ),
        ] {
            assert_eq!(
                statefulset_observed(Some(&starting), &[p]),
                Observed::Blocked(want.to_string())
            );
        }
        // A clone that failed is told with git's last lines, whether it
        // is retried now or not.
        let clone_failed = |state: serde_json::Value| {
            pod(json!({ "initContainerStatuses": [{
                "name": "clone", "image": "x", "imageID": "", "ready": false, "restartCount": 2,
                "state": state["state"], "lastState": state["lastState"] }] }))
        };
        let git_said = "Cloning into '.'...\nremote: Counting objects: 100% (3/3)\rdone\n\
                        fatal: Authentication failed for 'https://h/r.git/'\n";
        for state in [
            json!({ "state": { "terminated": { "exitCode": 128, "message": git_said } } }),
            json!({ "state": { "waiting": { "reason": "CrashLoopBackOff" } },
                    "lastState": { "terminated": { "exitCode": 128, "message": git_said } } }),
        ] {
            assert_eq!(
                statefulset_observed(Some(&starting), &[clone_failed(state)]),
                Observed::PrepareFailed(
                    PrepareStep::Clone,
                    "git clone failed: Cloning into '.'...; done; \
                     fatal: Authentication failed for 'https://h/r.git/'"
                        .into()
                )
            );
        }
        assert_eq!(
            statefulset_observed(
                Some(&starting),
                &[clone_failed(
                    json!({ "state": { "terminated": { "exitCode": 1 } } })
                )]
            ),
            Observed::PrepareFailed(PrepareStep::Clone, "git clone failed: exit status 1".into())
        );
        // Nor is one on its way out (the sandbox was held stopped).
        let mut leaving = clone_failed(
            json!({ "state": { "terminated": { "exitCode": 128, "message": git_said } } }),
        );
        leaving.metadata.deletion_timestamp =
            serde_json::from_value(json!("2025-01-01T00:00:00Z")).unwrap();
        assert_eq!(prepare_failure(&leaving), None);
        // A clone that finished is no failure; one still running is the
        // reason the sandbox waits.
        assert_eq!(
            statefulset_observed(
                Some(&starting),
                &[clone_failed(
                    json!({ "state": { "terminated": { "exitCode": 0, "message": "" } } })
                )]
            ),
            Observed::Starting
        );
        assert_eq!(
            statefulset_observed(
                Some(&starting),
                &[clone_failed(json!({ "state": { "running": {} } }))]
            ),
            Observed::Blocked("cloning the repository".into())
        );
        // Merely starting (ContainerCreating) is not a problem.
        assert_eq!(
            statefulset_observed(Some(&starting), &[waiting("ContainerCreating", "")]),
            Observed::Starting
        );
        // A setup script that failed after a good clone is told as the
        // setup's failure, with the script's last lines.
        let setup_failed = pod(json!({ "initContainerStatuses": [
            { "name": "clone", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
              "state": { "terminated": { "exitCode": 0, "message": "Cloning into '.'..." } } },
            { "name": "setup", "image": "x", "imageID": "", "ready": false, "restartCount": 1,
              "state": { "waiting": { "reason": "CrashLoopBackOff" } },
              "lastState": { "terminated": { "exitCode": 2,
                  "message": "installing\nnpm ERR! missing script: build\n" } } }] }));
        let setup_running = pod(json!({ "initContainerStatuses": [
            { "name": "clone", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
              "state": { "terminated": { "exitCode": 0 } } },
            { "name": "setup", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
              "state": { "running": {} } }] }));
        assert_eq!(
            statefulset_observed(Some(&starting), &[setup_running]),
            Observed::Blocked("running the setup script".into())
        );
        assert_eq!(
            statefulset_observed(Some(&starting), &[setup_failed]),
            Observed::PrepareFailed(
                PrepareStep::Setup,
                "the setup script failed: installing; npm ERR! missing script: build".into()
            )
        );
    }

    fn cluster(replicas: i64, phase: Option<&str>) -> DynamicObject {
        let mut v = json!({
            "apiVersion": "apps.kubeblocks.io/v1alpha1", "kind": "Cluster",
            "metadata": { "name": "db" },
            "spec": { "componentSpecs": [{ "name": "postgresql", "replicas": replicas }] },
        });
        if let Some(p) = phase {
            v["status"] = json!({ "phase": p, "message": "pod db-0 OOMKilled" });
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_seed_kubeblocks_phase_table() {
        let failed =
            |p: &str| Observed::Failed(format!("the database cluster is {p}: pod db-0 OOMKilled"));
        let table = [
            (Some(cluster(1, Some("Running"))), Observed::Running),
            (Some(cluster(1, Some("Creating"))), Observed::Starting),
            (Some(cluster(0, Some("Updating"))), Observed::Stopping),
            (Some(cluster(1, Some("Updating"))), Observed::Starting),
            (Some(cluster(0, Some("Stopping"))), Observed::Stopping),
            (Some(cluster(0, Some("Stopped"))), Observed::Stopped),
            (Some(cluster(1, Some("Deleting"))), Observed::Stopping),
            (Some(cluster(1, Some("Failed"))), failed("Failed")),
            (Some(cluster(1, Some("Abnormal"))), failed("Abnormal")),
            (Some(cluster(0, None)), Observed::Stopped),
            (Some(cluster(1, None)), Observed::Starting),
            (Some(cluster(0, Some("SomethingNew"))), Observed::Stopped),
            (Some(cluster(1, Some("SomethingNew"))), Observed::Starting),
            (None, Observed::Absent),
        ];
        for (i, (c, want)) in table.into_iter().enumerate() {
            assert_eq!(cluster_observed(c.as_ref()), want, "row {i}");
        }
    }

    #[test]
    fn credentials_only_once_complete() {
        let secret = |pairs: &[(&str, &str)]| Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        let full = secret(&[
            ("host", "db.ns.svc"),
            ("port", "5432"),
            ("username", "postgres"),
            ("password", "pw"),
        ]);
        let c = credentials_from_secret(&full, "postgres").unwrap();
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.password.expose_str()
            ),
            ("db.ns.svc", 5432, "postgres", "pw")
        );
        assert!(credentials_from_secret(&secret(&[]), "postgres").is_none());
        assert!(credentials_from_secret(&Secret::default(), "postgres").is_none());
        assert!(
            credentials_from_secret(
                &secret(&[
                    ("host", "h"),
                    ("port", "x"),
                    ("username", "u"),
                    ("password", "p")
                ]),
                "postgres"
            )
            .is_none()
        );
        assert!(
            credentials_from_secret(
                &secret(&[("host", "h"), ("port", "1"), ("username", "u")]),
                "postgres"
            )
            .is_none()
        );
    }
}
