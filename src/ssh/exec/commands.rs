//! One function per exec command: parse what clap could not, call the
//! console as the signed-in user, render the result for stdout.

use serde::Serialize;

use super::Failure;
use super::args::{Cmd, EnvVerb, ExecArgs, KeysAction, KubeconfigAction, TeamVerb, WebhookAction};
use super::render::{
    self, EnvJson, EventJson, ProjectDetailJson, ProjectJson, SessionJson, cell, json, safe,
};
use crate::console::{ConsoleError, UserConsole};
use crate::model::Intent;
use crate::model::team::TeamRole;
use crate::store::keys::{MAX_KEY_INPUT, SshKey};

/// How many events `project NAME` shows; `events NAME` shows more.
const DETAIL_EVENTS: i64 = 10;

type Out = Result<String, Failure>;

/// The future of one command, boxed: each arm's future is made in this
/// short-lived frame and polled on the heap. As one `async fn`, a debug
/// build kept a stack slot for every command's future in the frame that
/// polls it, and a deep poll under it (a new database connection) could
/// overflow a 2 MiB thread stack.
pub(super) fn dispatch<'a>(
    console: &'a UserConsole,
    args: ExecArgs,
    stdin: &'a [u8],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Out> + Send + 'a>> {
    let json = args.json;
    let c = console;
    match args.command {
        Cmd::Sessions { name } => Box::pin(async move { sessions(c, &name, json).await }),
        Cmd::Restart { name, session } => {
            Box::pin(async move { restart(c, &name, session.as_deref(), json).await })
        }
        Cmd::Projects => Box::pin(async move { projects(c, json).await }),
        Cmd::Project { name } => Box::pin(async move { project(c, &name, json).await }),
        Cmd::Create {
            name,
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
            Box::pin(async move { create(c, &name, &new, json).await })
        }
        Cmd::Templates { action, name, from } => Box::pin(async move {
            super::templates::templates(c, action, name.as_deref(), from.as_deref(), json).await
        }),
        Cmd::Git { name, action } => match action {
            super::args::GitVerb::Status => {
                Box::pin(async move { git_status(c, &name, json).await })
            }
        },
        Cmd::Team {
            team,
            action,
            user,
            role,
        } => Box::pin(async move { team_cmd(c, &team, action, user.as_deref(), role, json).await }),
        Cmd::Start { name } => Box::pin(async move { intent(c, &name, Intent::Start, json).await }),
        Cmd::Stop { name } => Box::pin(async move { intent(c, &name, Intent::Stop, json).await }),
        Cmd::Delete { name, yes } => Box::pin(async move { delete(c, &name, yes, json).await }),
        Cmd::Retry { name } => Box::pin(async move { intent(c, &name, Intent::Retry, json).await }),
        Cmd::Env {
            name,
            action,
            args,
            secret,
        } => Box::pin(async move { env(c, &name, action, &args, secret, json).await }),
        Cmd::Events { name, limit } => Box::pin(async move { events(c, &name, limit, json).await }),
        Cmd::Keys { action } => match action.unwrap_or(KeysAction::List) {
            KeysAction::List => Box::pin(async move { keys_list(c, json).await }),
            KeysAction::Add => Box::pin(async move { keys_add(c, stdin, json).await }),
            KeysAction::Remove { fingerprint } => {
                Box::pin(async move { keys_remove(c, &fingerprint, json).await })
            }
        },
        Cmd::Whoami => Box::pin(async move { whoami(c, json).await }),
        Cmd::Quota => Box::pin(async move { quota(c, json).await }),
        Cmd::Audit { since, limit } => {
            Box::pin(async move { audit(c, since.as_deref(), limit, json).await })
        }
        Cmd::Kubeconfig { action } => match action.unwrap_or(KubeconfigAction::Show) {
            KubeconfigAction::Show => Box::pin(async move { kubeconfig_show(c, json).await }),
            KubeconfigAction::Set => Box::pin(async move { kubeconfig_set(c, stdin, json).await }),
            KubeconfigAction::Unset => Box::pin(async move { kubeconfig_unset(c, json).await }),
        },
        Cmd::Agents => Box::pin(async move { super::agents::agents(c, json).await }),
        Cmd::Inbox => Box::pin(async move { super::agents::inbox(c, json).await }),
        Cmd::Wait {
            name,
            session,
            until,
            timeout,
        } => Box::pin(async move {
            super::agents::wait(c, &name, session.as_deref(), until.state(), &timeout, json).await
        }),
        Cmd::Notifications { limit, all } => {
            Box::pin(async move { super::agents::notifications(c, limit, all, json).await })
        }
        Cmd::Idle { name, after } => {
            Box::pin(async move { super::idle::idle(c, &name, after.as_deref(), json).await })
        }
        Cmd::Extend { name, for_ } => {
            Box::pin(async move { super::idle::extend(c, &name, for_.as_deref(), json).await })
        }
        Cmd::Mute { name, off } => {
            Box::pin(async move { super::agents::mute(c, &name, !off, json).await })
        }
        Cmd::Webhook { action } => match action.unwrap_or(WebhookAction::Show) {
            WebhookAction::Show => {
                Box::pin(async move { super::agents::webhook_show(c, json).await })
            }
            WebhookAction::Set => {
                Box::pin(async move { super::agents::webhook_set(c, stdin, json).await })
            }
            WebhookAction::Unset => {
                Box::pin(async move { super::agents::webhook_unset(c, json).await })
            }
        },
    }
}

