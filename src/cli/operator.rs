//! The operator's commands (`kiln user …`, `kiln project … --user U`,
//! `kiln status`): a front end over the console's operator handle.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use chrono::Utc;

use super::{AuditArgs, Owner, ProjectCommand, QuotaCommand, TeamCommand, UserCommand};
use crate::console::{Console, NewUser, OperatorConsole};
use crate::model::intent::Intent;
use crate::model::naming::printable;
use crate::runtime::Database;
use crate::store::projects::ProjectView;
use crate::store::resources::ResourceKind;

/// `kiln team …`.
pub(super) async fn template(
    db: &Database,
    cmd: super::TemplateCommand,
    catalog: crate::console::Catalog,
) -> anyhow::Result<()> {
    use super::TemplateCommand as T;
    let op = Console::new(db.store.clone(), None, None)
        .with_templates(catalog)
        .operator();
    match cmd {
        T::Add { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let t = op
                .add_template(&text)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!("added global template {}", t.name);
        }
        T::List { json } => {
            let list = op.global_templates().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<20} {:<9} DESCRIPTION", "NAME", "FROM");
                for t in &list {
                    println!(
                        "{:<20} {:<9} {}",
                        t.name,
                        t.scope.as_str(),
                        printable(&t.description, 100)
                    );
                }
            }
        }
        T::Remove { name } => {
            op.remove_template(&name).await?;
            println!("removed global template {}", printable(&name, 40));
        }
    }
    Ok(())
}

pub(super) async fn team(db: &Database, cmd: TeamCommand) -> anyhow::Result<()> {
    use crate::model::team::TeamRole;
    let op = operator(db);
    let role = |r: &str| r.parse::<TeamRole>();
    match cmd {
        TeamCommand::Create { name } => {
            let t = op.create_team(&name).await?;
            println!("created team {}", t.name);
        }
        TeamCommand::Delete { name } => {
            op.delete_team(&name).await?;
            println!("deleted team {}", printable(&name, 40));
        }
        TeamCommand::List { json } => {
            let teams = op.teams().await?;
            if json {
                print!("{}", crate::ssh::exec::safe_json(&teams));
            } else {
                println!("{:<32} {:>7} {:>8}", "TEAM", "MEMBERS", "PROJECTS");
                for t in teams {
                    println!("{:<32} {:>7} {:>8}", t.name, t.members, t.projects);
                }
            }
        }
        TeamCommand::Members { name } => {
            for m in op.team_members(&name).await? {
                println!("{:<32} {}", m.username, m.role);
            }
        }
        TeamCommand::Add {
            name,
            user,
            role: r,
        }
        | TeamCommand::Role {
            name,
            user,
            role: r,
        } => {
            let r = role(&r)?;
            op.set_team_member(&name, &user, r).await?;
            println!(
                "{} is a {r} of {}",
                printable(&user, 40),
                printable(&name, 40)
            );
        }
        TeamCommand::Remove { name, user } => {
            op.remove_team_member(&name, &user).await?;
            println!(
                "{} is no longer in {}",
                printable(&user, 40),
                printable(&name, 40)
            );
        }
    }
    Ok(())
}

/// `kiln quota set`.
pub(super) async fn quota(db: &Database, cmd: QuotaCommand) -> anyhow::Result<()> {
    let QuotaCommand::Set {
        user,
        team,
        projects,
        running,
        cpu,
        memory,
    } = cmd;
    let (name, is_team) = match (user, team) {
        (Some(u), None) => (u, false),
        (None, Some(t)) => (t, true),
        _ => bail!("give one of --user U or --team T"),
    };
    let limits = crate::model::quota::Limits {
        projects,
        running,
        cpu_millis: cpu,
        memory_bytes: memory,
    };
    let (limits, usage) = operator(db).set_quota(&name, is_team, limits).await?;
    println!(
        "quota of {} {}: {}",
        if is_team { "team" } else { "user" },
        printable(&name, 40),
        crate::model::quota::summary(limits, usage)
    );
    Ok(())
}

/// `kiln audit`: everyone's records, filtered.
pub(super) async fn audit(db: &Database, args: AuditArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| crate::model::since::parse_since(s, Utc::now()))
        .transpose()?;
    let filter = crate::store::audit::AuditFilter {
        username: args.user,
        project: args.project,
        since,
        limit: args.limit,
        ..Default::default()
    };
    let records = operator(db).audit(&filter).await?;
    if args.json {
        print!("{}", crate::ssh::exec::safe_json(&records));
    } else {
        print!("{}", crate::ssh::exec::audit_list(&records));
    }
    Ok(())
}

