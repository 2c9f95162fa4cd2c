//! Users' agent webhooks (issue 20): a JSON POST per transition into
//! needs_input or done, retried on a 500, its last error shown; a loopback
//! URL refused unless the operator allows private hosts. The target is a
//! real HTTP server on loopback; the hooks are the stand-in Claude's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::support::eventually;
use crate::support::ssh::{Client, Server, connect};

/// A webhook target: records each request's JSON body and status answered;
/// answers from `script` in order, then 204.
#[derive(Clone, Default)]
struct Target {
    seen: Arc<Mutex<Vec<(u16, Value)>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

impl Target {
    async fn start(script: Vec<u16>) -> (Target, SocketAddr) {
        let target = Target {
            script: Arc::new(Mutex::new(script)),
            ..Target::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let t = target.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let t = t.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let t = t.clone();
                            async move {
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let status = {
                                    let mut script = t.script.lock().unwrap();
                                    if script.is_empty() {
                                        204
                                    } else {
                                        script.remove(0)
                                    }
                                };
                                let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                t.seen.lock().unwrap().push((status, json));
                                let mut r = hyper::Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                                Ok::<_, std::convert::Infallible>(r)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        (target, addr)
    }

    fn seen(&self) -> Vec<(u16, Value)> {
        self.seen.lock().unwrap().clone()
    }

    /// The states of the deliveries that were answered 2xx, sorted.
    fn delivered(&self) -> Vec<String> {
        let mut states: Vec<String> = self
            .seen()
            .into_iter()
            .filter(|(s, _)| *s < 300)
            .map(|(_, v)| v["state"].as_str().unwrap_or("?").to_string())
            .collect();
        states.sort();
        states
    }
}

async fn signed_in(server: &Server, user: &str) -> Client {
    let mut c = connect(server.addr).await;
    assert!(c.password(user, "pw-12345678").await);
    c
}

fn tell(server: &Server, resource: &str, line: &str) {
    let local = server.local.as_ref().expect("local driver");
    for keys in [&["-l", line][..], &["Enter"][..]] {
        let status = local
            .tmux_command(resource)
            .args(["send-keys", "-t", resource])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }
}

async fn state_is(c: &Client, state: &str) {
    eventually(
        &format!("the agent to be {state}"),
        Duration::from_secs(15),
        || async {
            let out = c.exec("agents --json", b"").await;
            let v: Value = serde_json::from_str(&out.stdout).ok()?;
            v.as_array()?
                .iter()
                .any(|a| a["session"].is_null() && a["state"] == state)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn each_transition_is_posted_once_and_a_500_is_retried_then_delivered() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    // The first POST fails with a 500; the retry and the rest succeed.
    let (target, addr) = Target::start(vec![500]).await;
    let url = format!("http://{addr}/hooks/kiln?token=t0ps3cret");
    let set = c.exec("webhook set", url.as_bytes()).await;
    assert_eq!(set.code, Some(0), "{set:?}");
    // Shown by host, never whole: the URL may carry a token.
    assert!(set.stdout.contains("127.0.0.1"), "{set:?}");
    assert!(!set.stdout.contains("t0ps3cret"), "{set:?}");
    state_is(&c, "idle").await;

    tell(&server, &resource, "perm May I run make?");
    state_is(&c, "needs_input").await;
    // The same wait reported again is no new transition.
    tell(&server, &resource, "perm May I run make?");
    tell(&server, &resource, "stop");
    state_is(&c, "done").await;
    eventually("both deliveries", Duration::from_secs(30), || async {
        (target.delivered() == ["done", "needs_input"]).then_some(())
    })
    .await;
    let seen = target.seen();
    let failed: Vec<&(u16, Value)> = seen.iter().filter(|(s, _)| *s == 500).collect();
    assert_eq!(failed.len(), 1, "{seen:?}");
    let failed_state = failed[0].1["state"].clone();
    let (_, retried) = seen
        .iter()
        .find(|(s, v)| *s < 300 && v["state"] == failed_state)
        .unwrap();
    assert_eq!(retried, &failed[0].1, "the retry carries the same JSON");
    let needs = seen
        .iter()
        .find(|(_, v)| v["state"] == "needs_input")
        .unwrap();
    assert_eq!(needs.1["event"], "agent.needs_input");
    assert_eq!(needs.1["project"], "blog");
    assert_eq!(needs.1["user"], "alice");
    assert_eq!(needs.1["message"], "May I run make?");
    assert!(needs.1["session"].is_null());

    // A later transition is posted once more, and only it: nothing was
    // posted twice meanwhile.
    tell(&server, &resource, "prompt again");
    state_is(&c, "working").await;
    tell(&server, &resource, "perm And now?");
    eventually("the third delivery", Duration::from_secs(30), || async {
        (target.delivered().len() == 3).then_some(())
    })
    .await;
    assert_eq!(target.delivered(), ["done", "needs_input", "needs_input"]);
    assert_eq!(target.seen().len(), 4, "{:?}", target.seen());

    // The failure is in the settings: the last error and a later delivery.
    let shown = c.exec("webhook --json", b"").await;
    let v: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert!(
        v["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{v}"
    );
    assert!(v["last_delivered_at"].is_string(), "{v}");
    let text = c.exec("webhook", b"").await.stdout;
    assert!(
        text.contains("last error") && text.contains("HTTP 500"),
        "{text}"
    );
}

#[tokio::test]
async fn a_muted_project_posts_nothing_and_a_removed_webhook_gets_nothing() {
    let server = Server::start_agents().await;
    let alice = server.user("alice", "pw-12345678").await;
    let resource = server.running_project(alice.id, "blog").await;
    let c = signed_in(&server, "alice").await;
    let (target, addr) = Target::start(vec![]).await;
    let set = c
        .exec("webhook set", format!("http://{addr}/h").as_bytes())
        .await;
    assert_eq!(set.code, Some(0), "{set:?}");
    state_is(&c, "idle").await;
    assert_eq!(c.exec("mute blog", b"").await.code, Some(0));
    tell(&server, &resource, "perm muted");
    state_is(&c, "needs_input").await;
    assert_eq!(c.exec("mute blog --off", b"").await.code, Some(0));
    tell(&server, &resource, "stop");
    state_is(&c, "done").await;
    eventually("the unmuted delivery", Duration::from_secs(30), || async {
        (target.delivered() == ["done"]).then_some(())
    })
    .await;
    let unset = c.exec("webhook unset", b"").await;
    assert_eq!(unset.code, Some(0), "{unset:?}");
    assert!(unset.stdout.contains("not set"), "{unset:?}");
    tell(&server, &resource, "perm after removal");
    state_is(&c, "needs_input").await;
    // Its notification is there; no delivery was queued for it.
    eventually("the notification", Duration::from_secs(15), || async {
        let n = c.exec("notifications --json", b"").await;
        n.stdout.contains("after removal").then_some(())
    })
    .await;
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(queued, 0);
    assert_eq!(target.seen().len(), 1);
}

#[tokio::test]
async fn a_loopback_or_private_webhook_is_refused_by_default_and_nothing_is_stored() {
    // The default server: the operator has not allowed private hosts.
    let server = Server::start().await;
    let alice = server.user("alice", "pw-12345678").await;
    let c = signed_in(&server, "alice").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
    ] {
        let out = c.exec("webhook set", url.as_bytes()).await;
        assert_eq!(out.code, Some(1), "{url}: {out:?}");
        assert!(
            out.stderr.contains("loopback, link-local or private")
                && out.stderr.contains("agents.webhook_allow_private_hosts"),
            "{url}: {out:?}"
        );
    }
    for (url, why) in [
        ("ftp://example.com/", "http:// or https://"),
        ("http://u:p@example.com/", "user name"),
    ] {
        let out = c.exec("webhook set", url.as_bytes()).await;
        assert_eq!(out.code, Some(1), "{url}: {out:?}");
        assert!(out.stderr.contains(why), "{url}: {out:?}");
    }
    let configs = server.store.list_user_configs(alice.id).await.unwrap();
    assert!(
        configs.iter().all(|c| c.key != "WEBHOOK_URL"),
        "{configs:?}"
    );
    let shown = c.exec("webhook --json", b"").await;
    let v: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert!(v["host"].is_null(), "{v}");
}