async fn audit(c: &UserConsole, since: Option<&str>, limit: i64, as_json: bool) -> Out {
    let since = since
        .map(|s| crate::model::since::parse_since(s, chrono::Utc::now()))
        .transpose()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let records = c.audit(since, limit).await?;
    Ok(if as_json {
        json(&records)
    } else {
        render::audit_list(&records)
    })
}

/// `team NAME members|add USER --role R|remove USER`.
async fn team_cmd(
    c: &UserConsole,
    team: &str,
    action: TeamVerb,
    user: Option<&str>,
    role: Option<String>,
    as_json: bool,
) -> Out {
    let role = role
        .map(|r| r.parse::<TeamRole>())
        .transpose()
        .map_err(|e| Failure::usage(e.to_string()))?;
    match (action, user, role) {
        (TeamVerb::Members, None, None) => {
            let members = c.team_members(team).await?;
            Ok(if as_json {
                json(&members)
            } else {
                let mut out = format!("{} {}\n", cell("USER", 32), "ROLE");
                for m in &members {
                    out.push_str(&format!("{} {}\n", cell(&m.username, 32), m.role));
                }
                out
            })
        }
        (TeamVerb::Add, Some(user), Some(role)) => {
            c.team_add(team, user, role).await?;
            Ok(if as_json {
                json(&serde_json::json!({"team": team, "user": user, "role": role}))
            } else {
                format!("{} is now a {role} of {}\n", safe(user, 40), safe(team, 40))
            })
        }
        (TeamVerb::Remove, Some(user), None) => {
            c.team_remove(team, user).await?;
            Ok(if as_json {
                json(&serde_json::json!({"team": team, "user": user, "removed": true}))
            } else {
                format!("{} is no longer in {}\n", safe(user, 40), safe(team, 40))
            })
        }
        (TeamVerb::Add, _, _) => Err(Failure::usage(
            "expected `team NAME add USER --role owner|member|viewer`",
        )),
        (TeamVerb::Remove, _, _) => Err(Failure::usage("expected `team NAME remove USER`")),
        (TeamVerb::Members, _, _) => Err(Failure::usage("`team NAME members` takes nothing more")),
    }
}

async fn projects(c: &UserConsole, as_json: bool) -> Out {
    let list = c.projects().await?;
    Ok(if as_json {
        json(&list.iter().map(ProjectJson::from).collect::<Vec<_>>())
    } else {
        render::projects_table(&list)
    })
}

async fn project(c: &UserConsole, name: &str, as_json: bool) -> Out {
    let p = c.project(name, DETAIL_EVENTS).await?;
    Ok(if as_json {
        json(&ProjectDetailJson {
            project: ProjectJson::from(&p.view),
            env: p.env.iter().map(EnvJson::from).collect(),
            events: p.events.iter().map(EventJson::from).collect(),
        })
    } else {
        render::project_detail(&p.view, &p.env, &p.events)
    })
}

async fn create(
    c: &UserConsole,
    name: &str,
    new: &crate::console::NewProject,
    as_json: bool,
) -> Out {
    let view = c.create_from(name, new).await?;
    Ok(if as_json {
        json(&ProjectJson::from(&view))
    } else {
        let p = &view.project;
        format!(
            "created project {} (slug {}): {}\nfollow it with `project {}`\n",
            safe(&p.name, 100),
            p.slug,
            p.status,
            p.slug
        )
    })
}