pub(super) async fn user(db: &Database, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            username,
            password_stdin,
            no_password,
            ssh_key,
            admin,
        } => {
            if no_password && ssh_key.is_none() {
                bail!("a user needs a way in: give a password or --ssh-key FILE");
            }
            // Refused before asking for a password that would not be used.
            crate::store::users::check_new_username(&username)?;
            // Read and check the key before creating anything.
            let key_line = match &ssh_key {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            if let Some(line) = &key_line {
                russh::keys::PublicKey::from_openssh(line.trim()).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not an OpenSSH public key ({e}); nothing was created",
                        ssh_key.as_ref().expect("key path").display()
                    )
                })?;
            }
            let password = if no_password {
                None
            } else if password_stdin {
                Some(read_stdin_line()?)
            } else {
                Some(prompt_new_password()?)
            };
            let u = operator(db)
                .add_user(NewUser {
                    username: &username,
                    password: password.as_deref(),
                    admin,
                    ssh_key: key_line.as_deref(),
                })
                .await?;
            println!("created user {} ({})", u.username, u.role);
        }
        UserCommand::List { json } => {
            let users = operator(db).users().await?;
            if json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "username": u.username, "role": u.role,
                            "disabled": u.disabled_at.is_some(), "created_at": u.created_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<32} {:<7} {:<9} CREATED", "USERNAME", "ROLE", "STATE");
                for u in users {
                    let state = if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<32} {:<7} {:<9} {}",
                        u.username,
                        u.role,
                        state,
                        u.created_at.format("%Y-%m-%d %H:%M")
                    );
                }
            }
        }
        UserCommand::Disable { username } => {
            operator(db).disable_user(&username).await?;
            println!("disabled user {username}");
        }
    }
    Ok(())
}

pub(super) async fn project(
    db: &Database,
    idle: crate::model::idle::IdlePolicy,
    cmd: ProjectCommand,
    repos: crate::console::RepoPolicy,
    catalog: crate::console::Catalog,
) -> anyhow::Result<()> {
    let as_owner = async |owner: &Owner| {
        Console::new(db.store.clone(), None, None)
            .with_idle(idle.clone())
            .with_repos(repos)
            .with_templates(catalog.clone())
            .operator()
            .for_user(&owner.user)
            .await
    };
    let intent = async |name: String, owner: Owner, intent: Intent| {
        let status = as_owner(&owner).await?.request(&name, intent).await?;
        println!(
            "{} requested for {}: now {status}",
            intent,
            printable(&name, 60)
        );
        anyhow::Ok(())
    };
    match cmd {
        ProjectCommand::Create {
            name,
            owner,
            description,
            team,
            repo,
            branch,
            template,
        } => {
            let new = crate::console::NewProject {
                description,
                team,
                repo,
                branch,
                template,
            };
            let v = as_owner(&owner).await?.create_from(&name, &new).await?;
            println!(
                "created project {} (slug {}): {}",
                printable(&v.project.name, 60),
                v.project.slug,
                v.project.status
            );
            Ok(())
        }
        ProjectCommand::List { owner, json } => {
            let projects = as_owner(&owner).await?.projects().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&projects)?);
            } else {
                print_projects(&projects);
            }
            Ok(())
        }
        ProjectCommand::Start { name, owner } => intent(name, owner, Intent::Start).await,
        ProjectCommand::Stop { name, owner } => intent(name, owner, Intent::Stop).await,
        ProjectCommand::Delete { name, owner } => intent(name, owner, Intent::Delete).await,
        ProjectCommand::Retry { name, owner } => intent(name, owner, Intent::Retry).await,
        ProjectCommand::Idle { name, owner, after } => {
            let c = as_owner(&owner).await?;
            let state = match after {
                None => c.idle_state(&name).await?,
                Some(text) => {
                    let setting = crate::model::idle::IdleSetting::parse(&text).with_context(
                        || format!("invalid --after {}: use a duration (90s, 30m, 8h, 2d), off or default", printable(&text, 30)),
                    )?;
                    c.set_idle(&name, setting).await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(())
        }
        ProjectCommand::Extend { name, owner, for_ } => {
            let asked = for_
                .as_deref()
                .map(|t| {
                    crate::model::idle::parse_duration(t).with_context(|| {
                        format!(
                            "invalid --for {}: use e.g. 90s, 30m, 8h or 2d",
                            printable(t, 30)
                        )
                    })
                })
                .transpose()?;
            let until = as_owner(&owner).await?.extend_idle(&name, asked).await?;
            println!(
                "{} keeps running at least until {}",
                printable(&name, 60),
                until.format("%Y-%m-%d %H:%M:%S UTC")
            );
            Ok(())
        }
    }
}

