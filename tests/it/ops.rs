//! The operator HTTP listener of a real `kiln serve` process: `/metrics`
//! read back with a Prometheus text parser, and `/readyz` following a
//! database the test cuts off and restores through a TCP proxy (the shared
//! PostgreSQL server itself is never stopped).

use std::time::Duration;

use crate::support::k8s::Emulator;
use crate::support::serve::{Proxy, Serve, through};
use crate::support::ssh::{TEST_SECRET_KEY, connect};
use crate::support::{TestDb, eventually};

const FAST: &str = "[ssh]\nrejection_delay_ms = 0\n\
    [reconcile]\nresync_ms = 100\npoll_interval_ms = 100\nbackoff_base_ms = 50\nbackoff_cap_secs = 1\n";

/// `/metrics` as parsed by `prometheus-parse`.
async fn scrape(s: &Serve) -> prometheus_parse::Scrape {
    let (status, body) = s.get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text ({e}):\n{body}"))
}

/// The sum of the samples of counter or gauge `metric` whose labels
/// include `labels` (0 when there is none yet).
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{metric} is not a counter or gauge"),
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_project_creates_failed_sign_ins_and_failed_driver_calls() {
    let db = TestDb::new().await;
    let store = db
        .store_with_key(kiln::store::SecretKey::from_hex(TEST_SECRET_KEY).unwrap())
        .await;
    store
        .create_user("alice", Some("correct horse battery"), false)
        .await
        .unwrap();
    // The server's own cluster is the emulator, whose StatefulSet calls all
    // fail with a 500: every sandbox call on it is a transient driver error.
    let emu = Emulator::start().await;
    emu.fail(serde_json::json!([{ "path_contains": "statefulsets", "status": 500 }]))
        .await;
    let kubeconfig = crate::support::k8s::KubeconfigFile::new(&emu, "default");
    let server = Serve::start(
        &db.url,
        "metrics-a",
        FAST,
        &[
            ("KILN_SERVER_CLUSTER", "kubeconfig"),
            ("KUBECONFIG", kubeconfig.path()),
        ],
    )
    .await;

    let before = scrape(&server).await;
    for (name, kind) in [
        ("kiln_ssh_sessions_open", "gauge"),
        ("kiln_reconcile_queue_depth", "gauge"),
        ("kiln_reconcile_leases_held", "gauge"),
    ] {
        let doc = before
            .docs
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not exported"));
        assert!(!doc.is_empty(), "{name} has no help ({kind})");
    }
    let failed_sign_ins = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "kiln_signin_attempts_total",
            &[("method", "password"), ("result", "failure")],
        )
    };
    let creates = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "kiln_console_actions_total",
            &[
                ("action", "project.create"),
                ("front", "exec"),
                ("result", "ok"),
            ],
        )
    };
    let driver_errors = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "kiln_driver_errors_total",
            &[
                ("backend", "kubernetes"),
                ("kind", "sandbox"),
                ("class", "transient"),
            ],
        )
    };

    let mut wrong = connect(server.ssh).await;
    assert!(!wrong.password("alice", "not her password").await);
    let mut c = connect(server.ssh).await;
    assert!(c.password("alice", "correct horse battery").await);
    let r = c.exec("create blog", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");

    let after = eventually(
        "a failed driver call counted",
        Duration::from_secs(60),
        || async {
            let s = scrape(&server).await;
            (driver_errors(&s) > driver_errors(&before)).then_some(s)
        },
    )
    .await;
    assert_eq!(failed_sign_ins(&after) - failed_sign_ins(&before), 1.0);
    assert_eq!(creates(&after) - creates(&before), 1.0);
    assert_eq!(
        value(
            &after,
            "kiln_signin_attempts_total",
            &[("result", "success")]
        ) - value(
            &before,
            "kiln_signin_attempts_total",
            &[("result", "success")]
        ),
        1.0
    );
    // The loop ran and timed itself; no label carries the project's name.
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric.starts_with("kiln_reconcile_pass_duration_seconds")),
        "no reconcile pass histogram"
    );
    assert!(
        after.samples.iter().all(|s| s
            .labels
            .values()
            .all(|v| !v.contains("blog") && v.as_str() != "alice")),
        "a label carries a user's name"
    );
}

#[tokio::test]
async fn readyz_fails_with_the_reason_while_postgres_is_unreachable_and_livez_stays_up() {
    let db = TestDb::new().await;
    let upstream: std::net::SocketAddr = {
        let rest = db.url.split_once('@').map_or(db.url.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap();
        tokio::net::lookup_host(authority)
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let server = Serve::start(&through(&db.url, proxy.addr), "ready-a", FAST, &[]).await;

    let ready = || async {
        let (status, body) = server.get("/readyz").await;
        (status == 200).then_some(body)
    };
    let body = eventually("ready", Duration::from_secs(30), ready).await;
    for check in ["database", "migrations", "change_feed", "ssh", "serving"] {
        assert!(body.contains(&format!("ok {check}\n")), "{body}");
    }
    assert_eq!(server.get("/livez").await, (200, "ok\n".to_string()));

    proxy.cut();
    let body = eventually(
        "not ready without the database",
        Duration::from_secs(30),
        || async {
            let (status, body) = server.get("/readyz").await;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert!(body.contains("fail database: "), "{body}");
    assert!(body.contains("ok ssh\n"), "{body}");
    assert_eq!(server.get("/livez").await.0, 200);

    proxy.restore();
    let body = eventually("ready again", Duration::from_secs(60), ready).await;
    assert!(body.contains("ok change_feed\n"), "{body}");
    assert_eq!(server.get("/livez").await.0, 200);
    assert_eq!(server.get("/nope").await.0, 404);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_replica_and_user_and_never_a_secret() {
    let db = TestDb::new().await;
    let store = db
        .store_with_key(kiln::store::SecretKey::from_hex(TEST_SECRET_KEY).unwrap())
        .await;
    let alice = store
        .create_user("alice", Some("correct horse battery"), false)
        .await
        .unwrap();
    let mut server = Serve::start(
        &db.url,
        "json-a",
        FAST,
        &[("KILN_LOG_FORMAT", "json"), ("KILN_LOG", "info")],
    )
    .await;
    let mut wrong = connect(server.ssh).await;
    assert!(!wrong.password("alice", "hunter2-wrong-guess").await);
    let mut c = connect(server.ssh).await;
    assert!(c.password("alice", "correct horse battery").await);
    assert_eq!(c.exec("create blog", b"").await.code, Some(0));
    let r = c
        .exec(
            "env blog set API_TOKEN=s3cr3t-value-never-logged --secret",
            b"",
        )
        .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    server.sigterm();
    assert!(server.exited(Duration::from_secs(30)).await.success());

    let log = server.stderr();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for l in &lines {
        assert_eq!(l["replica"], "json-a", "{l}");
    }
    let create = lines
        .iter()
        .find(|l| l["fields"]["action"] == "project.create")
        .unwrap_or_else(|| panic!("no audit line for the create:\n{log}"));
    assert_eq!(create["span"]["user_id"], alice.id.to_string(), "{create}");
    assert_eq!(create["span"]["project"], "blog", "{create}");
    for secret in [
        "hunter2-wrong-guess",
        "correct horse battery",
        "s3cr3t-value-never-logged",
        TEST_SECRET_KEY,
    ] {
        assert!(!log.contains(secret), "a secret is in the log:\n{log}");
    }
}