/// `git NAME status`: one line, or the state as JSON (`null` fields when
/// the working tree is not a repository).
async fn git_status(c: &UserConsole, name: &str, as_json: bool) -> Out {
    let state = c.git_state(name).await?;
    Ok(match (as_json, state) {
        (true, Some(s)) => json(&serde_json::json!({
            "project": name.trim(),
            "repository": true,
            "branch": s.branch,
            "upstream": s.upstream,
            "ahead": s.ahead,
            "behind": s.behind,
            "changed": s.changed,
        })),
        (true, None) => json(&serde_json::json!({"project": name.trim(), "repository": false})),
        (false, Some(s)) => format!("{}\n", safe(&s.summary(), 300)),
        (false, None) => format!(
            "{} has no git repository in its working directory (yet)\n",
            safe(name.trim(), 100)
        ),
    })
}

#[derive(Serialize)]
struct IntentJson<'a> {
    project: String,
    intent: &'a str,
    status: &'a str,
}

async fn intent(c: &UserConsole, name: &str, intent: Intent, as_json: bool) -> Out {
    let status = c.request(name, intent).await?;
    Ok(if as_json {
        json(&IntentJson {
            project: name.trim().to_string(),
            intent: intent.verb(),
            status: status.as_str(),
        })
    } else {
        format!(
            "{intent} requested for {}: now {status}\n",
            safe(name.trim(), 100)
        )
    })
}

async fn delete(c: &UserConsole, name: &str, yes: bool, as_json: bool) -> Out {
    if !yes {
        // Look the project up first, so a typo is reported before the user
        // is asked to confirm (and an unknown name answers as everywhere).
        let p = c.project(name, 0).await?;
        return Err(Failure::usage(format!(
            "this deletes {} with its sandbox and database for good; to confirm, run `delete {} --yes`",
            safe(&p.view.project.name, 100),
            shell_words::quote(&safe(name.trim(), 100))
        )));
    }
    intent(c, name, Intent::Delete, as_json).await
}

async fn sessions(c: &UserConsole, name: &str, as_json: bool) -> Out {
    let list = c.sessions(name).await?;
    Ok(if as_json {
        json(&list.iter().map(SessionJson::from).collect::<Vec<_>>())
    } else {
        render::sessions_table(&list)
    })
}

#[derive(Serialize)]
struct RestartJson {
    project: String,
    /// `null`: the default session.
    session: Option<String>,
    restarted: bool,
}

async fn restart(c: &UserConsole, name: &str, session: Option<&str>, as_json: bool) -> Out {
    let restarted = c.restart(name, session).await.map_err(|e| match e {
        // A malformed session name is a mistake in the command line.
        ConsoleError::Invalid { reason, .. } => Failure::usage(reason),
        other => other.into(),
    })?;
    Ok(if as_json {
        json(&RestartJson {
            project: name.trim().to_string(),
            session: restarted.session,
            restarted: true,
        })
    } else {
        format!(
            "restarted session {} of {}\n",
            safe(session.unwrap_or("(default)"), 30),
            safe(name.trim(), 100)
        )
    })
}

/// Checks the shape of `env NAME ACTION ARGS…` (clap cannot: see `args::Cmd::Env`).
async fn env(
    c: &UserConsole,
    name: &str,
    action: EnvVerb,
    args: &[String],
    secret: bool,
    as_json: bool,
) -> Out {
    if secret && action != EnvVerb::Set {
        return Err(Failure::usage(
            "--secret goes with set: `env NAME set KEY=VALUE --secret`",
        ));
    }
    match (action, args) {
        (EnvVerb::List, []) => env_list(c, name, as_json).await,
        (EnvVerb::Set, [assignment]) => env_set(c, name, assignment, secret, as_json).await,
        (EnvVerb::Unset, [key]) => env_unset(c, name, key, as_json).await,
        (EnvVerb::List, _) => Err(Failure::usage(
            "`env NAME list` takes no arguments; to set a variable use `env NAME set KEY=VALUE`",
        )),
        (EnvVerb::Set, _) => Err(Failure::usage(
            "expected one KEY=VALUE after set (quote a value with spaces), e.g. `env myblog set API_URL=https://example.com`",
        )),
        (EnvVerb::Unset, _) => Err(Failure::usage(
            "expected one variable name after unset, e.g. `env myblog unset API_URL`",
        )),
    }
}

async fn env_list(c: &UserConsole, name: &str, as_json: bool) -> Out {
    let env = c.env(name).await?;
    Ok(if as_json {
        json(&env.iter().map(EnvJson::from).collect::<Vec<_>>())
    } else {
        render::env_list(&env)
    })
}

#[derive(Serialize)]
struct EnvChangeJson<'a> {
    project: String,
    key: &'a str,
    action: &'a str,
    secret: bool,
}