/// The operator's console over `db` (no sessions or logs: the CLI records intents).
fn operator(db: &Database) -> OperatorConsole {
    Console::new(db.store.clone(), None, None).operator()
}

fn print_projects(projects: &[ProjectView]) {
    println!(
        "{:<24} {:<12} {:<12} {:<12} {:>6}  ERROR",
        "NAME", "STATUS", "SANDBOX", "DATABASE", "AGE"
    );
    for p in projects {
        let sub = |k: ResourceKind| {
            p.resources
                .iter()
                .find(|r| r.kind == k)
                .map(|r| r.status.as_str())
                .unwrap_or("-")
        };
        let error = p
            .resources
            .iter()
            .find_map(|r| r.last_error.as_deref())
            .map(|e| printable(e, 60))
            .unwrap_or_default();
        println!(
            "{:<24} {:<12} {:<12} {:<12} {:>6}  {}",
            printable(&p.project.name, 24),
            p.project.status.as_str(),
            sub(ResourceKind::Sandbox),
            sub(ResourceKind::Database),
            age(p.project.created_at),
            error
        );
    }
}

/// `45s`, `12m`, `3h`, `9d`.
pub fn age(since: chrono::DateTime<Utc>) -> String {
    let s = (Utc::now() - since).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub(super) async fn status(db: &Database, json: bool) -> anyhow::Result<()> {
    let s = operator(db).status().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("queue depth (due, unleased): {}", s.queue_depth);
    println!("projects by status:");
    for (status, n) in &s.by_status {
        println!("  {status:<12} {n}");
    }
    let p = &s.pool;
    println!(
        "database pool: {} ready, {} being made, {} to drop, {} claimed awaiting clean-up",
        p.ready, p.creating, p.discarding, p.claimed_pending
    );
    if let Some(e) = &p.last_error {
        println!("  last pool error: {}", printable(e, 120));
    }
    let p = &s.sandbox_pool;
    println!(
        "sandbox pool: {} ready, {} being made, {} to drop",
        p.ready, p.creating, p.discarding
    );
    if let Some(e) = &p.last_error {
        println!("  last pool error: {}", printable(e, 120));
    }
    println!("leases held:");
    if s.lease_holders.is_empty() {
        println!("  none");
    }
    for h in &s.lease_holders {
        let until = h
            .until
            .map(|u| u.format("%H:%M:%S").to_string())
            .unwrap_or_default();
        println!("  {:<40} {:>5} until {until}", h.owner, h.leases);
    }
    println!("recent errors:");
    if s.errors.is_empty() {
        println!("  none");
    }
    for e in &s.errors {
        let next = e
            .next_attempt_at
            .map(|t| format!("next attempt {}", t.format("%H:%M:%S")))
            .unwrap_or_else(|| "waiting for retry".into());
        println!(
            "  {} {} [{}] attempts {} ({next}): {}",
            e.kind,
            e.resource_name,
            e.status,
            e.attempts,
            printable(&e.last_error, 120)
        );
    }
    Ok(())
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!("no password on stdin");
    }
    Ok(pw)
}

fn prompt_new_password() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to prompt for a password: use --password-stdin or --no-password");
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    if first != second {
        bail!("the passwords do not match; nothing was created");
    }
    Ok(first)
}

/// `kiln agents|inbox --user U`: what the user reads over exec, word for word.
pub(super) async fn agents(
    db: &Database,
    owner: &Owner,
    inbox: bool,
    json: bool,
) -> anyhow::Result<()> {
    let c = operator(db).for_user(&owner.user).await?;
    let out = crate::ssh::exec::agent_listing(&c, inbox, json)
        .await
        .map_err(anyhow::Error::msg)?;
    print!("{out}");
    Ok(())
}

/// `kiln mute NAME --user U [--off]`.
pub(super) async fn mute(
    db: &Database,
    name: &str,
    owner: &Owner,
    muted: bool,
) -> anyhow::Result<()> {
    let c = operator(db).for_user(&owner.user).await?;
    let out = crate::ssh::exec::agent_mute(&c, name, muted)
        .await
        .map_err(anyhow::Error::msg)?;
    print!("{out}");
    Ok(())
}
