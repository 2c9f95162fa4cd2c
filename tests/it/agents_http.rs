//! Agent hooks over HTTP, the Kubernetes path (issue 20): the operator
//! listener's `POST /hooks/v1/event` takes a report only with the token of
//! a running sandbox, about that sandbox alone; `kiln hook` without a
//! socket, and the runtime image's `kiln-hook` script, report through it.
//! Real HTTP over TCP; the sandboxes run on the fake driver (the token is
//! what identifies them here, not a socket).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::eventually;
use crate::support::http::{ops_listener, request};
use crate::support::ssh::Server;

const PERM: &[u8] = br#"{"hook_event_name":"Notification","notification_type":"permission_prompt","message":"May I?"}"#;
const PATH: &str = "/hooks/v1/event";

async fn states(server: &Server, user: uuid::Uuid) -> Vec<(Option<String>, String)> {
    server
        .store
        .agent_states(user)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.session, r.state.to_string()))
        .collect()
}

#[tokio::test]
async fn the_hook_endpoint_takes_a_sandboxs_own_token_and_refuses_any_other() {
    let server = Server::start().await;
    let alice = server.user("alice", "pw-12345678").await;
    let bob = server.user("bob", "pw-12345678").await;
    let a = server.running_project(alice.id, "blog").await;
    let b = server.running_project(bob.id, "shop").await;
    let (addr, stop) = ops_listener(&server.store).await;
    let token_a = server.store.key().hook_token(&a);
    let (_, mac_a) = token_a.rsplit_once('.').unwrap();
    let forged = format!("{b}.{mac_a}");
    let bearer = |t: &str| format!("Bearer {t}");

    // No token, a token that is not a bearer, a made-up one, alice's MAC
    // under bob's sandbox name: 401, and nothing is written for anyone.
    let refused = [
        vec![],
        vec![("Authorization", token_a.clone())],
        vec![("Authorization", bearer("nonsense"))],
        vec![("Authorization", bearer(&forged))],
        vec![("Authorization", bearer(&format!("{b}.{}", "0".repeat(64))))],
    ];
    for headers in &refused {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = request(addr, "POST", PATH, &h, PERM).await;
        assert_eq!(got.status, 401, "{headers:?}: {got:?}");
    }
    let auth = bearer(&token_a);
    let with_token = [("Authorization", auth.as_str())];
    // Too large (declared, and sent), malformed, a bad session: refused
    // with the reason, nothing written.
    let big = vec![b' '; 64 * 1024 + 1];
    assert_eq!(
        request(addr, "POST", PATH, &with_token, &big).await.status,
        413
    );
    let bad = request(addr, "POST", PATH, &with_token, b"{not json").await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body.contains("not a JSON object"), "{bad:?}");
    let bad_session = [("Authorization", auth.as_str()), ("X-Kiln-Session", "a:b")];
    let got = request(addr, "POST", PATH, &bad_session, PERM).await;
    assert_eq!(got.status, 400, "{got:?}");
    assert_eq!(
        request(addr, "GET", PATH, &with_token, b"").await.status,
        405
    );
    assert!(states(&server, alice.id).await.is_empty());
    assert!(states(&server, bob.id).await.is_empty());

    // Alice's own token: recorded for her sandbox, default session and a
    // named one; bob's sandbox is untouched.
    let got = request(addr, "POST", PATH, &with_token, PERM).await;
    assert_eq!(got.status, 204, "{got:?}");
    let named = [("Authorization", auth.as_str()), ("X-Kiln-Session", "s1")];
    let stop_event = br#"{"hook_event_name":"Stop"}"#;
    assert_eq!(
        request(addr, "POST", PATH, &named, stop_event).await.status,
        204
    );
    assert_eq!(
        states(&server, alice.id).await,
        [
            (None, "needs_input".to_string()),
            (Some("s1".to_string()), "done".to_string())
        ]
    );
    assert!(states(&server, bob.id).await.is_empty());

    // A stopped sandbox's token reports nothing.
    let token_b = server.store.key().hook_token(&b);
    server
        .store
        .record_intent(bob.id, "shop", kiln::model::intent::Intent::Stop, "bob")
        .await
        .unwrap();
    let auth_b = bearer(&token_b);
    let got = request(
        addr,
        "POST",
        PATH,
        &[("Authorization", auth_b.as_str())],
        PERM,
    )
    .await;
    assert_eq!(got.status, 404, "{got:?}");
    assert!(states(&server, bob.id).await.is_empty());
    stop.cancel();
}