async fn env_set(
    c: &UserConsole,
    name: &str,
    assignment: &str,
    secret: bool,
    as_json: bool,
) -> Out {
    let Some((key, value)) = assignment.split_once('=') else {
        return Err(Failure::usage(
            "expected KEY=VALUE after `set`, e.g. `env myblog set API_URL=https://example.com`",
        ));
    };
    c.set_env(name, key, value, secret).await?;
    Ok(if as_json {
        json(&EnvChangeJson {
            project: name.trim().to_string(),
            key,
            action: "set",
            secret,
        })
    } else {
        format!(
            "set {}{} on {}; running sandboxes pick it up on their next sync\n",
            safe(key, 128),
            if secret { " (secret)" } else { "" },
            safe(name.trim(), 100)
        )
    })
}

async fn env_unset(c: &UserConsole, name: &str, key: &str, as_json: bool) -> Out {
    c.unset_env(name, key).await?;
    Ok(if as_json {
        json(&EnvChangeJson {
            project: name.trim().to_string(),
            key,
            action: "unset",
            secret: false,
        })
    } else {
        format!("unset {} on {}\n", safe(key, 128), safe(name.trim(), 100))
    })
}

async fn events(c: &UserConsole, name: &str, limit: i64, as_json: bool) -> Out {
    let events = c.events(name, limit).await?;
    Ok(if as_json {
        json(&events.iter().map(EventJson::from).collect::<Vec<_>>())
    } else {
        render::events_list(&events)
    })
}

