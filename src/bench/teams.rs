//! `kiln bench teams`: with many users, teams and projects in the store,
//! (a) what the console's gate costs per action for a member of several
//! teams (resolving whose the subject is, the role check, and for a create
//! or start the quota check under the owner's lock), p50/p99; (b) how long
//! the dashboard's project list of that member takes to load (their own
//! projects and every team's, as the dashboard's list loader asks for it).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

use super::{Scratch, quantile};
use crate::console::{Action, Console, Front, UserConsole};
use crate::model::intent::Intent;
use crate::model::quota::Ask;
use crate::model::team::TeamRole;
use crate::store::{SecretKey, Store};

/// The sizes of the population the figures are taken against.
pub struct TeamsBench {
    pub users: usize,
    pub teams: usize,
    pub projects: usize,
    /// Timed runs per action.
    pub samples: usize,
    /// How many teams the measured user is in.
    pub member_of: usize,
}

pub async fn teams(admin_url: &str, b: &TeamsBench) -> anyhow::Result<()> {
    let scratch = Scratch::create(admin_url).await?;
    let result = run(&scratch.url, b).await;
    scratch.drop_database().await?;
    result
}

fn user_name(i: usize) -> String {
    format!("u{i:05}")
}

fn team_name(i: usize) -> String {
    format!("t{i:04}")
}

async fn run(url: &str, b: &TeamsBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        b.users >= 1 && b.teams >= b.member_of.max(2) && b.projects >= b.users + b.teams,
        "need at least one user, more teams than --member-of, and a project per user and team"
    );
    let store = Store::connect(url, SecretKey::generate(), 10).await?;
    store.migrate().await?;
    let started = Instant::now();
    let (user_ids, team_ids) = seed_accounts(&store, b).await?;
    // Projects: a tenth to the teams, the rest to the users, round robin.
    let team_share = b.projects / 10;
    let owners: Vec<(uuid::Uuid, String)> = (0..b.projects)
        .map(|n| {
            if n < team_share {
                let t = n % b.teams;
                (team_ids[t], format!("{}-{}", team_name(t), n / b.teams))
            } else {
                let u = (n - team_share) % b.users;
                (
                    user_ids[u],
                    format!("{}-{}", user_name(u), (n - team_share) / b.users),
                )
            }
        })
        .collect();
    let mut created = futures::stream::iter(owners.into_iter().map(|(owner, name)| {
        let store = store.clone();
        async move { store.create_project(owner, &name, "", "bench").await }
    }))
    .buffer_unordered(8);
    while let Some(r) = created.next().await {
        r.context("seeding a project")?;
    }
    drop(created);
    println!(
        "seeded {} users, {} teams, {} projects in {:.1} s",
        b.users,
        b.teams,
        b.projects,
        started.elapsed().as_secs_f64()
    );

    // The measured user: u00000, in the first `member_of` teams (owner of
    // the first, member of the rest but the last, viewer of that one).
    let me = store.require_user(&user_name(0)).await?;
    let console = Console::new(store.clone(), None, None).as_user(me, Front::Exec);
    let team = team_name(1);
    let team_project = format!("{team}/{team}-0");
    let own_project = format!("{}-0", user_name(0));
    let stranger = format!("{}/{}-0", team_name(b.teams - 1), team_name(b.teams - 1));
    let actions: Vec<(&str, Action, QuotaProbe)> = vec![
        (
            "project.show (own)",
            Action::ShowProject {
                project: &own_project,
            },
            None,
        ),
        (
            "project.show (team)",
            Action::ShowProject {
                project: &team_project,
            },
            None,
        ),
        (
            "project.show (not a member)",
            Action::ShowProject { project: &stranger },
            None,
        ),
        (
            "project.stop (team)",
            Action::Request {
                project: &team_project,
                intent: Intent::Stop,
            },
            None,
        ),
        (
            "env.set (team)",
            Action::SetEnv {
                project: &team_project,
                key: "K",
            },
            None,
        ),
        (
            "session.view (team)",
            Action::Attach {
                project: &team_project,
                read_only: true,
            },
            None,
        ),
        ("team.members", Action::TeamMembers { team: &team }, None),
        (
            "project.start (own) + quota",
            Action::Request {
                project: &own_project,
                intent: Intent::Start,
            },
            Some((Ask::Start, user_ids[0])),
        ),
        (
            "project.create (own) + quota",
            Action::CreateProject {
                name: "new",
                team: None,
            },
            Some((Ask::Create, user_ids[0])),
        ),
        (
            "project.create (team) + quota",
            Action::CreateProject {
                name: "new",
                team: Some(&team),
            },
            Some((Ask::Create, team_ids[1])),
        ),
    ];
    println!(
        "authorization (+ quota) per action, as {} (in {} teams), {} runs each:",
        user_name(0),
        b.member_of,
        b.samples
    );
    for (label, action, quota) in &actions {
        let samples = time(b.samples, || async {
            check(&console, &store, action, *quota).await
        })
        .await?;
        println!(
            "  {label:<32} p50 {:>7.1} µs  p99 {:>7.1} µs",
            us(quantile(&samples, 0.5)),
            us(quantile(&samples, 0.99))
        );
    }

    let listed = console.projects().await?.len();
    let runs = (b.samples / 5).max(20);
    let samples = time(runs, || async {
        console.projects().await?;
        Ok(())
    })
    .await?;
    println!(
        "dashboard project list of a member of {} teams ({listed} projects), {runs} loads: p50 {:.2} ms  p99 {:.2} ms",
        b.member_of,
        ms(quantile(&samples, 0.5)),
        ms(quantile(&samples, 0.99))
    );
    store.pool().close().await;
    Ok(())
}