/// Runs `program` as Claude Code runs a hook: the payload on stdin, the
/// sandbox's environment (the hook URL and token), nothing else.
fn run_hook(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> (bool, Duration, Vec<u8>) {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut printed = out.stdout;
    printed.extend(out.stderr);
    (out.status.success(), start.elapsed(), printed)
}

fn runtime_hook_script() -> String {
    format!("{}/runtime/kiln-hook", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn kiln_hook_and_the_runtime_images_script_report_over_http() {
    let server = Server::start().await;
    let alice = server.user("alice", "pw-12345678").await;
    let a = server.running_project(alice.id, "blog").await;
    let (addr, stop) = ops_listener(&server.store).await;
    let url = format!("http://{addr}{PATH}");
    let token = server.store.key().hook_token(&a);
    let env = [
        ("KILN_HOOK_URL", url.as_str()),
        ("KILN_HOOK_TOKEN", token.as_str()),
    ];

    let kiln = env!("CARGO_BIN_EXE_kiln");
    let (ok, _, printed) = tokio::task::spawn_blocking({
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            run_hook(kiln, &["hook"], &env, PERM)
        }
    })
    .await
    .unwrap();
    assert!(ok && printed.is_empty(), "{printed:?}");
    eventually("kiln hook's report", Duration::from_secs(15), || async {
        (states(&server, alice.id).await == [(None, "needs_input".to_string())]).then_some(())
    })
    .await;

    // The image's script (sh, jq, curl), as Claude Code runs it there; a
    // named session reports under its name.
    let script = runtime_hook_script();
    let (ok, _, printed) = tokio::task::spawn_blocking({
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("KILN_SESSION".to_string(), "s1".to_string())])
            .collect();
        move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            run_hook(
                &script,
                &[],
                &env,
                br#"{"session_id":"x","hook_event_name":"UserPromptSubmit","prompt":"go","cwd":"/home/kiln"}"#,
            )
        }
    })
    .await
    .unwrap();
    assert!(ok && printed.is_empty(), "{printed:?}");
    eventually("the script's report", Duration::from_secs(15), || async {
        states(&server, alice.id)
            .await
            .contains(&(Some("s1".to_string()), "working".to_string()))
            .then_some(())
    })
    .await;
    stop.cancel();
}

#[test]
fn an_unreachable_hook_url_gives_up_within_a_second_silently() {
    // A port nobody listens on, and a listener that never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}{PATH}", closed.local_addr().unwrap());
    drop(closed);
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_url = format!("http://{}{PATH}", stuck.local_addr().unwrap());
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let script = runtime_hook_script();
    for url in [&closed_url, &stuck_url] {
        let env = [("KILN_HOOK_URL", url.as_str()), ("KILN_HOOK_TOKEN", "x.y")];
        for (program, args) in [(kiln, &["hook"][..]), (script.as_str(), &[][..])] {
            let (ok, took, printed) = run_hook(program, args, &env, PERM);
            assert!(ok, "{program} {url}");
            assert!(printed.is_empty(), "{program} {url}: {printed:?}");
            assert!(took < Duration::from_secs(1), "{program} {url}: {took:?}");
        }
    }
}

#[test]
fn the_runtime_images_claude_settings_are_kilns_hooks_for_every_event() {
    // What the local driver merges into its sandboxes' settings, with the
    // image's hook command: the same events, matchers and timeouts.
    let shipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/runtime/claude-managed-settings.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let command = format!(
        "/usr/local/bin/kiln-hook {}",
        kiln::model::agent_settings::MARKER
    );
    assert_eq!(shipped, kiln::model::agent_settings::merge(None, &command));
}
