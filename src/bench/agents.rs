//! `kiln bench agents`: how long an agent hook takes from firing to being
//! drawn on an open dashboard, and how long the hook command itself runs
//! (Claude Code waits for it). A child `kiln serve` runs one local sandbox;
//! the bench runs `kiln hook` against that sandbox's socket exactly as
//! Claude Code would (the payload on stdin), alternating a permission
//! prompt and a submitted prompt, and waits for each state on screen.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use russh::keys::PrivateKey;
use tokio::io::AsyncWriteExt;

use super::console::{ChildServer, Session, ms};
use super::{BenchUser, Scratch, quantile};
use crate::store::Store;

pub async fn agents(admin_url: &str, transitions: usize) -> anyhow::Result<()> {
    let scratch = Scratch::create(admin_url).await?;
    let result = run(&scratch.url, transitions).await;
    scratch.drop_database().await?;
    result
}

async fn run(url: &str, transitions: usize) -> anyhow::Result<()> {
    let BenchUser {
        store,
        key_hex,
        id: user_id,
        key,
    } = BenchUser::create(url).await?;
    // A shell as the session's program: the hooks are fired by the bench.
    let server =
        ChildServer::start_with_config(url, &key_hex, "[local]\nsandbox_command = \"sh\"\n")
            .await?;
    let result = measure(&store, &server, user_id, &key, transitions).await;
    // The project's sandbox and its database on the shared server go with
    // it; the scratch database alone would leave them behind.
    let cleaned = delete_project(&store, user_id).await;
    server.stop().await;
    result.and(cleaned)
}

async fn delete_project(store: &Store, owner: uuid::Uuid) -> anyhow::Result<()> {
    store
        .record_intent(owner, "bench", crate::model::Intent::Delete, "bench")
        .await?;
    let started = Instant::now();
    while store.find_project(owner, "bench").await.is_ok() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the bench project was not deleted within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn measure(
    store: &Store,
    server: &ChildServer,
    owner: uuid::Uuid,
    key: &Arc<PrivateKey>,
    transitions: usize,
) -> anyhow::Result<()> {
    store.create_project(owner, "bench", "", "test").await?;
    let started = Instant::now();
    let resource = loop {
        let p = store.find_project(owner, "bench").await?;
        let sandbox = p
            .resources
            .iter()
            .find(|r| r.kind == crate::store::ResourceKind::Sandbox)
            .context("the project has no sandbox")?;
        if sandbox.status == crate::model::ResourceStatus::Running {
            break sandbox.resource_name.clone();
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the sandbox did not start: {:?}", sandbox.last_error);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let socket = server
        .data_dir
        .join("run")
        .join(&resource)
        .join(crate::local::hooks::SOCKET);
    // 100 columns: the list shows each agent as its glyph and its time.
    let screen = Session::open_as(server.addr, key, "bench").await?;
    screen
        .wait(|t| t.contains("bench"), Duration::from_secs(20))
        .await?;
    let kiln = std::env::current_exe()?;
    let mut drawn = Vec::with_capacity(transitions);
    let mut hook_runs = Vec::with_capacity(transitions);
    for i in 0..transitions {
        let (payload, shown) = if i % 2 == 0 {
            (
                format!(
                    r#"{{"session_id":"bench","cwd":"/","hook_event_name":"Notification","notification_type":"permission_prompt","message":"May I run step {i}?"}}"#
                ),
                "? ",
            )
        } else {
            (
                r#"{"session_id":"bench","cwd":"/","hook_event_name":"UserPromptSubmit","prompt":"go"}"#
                    .to_string(),
                "» ",
            )
        };
        let fired = Instant::now();
        let mut hook = tokio::process::Command::new(&kiln)
            .arg("hook")
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running kiln hook")?;
        let mut stdin = hook.stdin.take().context("hook stdin")?;
        stdin.write_all(payload.as_bytes()).await?;
        drop(stdin);
        let status = hook.wait().await?;
        hook_runs.push(fired.elapsed());
        if !status.success() {
            bail!("kiln hook exited with {status}");
        }
        screen
            .wait(
                |t| t.lines().any(|l| l.contains("bench") && l.contains(shown)),
                Duration::from_secs(10),
            )
            .await?;
        drawn.push(fired.elapsed());
    }
    drawn.sort();
    hook_runs.sort();
    println!(
        "agent state: hook fired → drawn on an open dashboard, {transitions} transitions \
         (needs_input ↔ working)"
    );
    println!(
        "  p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        ms(quantile(&drawn, 0.50)),
        ms(quantile(&drawn, 0.99)),
        ms(*drawn.last().unwrap_or(&Duration::ZERO))
    );
    println!("the hook command's own run time (spawn → exit, what Claude Code waits for)");
    println!(
        "  p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        ms(quantile(&hook_runs, 0.50)),
        ms(quantile(&hook_runs, 0.99)),
        ms(*hook_runs.last().unwrap_or(&Duration::ZERO))
    );
    Ok(())
}