/// Whose quota a timed action also checks, and for what (`None`: none).
type QuotaProbe = Option<(Ask, uuid::Uuid)>;

/// The gate's decision, then (for a create or start) the owner's quota
/// check under its lock, rolled back.
async fn check(
    console: &UserConsole,
    store: &Store,
    action: &Action<'_>,
    quota: QuotaProbe,
) -> anyhow::Result<()> {
    console.check(action).await?;
    if let Some((ask, owner)) = quota {
        store.probe_quota(owner, ask).await?;
    }
    Ok(())
}

/// Users and teams by bulk insert; each user in one team, the measured
/// user in `member_of` with every role.
async fn seed_accounts(
    store: &Store,
    b: &TeamsBench,
) -> anyhow::Result<(Vec<uuid::Uuid>, Vec<uuid::Uuid>)> {
    let users: Vec<String> = (0..b.users).map(user_name).collect();
    let teams: Vec<String> = (0..b.teams).map(team_name).collect();
    sqlx::query("INSERT INTO users (username) SELECT unnest($1::text[])")
        .bind(&users)
        .execute(store.pool())
        .await?;
    sqlx::query("INSERT INTO users (username, role) SELECT unnest($1::text[]), 'team'")
        .bind(&teams)
        .execute(store.pool())
        .await?;
    let (user_ids, team_ids) = (
        ids_by_name(store, &users).await?,
        ids_by_name(store, &teams).await?,
    );
    let (member_team, member_user): (Vec<uuid::Uuid>, Vec<uuid::Uuid>) = user_ids
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, u)| (team_ids[i % b.teams], *u))
        .unzip();
    sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role)
         SELECT t, u, 'member' FROM unnest($1::uuid[], $2::uuid[]) AS m(t, u)",
    )
    .bind(&member_team)
    .bind(&member_user)
    .execute(store.pool())
    .await?;
    for (t, team) in team_ids.iter().enumerate().take(b.member_of) {
        let role = match t {
            0 => TeamRole::Owner,
            t if t + 1 == b.member_of => TeamRole::Viewer,
            _ => TeamRole::Member,
        };
        store.set_member(*team, &user_name(0), role).await?;
    }
    // The member role on the team the actions name (team 1).
    store
        .set_member(team_ids[1], &user_name(0), TeamRole::Member)
        .await?;
    Ok((user_ids, team_ids))
}

/// The ids of `names`, in their order.
async fn ids_by_name(store: &Store, names: &[String]) -> anyhow::Result<Vec<uuid::Uuid>> {
    let rows: Vec<(String, uuid::Uuid)> =
        sqlx::query_as("SELECT username, id FROM users WHERE username = ANY($1)")
            .bind(names)
            .fetch_all(store.pool())
            .await?;
    let by_name: std::collections::HashMap<String, uuid::Uuid> = rows.into_iter().collect();
    names
        .iter()
        .map(|n| {
            by_name
                .get(n)
                .copied()
                .context("a seeded account is missing")
        })
        .collect()
}

async fn time<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // One untimed round warms the pool's connections and the plan cache.
    f().await?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok(samples)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
