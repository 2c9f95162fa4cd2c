//! One function per exec command. Each goes through the store scoped by the
//! signed-in user's id and returns what to print on stdout.

use serde::Serialize;

use super::Failure;
use super::args::{Cmd, EnvVerb, ExecArgs, KeysAction, KubeconfigAction};
use super::render::{
    self, EnvJson, EventJson, ProjectDetailJson, ProjectJson, SessionJson, cell, json, safe,
};
use crate::driver::{ResourceRef, SessionAttach};
use crate::model::{Intent, ResourceStatus};
use crate::store::Store;
use crate::store::keys::{MAX_KEY_INPUT, SshKey};
use crate::store::users::User;

/// How many events `project NAME` shows; `events NAME` shows more.
const DETAIL_EVENTS: i64 = 10;

type Out = Result<String, Failure>;

pub(super) async fn dispatch(
    store: &Store,
    user: &User,
    attach: Option<&dyn SessionAttach>,
    args: ExecArgs,
    stdin: &[u8],
) -> Out {
    let json = args.json;
    match args.command {
        Cmd::Sessions { name } => sessions(store, user, attach, &name, json).await,
        Cmd::Restart { name, session } => {
            restart(store, user, attach, &name, session.as_deref(), json).await
        }
        Cmd::Projects => projects(store, user, json).await,
        Cmd::Project { name } => project(store, user, &name, json).await,
        Cmd::Create { name, description } => create(store, user, &name, &description, json).await,
        Cmd::Start { name } => intent(store, user, &name, Intent::Start, json).await,
        Cmd::Stop { name } => intent(store, user, &name, Intent::Stop, json).await,
        Cmd::Delete { name, yes } => delete(store, user, &name, yes, json).await,
        Cmd::Retry { name } => intent(store, user, &name, Intent::Retry, json).await,
        Cmd::Env {
            name,
            action,
            args,
            secret,
        } => env(store, user, &name, action, &args, secret, json).await,
        Cmd::Events { name, limit } => events(store, user, &name, limit, json).await,
        Cmd::Keys { action } => match action.unwrap_or(KeysAction::List) {
            KeysAction::List => keys_list(store, user, json).await,
            KeysAction::Add => keys_add(store, user, stdin, json).await,
            KeysAction::Remove { fingerprint } => {
                keys_remove(store, user, &fingerprint, json).await
            }
        },
        Cmd::Whoami => whoami(store, user, json).await,
        Cmd::Kubeconfig { action } => match action.unwrap_or(KubeconfigAction::Show) {
            KubeconfigAction::Show => kubeconfig_show(store, user, json).await,
            KubeconfigAction::Set => kubeconfig_set(store, user, stdin, json).await,
            KubeconfigAction::Unset => kubeconfig_unset(store, user, json).await,
        },
    }
}

async fn projects(store: &Store, user: &User, as_json: bool) -> Out {
    let list = store.list_projects(user.id).await?;
    Ok(if as_json {
        json(&list.iter().map(ProjectJson::from).collect::<Vec<_>>())
    } else {
        render::projects_table(&list)
    })
}

async fn project(store: &Store, user: &User, name: &str, as_json: bool) -> Out {
    let view = store.find_project(user.id, name).await?;
    let env = store.list_env(user.id, &view.project.slug).await?;
    let events = store
        .list_events(user.id, view.project.id, DETAIL_EVENTS)
        .await?;
    Ok(if as_json {
        json(&ProjectDetailJson {
            project: ProjectJson::from(&view),
            env: env.iter().map(EnvJson::from).collect(),
            events: events.iter().map(EventJson::from).collect(),
        })
    } else {
        render::project_detail(&view, &env, &events)
    })
}

async fn create(store: &Store, user: &User, name: &str, description: &str, as_json: bool) -> Out {
    let p = store
        .create_project(user.id, name, description, &user.username)
        .await?;
    let view = store.find_project(user.id, &p.slug).await?;
    Ok(if as_json {
        json(&ProjectJson::from(&view))
    } else {
        format!(
            "created project {} (slug {}): {}\nfollow it with `project {}`\n",
            safe(&p.name, 100),
            p.slug,
            p.status,
            p.slug
        )
    })
}

#[derive(Serialize)]
struct IntentJson<'a> {
    project: String,
    intent: &'a str,
    status: &'a str,
}