fn keys_table(keys: &[SshKey]) -> String {
    if keys.is_empty() {
        return "no keys: add one with `ssh … keys add < ~/.ssh/id_ed25519.pub`\n".into();
    }
    let mut out = format!(
        "{} {} {} COMMENT\n",
        cell("FINGERPRINT", 51),
        cell("ALGORITHM", 20),
        cell("ADDED", 10)
    );
    for k in keys {
        let line = format!(
            "{} {} {} {}",
            cell(&k.fingerprint, 51),
            cell(&k.algorithm, 20),
            k.created_at.format("%Y-%m-%d"),
            if k.pending {
                format!("(pending: sign in with it once) {}", safe(&k.comment, 60))
            } else {
                safe(&k.comment, 60)
            }
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

async fn keys_list(c: &UserConsole, as_json: bool) -> Out {
    let keys = c.keys().await?;
    Ok(if as_json {
        json(&keys)
    } else {
        keys_table(&keys)
    })
}

async fn keys_add(c: &UserConsole, stdin: &[u8], as_json: bool) -> Out {
    if stdin.len() > MAX_KEY_INPUT {
        return Err(Failure::new(format!(
            "stdin has {} bytes; send one public key line (at most {} KiB), e.g. `ssh … keys add < ~/.ssh/id_ed25519.pub`",
            stdin.len(),
            MAX_KEY_INPUT / 1024
        )));
    }
    let Ok(text) = std::str::from_utf8(stdin) else {
        return Err(Failure::new(
            "stdin is not text: send the public key (the .pub file), e.g. `ssh … keys add < ~/.ssh/id_ed25519.pub`",
        ));
    };
    let key = c.add_key(text).await?;
    Ok(if as_json {
        json(&key)
    } else {
        format!(
            "added {} key {}{}{}\n",
            safe(&key.algorithm, 40),
            key.fingerprint,
            if key.comment.is_empty() {
                String::new()
            } else {
                format!(" ({})", safe(&key.comment, 60))
            },
            if key.pending {
                "; pending until you sign in with it once (ssh -i KEY …), which proves it is yours"
            } else {
                ""
            }
        )
    })
}

#[derive(Serialize)]
struct KeyRemovedJson {
    removed: String,
}

async fn keys_remove(c: &UserConsole, fingerprint: &str, as_json: bool) -> Out {
    // Reported in the form `keys list` shows, whichever form was typed.
    let fingerprint = c.remove_key(fingerprint).await?;
    Ok(if as_json {
        json(&KeyRemovedJson {
            removed: fingerprint,
        })
    } else {
        format!("removed key {}\n", safe(&fingerprint, 80))
    })
}

/// One quota as `quota --json` prints it; a limit of `null` is none.
#[derive(Serialize)]
struct QuotaJson<'a> {
    /// `user` or `team`.
    owner: &'a str,
    /// The user's name or the team's.
    name: &'a str,
    /// The user's role in the team (teams only).
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    limits: LimitsJson,
    usage: LimitsJson,
}

#[derive(Serialize)]
struct LimitsJson {
    projects: Option<i64>,
    running: Option<i64>,
    cpu_millis: Option<i64>,
    memory_bytes: Option<i64>,
}

impl LimitsJson {
    fn limits(l: crate::model::quota::Limits) -> LimitsJson {
        LimitsJson {
            projects: l.projects,
            running: l.running,
            cpu_millis: l.cpu_millis,
            memory_bytes: l.memory_bytes,
        }
    }

    fn usage(u: crate::model::quota::Usage) -> LimitsJson {
        LimitsJson {
            projects: Some(u.projects),
            running: Some(u.running),
            cpu_millis: Some(u.cpu_millis),
            memory_bytes: Some(u.memory_bytes),
        }
    }
}

/// `quota`: the user's own quota, then each of their teams'.
async fn quota(c: &UserConsole, as_json: bool) -> Out {
    let q = c.quotas().await?;
    let me = c.user().username.clone();
    if as_json {
        let mut all = vec![QuotaJson {
            owner: "user",
            name: &me,
            role: None,
            limits: LimitsJson::limits(q.own.0),
            usage: LimitsJson::usage(q.own.1),
        }];
        all.extend(q.teams.iter().map(|t| QuotaJson {
            owner: "team",
            name: &t.team,
            role: Some(t.role.to_string()),
            limits: LimitsJson::limits(t.limits),
            usage: LimitsJson::usage(t.usage),
        }));
        return Ok(json(&all));
    }
    Ok(render::quotas(&q))
}

#[derive(Serialize)]
struct WhoamiJson<'a> {
    username: &'a str,
    role: &'a str,
    projects: usize,
    /// `password` and/or `ssh_key`, in that order.
    auth_methods: Vec<&'a str>,
    password: bool,
    ssh_keys: usize,
}

async fn whoami(c: &UserConsole, as_json: bool) -> Out {
    let me = c.whoami().await?;
    let (projects, password, ssh_keys) = (me.projects, me.password, me.ssh_keys);
    let mut auth_methods = Vec::new();
    if password {
        auth_methods.push("password");
    }
    if ssh_keys > 0 {
        auth_methods.push("ssh_key");
    }
    Ok(if as_json {
        json(&WhoamiJson {
            username: &me.username,
            role: &me.role,
            projects,
            auth_methods,
            password,
            ssh_keys,
        })
    } else {
        let mut auth = Vec::new();
        if password {
            auth.push("password".to_string());
        }
        if ssh_keys > 0 {
            auth.push(format!(
                "{ssh_keys} ssh key{}",
                if ssh_keys == 1 { "" } else { "s" }
            ));
        }
        format!(
            "username  {}\nrole      {}\nprojects  {projects}\nauth      {}\n",
            safe(&me.username, 40),
            safe(&me.role, 20),
            if auth.is_empty() {
                "none".to_string()
            } else {
                auth.join(", ")
            }
        )
    })
}

#[derive(Serialize)]
struct KubeconfigJson {
    set: bool,
    context: Option<String>,
    namespace: Option<String>,
    server: Option<String>,
}

fn kubeconfig_out(
    k: Option<&crate::k8s::kubeconfig::TenantKubeconfig>,
    as_json: bool,
    verb: &str,
) -> String {
    if as_json {
        return json(&KubeconfigJson {
            set: k.is_some(),
            context: k.map(|k| k.context.clone()),
            namespace: k.map(|k| k.namespace.clone()),
            server: k.map(|k| k.server.clone()),
        });
    }
    match k {
        Some(k) => format!(
            "{verb}: context {}, namespace {}, server {}\n",
            safe(&k.context, 80),
            safe(&k.namespace, 63),
            safe(&k.server, 200)
        ),
        None => "no kubeconfig set: projects run on the server's cluster, or on this host\n".into(),
    }
}

async fn kubeconfig_show(c: &UserConsole, as_json: bool) -> Out {
    let k = c.kubeconfig().await?;
    Ok(kubeconfig_out(k.as_ref(), as_json, "kubeconfig set"))
}

async fn kubeconfig_set(c: &UserConsole, stdin: &[u8], as_json: bool) -> Out {
    let Ok(text) = std::str::from_utf8(stdin) else {
        return Err(Failure::new(
            "stdin is not text: send the kubeconfig file, e.g. `ssh … kubeconfig set < ~/.kube/config`",
        ));
    };
    if text.trim().is_empty() {
        return Err(Failure::usage(
            "stdin is empty: send the kubeconfig file, e.g. `ssh … kubeconfig set < ~/.kube/config`",
        ));
    }
    let k = c.set_kubeconfig(text).await?;
    Ok(kubeconfig_out(Some(&k), as_json, "kubeconfig stored"))
}

async fn kubeconfig_unset(c: &UserConsole, as_json: bool) -> Out {
    c.unset_kubeconfig().await?;
    Ok(kubeconfig_out(None, as_json, "kubeconfig removed"))
}
