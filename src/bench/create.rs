//! `kiln bench create`: a project created from a template that clones a
//! small repository and runs a setup script, timed from the create to its
//! RUNNING status, on the local driver (a child `kiln serve` with a real
//! reconcile loop, a `git daemon` on loopback serving the repository).
//! Creates run one after another; each project is deleted before the next.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::console::{ChildServer, ms};
use super::{Scratch, quantile};
use crate::console::{Console, Front, NewProject, RepoPolicy};
use crate::model::ProjectStatus;
use crate::store::{SecretKey, Store};

pub async fn create(admin_url: &str, creates: usize) -> anyhow::Result<()> {
    let scratch = Scratch::create(admin_url).await?;
    let repo = GitRepo::serve().await?;
    let result = run(&scratch.url, &repo, creates).await;
    repo.stop();
    scratch.drop_database().await?;
    result
}

async fn run(url: &str, repo: &GitRepo, creates: usize) -> anyhow::Result<()> {
    let key_hex: String = {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("random");
        b.iter().map(|x| format!("{x:02x}")).collect()
    };
    let store = Store::connect(url, SecretKey::from_hex(&key_hex)?, 4).await?;
    store.migrate().await?;
    let user = store.create_user("bench", None, false).await?;
    let console = Console::new(store.clone(), None, None).with_repos(RepoPolicy {
        allow_private_hosts: true,
    });
    console
        .operator()
        .add_template(&format!(
            "name = \"bench\"\ndescription = \"bench\"\ncommand = \"sh\"\n\
             setup = \"echo ready > .ready\"\n[repo]\nurl = \"{}\"\nbranch = \"main\"\n\
             [env]\nBENCH = \"1\"\n",
            repo.url
        ))
        .await?;
    let server = ChildServer::start_with_config(
        url,
        &key_hex,
        "[local]\nsandbox_command = \"sh\"\n[git]\nallow_private_hosts = true\n",
    )
    .await?;
    let as_user = console.as_user(user.clone(), Front::Cli);
    let mut samples = Vec::with_capacity(creates);
    let mut result = Ok(());
    for i in 0..creates {
        let name = format!("bench{i}");
        let new = NewProject {
            template: Some("bench".into()),
            ..NewProject::default()
        };
        let started = Instant::now();
        if let Err(e) = as_user.create_from(&name, &new).await {
            result = Err(anyhow::anyhow!("create {name}: {e}"));
            break;
        }
        match running(&store, user.id, &name).await {
            Ok(()) => samples.push(started.elapsed()),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        if let Err(e) = delete(&store, user.id, &name).await {
            result = Err(e);
            break;
        }
    }
    server.stop().await;
    result?;
    samples.sort();
    println!(
        "create → RUNNING with a template (clone of a small repository over git://, a setup \
         script, a database), local driver, {} creates one after another:",
        samples.len()
    );
    println!(
        "  p50 {:.1} ms   p99 {:.1} ms   min {:.1} ms   max {:.1} ms",
        ms(quantile(&samples, 0.5)),
        ms(quantile(&samples, 0.99)),
        ms(samples.first().copied().unwrap_or_default()),
        ms(samples.last().copied().unwrap_or_default()),
    );
    Ok(())
}

/// Waits for the project to be RUNNING, polling every 2 ms.
async fn running(store: &Store, owner: uuid::Uuid, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let p = store.find_project(owner, name).await?;
        match p.project.status {
            ProjectStatus::Running => return Ok(()),
            ProjectStatus::Error => bail!(
                "{name} failed: {:?}",
                p.resources.iter().find_map(|r| r.last_error.clone())
            ),
            _ if started.elapsed() > Duration::from_secs(120) => {
                bail!("{name} was not RUNNING within 120 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

async fn delete(store: &Store, owner: uuid::Uuid, name: &str) -> anyhow::Result<()> {
    store
        .record_intent(owner, name, crate::model::Intent::Delete, "bench")
        .await?;
    let started = Instant::now();
    while store.find_project(owner, name).await.is_ok() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{name} was not deleted within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A small repository (a README and 20 source files) behind `git daemon`.
struct GitRepo {
    dir: std::path::PathBuf,
    daemon: std::process::Child,
    url: String,
}

impl GitRepo {
    async fn serve() -> anyhow::Result<GitRepo> {
        let dir = std::env::temp_dir().join(format!(
            "kb-git-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let work = dir.join("work");
        std::fs::create_dir_all(&work)?;
        std::fs::write(work.join("README.md"), "bench\n")?;
        for i in 0..20 {
            std::fs::write(
                work.join(format!("file{i}.txt")),
                format!("{i}\n").repeat(50),
            )?;
        }
        let git = |args: &[&str], cwd: &std::path::Path| -> anyhow::Result<()> {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=b", "-c", "user.email=b@b"])
                .args(args)
                .current_dir(cwd)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .context("running git")?;
            if !out.status.success() {
                bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        git(&["init", "-q", "-b", "main"], &work)?;
        git(&["add", "."], &work)?;
        git(&["commit", "-q", "-m", "bench"], &work)?;
        git(&["clone", "-q", "--bare", "work", "app.git"], &dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let daemon = std::process::Command::new("git")
            .arg("daemon")
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", dir.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting git daemon")?;
        let repo = GitRepo {
            dir,
            daemon,
            url: format!("git://127.0.0.1:{port}/app.git"),
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("git daemon did not listen on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(repo)
    }

    fn stop(mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