async fn intent(store: &Store, user: &User, name: &str, intent: Intent, as_json: bool) -> Out {
    let status = store
        .record_intent(user.id, name, intent, &user.username)
        .await?;
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

async fn delete(store: &Store, user: &User, name: &str, yes: bool, as_json: bool) -> Out {
    if !yes {
        // Look the project up first, so a typo is reported before the user
        // is asked to confirm (and an unknown name answers as everywhere).
        let view = store.find_project(user.id, name).await?;
        return Err(Failure::usage(format!(
            "this deletes {} with its sandbox and database for good; to confirm, run `delete {} --yes`",
            safe(&view.project.name, 100),
            shell_words::quote(&safe(name.trim(), 100))
        )));
    }
    intent(store, user, name, Intent::Delete, as_json).await
}

/// The running sandbox of one of `user`'s projects, as the session driver
/// names it. A missing (or another tenant's) project fails as everywhere.
async fn running_sandbox(store: &Store, user: &User, name: &str) -> Result<ResourceRef, Failure> {
    let view = store.find_project(user.id, name).await?;
    let Some((r, status)) = crate::ssh::attach::sandbox_ref(&view, user.id) else {
        return Err(Failure::new(format!(
            "{} has no sandbox, so it has no sessions",
            safe(&view.project.name, 100)
        )));
    };
    if status != ResourceStatus::Running {
        return Err(Failure::new(format!(
            "{} is {}: its sessions exist only while its sandbox runs (start it with `start {}`)",
            safe(&view.project.name, 100),
            view.project.status,
            view.project.slug
        )));
    }
    Ok(r)
}

fn session_driver(attach: Option<&dyn SessionAttach>) -> Result<&dyn SessionAttach, Failure> {
    attach.ok_or_else(|| Failure::new("terminal sessions are not available on this server"))
}

async fn sessions(
    store: &Store,
    user: &User,
    attach: Option<&dyn SessionAttach>,
    name: &str,
    as_json: bool,
) -> Out {
    let attach = session_driver(attach)?;
    let r = running_sandbox(store, user, name).await?;
    let list = attach
        .sessions(&r)
        .await
        .map_err(|e| Failure::new(format!("cannot list sessions: {e}")))?;
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

async fn restart(
    store: &Store,
    user: &User,
    attach: Option<&dyn SessionAttach>,
    name: &str,
    session: Option<&str>,
    as_json: bool,
) -> Out {
    let attach = session_driver(attach)?;
    if let Some(s) = session {
        // The same check the driver makes, before anything is looked up.
        crate::model::session::check_session_name(s).map_err(|e| Failure::usage(e.to_string()))?;
    }
    let r = running_sandbox(store, user, name).await?;
    attach
        .restart(&r, session)
        .await
        .map_err(|e| Failure::new(format!("cannot restart: {e}")))?;
    Ok(if as_json {
        json(&RestartJson {
            project: name.trim().to_string(),
            session: session.map(str::to_string),
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
    store: &Store,
    user: &User,
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
        (EnvVerb::List, []) => env_list(store, user, name, as_json).await,
        (EnvVerb::Set, [assignment]) => {
            env_set(store, user, name, assignment, secret, as_json).await
        }
        (EnvVerb::Unset, [key]) => env_unset(store, user, name, key, as_json).await,
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

async fn env_list(store: &Store, user: &User, name: &str, as_json: bool) -> Out {
    let env = store.list_env(user.id, name).await?;
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
    store: &Store,
    user: &User,
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
    store.set_env(user.id, name, key, value, secret).await?;
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

async fn env_unset(store: &Store, user: &User, name: &str, key: &str, as_json: bool) -> Out {
    store.unset_env(user.id, name, key).await?;
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

async fn events(store: &Store, user: &User, name: &str, limit: i64, as_json: bool) -> Out {
    let view = store.find_project(user.id, name).await?;
    let events = store.list_events(user.id, view.project.id, limit).await?;
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
            safe(&k.comment, 60)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

async fn keys_list(store: &Store, user: &User, as_json: bool) -> Out {
    let keys = store.list_ssh_keys(user.id).await?;
    Ok(if as_json {
        json(&keys)
    } else {
        keys_table(&keys)
    })
}

async fn keys_add(store: &Store, user: &User, stdin: &[u8], as_json: bool) -> Out {
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
    let key = store.add_ssh_key(user.id, text).await?;
    Ok(if as_json {
        json(&key)
    } else {
        format!(
            "added {} key {}{}\n",
            safe(&key.algorithm, 40),
            key.fingerprint,
            if key.comment.is_empty() {
                String::new()
            } else {
                format!(" ({})", safe(&key.comment, 60))
            }
        )
    })
}

#[derive(Serialize)]
struct KeyRemovedJson {
    removed: String,
}

async fn keys_remove(store: &Store, user: &User, fingerprint: &str, as_json: bool) -> Out {
    store.remove_ssh_key(user.id, fingerprint).await?;
    // Reported in the form `keys list` shows, whichever form was typed.
    let fingerprint = fingerprint.trim();
    let fingerprint = if fingerprint.starts_with("SHA256:") {
        fingerprint.to_string()
    } else {
        format!("SHA256:{fingerprint}")
    };
    Ok(if as_json {
        json(&KeyRemovedJson {
            removed: fingerprint,
        })
    } else {
        format!("removed key {}\n", safe(&fingerprint, 80))
    })
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

async fn whoami(store: &Store, user: &User, as_json: bool) -> Out {
    let projects = store.list_projects(user.id).await?.len();
    let password = store.has_password(user.id).await?;
    let ssh_keys = store.list_ssh_keys(user.id).await?.len();
    let mut auth_methods = Vec::new();
    if password {
        auth_methods.push("password");
    }
    if ssh_keys > 0 {
        auth_methods.push("ssh_key");
    }
    Ok(if as_json {
        json(&WhoamiJson {
            username: &user.username,
            role: &user.role,
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
            safe(&user.username, 40),
            safe(&user.role, 20),
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

impl From<crate::tenant_kubeconfig::KubeconfigChangeError> for Failure {
    fn from(e: crate::tenant_kubeconfig::KubeconfigChangeError) -> Self {
        use crate::tenant_kubeconfig::KubeconfigChangeError as E;
        match e {
            E::Store(s) => s.into(),
            other => Failure::new(other.to_string()),
        }
    }
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

async fn kubeconfig_show(store: &Store, user: &User, as_json: bool) -> Out {
    let k = crate::tenant_kubeconfig::describe(store, user.id).await?;
    Ok(kubeconfig_out(k.as_ref(), as_json, "kubeconfig set"))
}

async fn kubeconfig_set(store: &Store, user: &User, stdin: &[u8], as_json: bool) -> Out {
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
    let k = crate::tenant_kubeconfig::set(store, user.id, text).await?;
    Ok(kubeconfig_out(Some(&k), as_json, "kubeconfig stored"))
}

async fn kubeconfig_unset(store: &Store, user: &User, as_json: bool) -> Out {
    crate::tenant_kubeconfig::unset(store, user.id).await?;
    Ok(kubeconfig_out(None, as_json, "kubeconfig removed"))
}
