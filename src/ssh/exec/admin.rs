//! `ssh … admin users|projects|replicas|stop OWNER/NAME|retry OWNER/NAME`,
//! for admins. It is parsed only when the console has an admin side for
//! the signed-in user; for anyone else the line goes to the ordinary
//! parser, which has no `admin` and answers as it does any unknown command.

use clap::{ColorChoice, Parser, Subcommand};

use super::Failure;
use super::render::{cell, json, safe};
use crate::console::AdminConsole;
use crate::model::Intent;

#[derive(Debug, Parser)]
#[command(
    name = "admin",
    no_binary_name = true,
    disable_version_flag = true,
    color = ColorChoice::Never,
    term_width = 100
)]
pub(super) struct AdminArgs {
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCmd,
}

#[derive(Debug, Subcommand)]
pub(super) enum AdminCmd {
    /// Every user: state, projects, last sign-in
    Users,
    /// Every project of every user and team: status and last error
    Projects,
    /// The replicas with the leases they hold, and the queue depth
    Replicas,
    /// Stop any project, named OWNER/NAME (OWNER: a user's or a team's name)
    Stop { project: String },
    /// Retry any project after an ERROR, named OWNER/NAME
    Retry { project: String },
}

type Out = Result<String, Failure>;

/// Whether `words` (the command line, split) asks for the admin commands.
pub(super) fn is_admin_line(words: &[String]) -> bool {
    words
        .iter()
        .find(|w| w.as_str() != "--json")
        .map(String::as_str)
        == Some("admin")
}

/// Parses the words after `admin` (and a `--json` anywhere) and runs them.
pub(super) async fn run(
    admin: &AdminConsole,
    words: &[String],
) -> Result<String, super::ExecOutput> {
    let mut rest: Vec<String> = words.to_vec();
    if let Some(i) = rest.iter().position(|w| w == "admin") {
        rest.remove(i);
    }
    let args = AdminArgs::try_parse_from(&rest).map_err(|e| super::clap_error(&e, "admin"))?;
    dispatch(admin, args).await.map_err(super::failure)
}

async fn dispatch(admin: &AdminConsole, args: AdminArgs) -> Out {
    let as_json = args.json;
    match args.command {
        AdminCmd::Users => {
            let users = admin.users().await?;
            if as_json {
                return Ok(json(&users));
            }
            let mut out = format!(
                "{} {} {} {:>8} {}\n",
                cell("USER", 24),
                cell("ROLE", 7),
                cell("STATE", 8),
                "PROJECTS",
                "LAST SIGN-IN"
            );
            for u in users {
                out.push_str(&format!(
                    "{} {} {} {:>8} {}\n",
                    cell(&u.username, 24),
                    cell(&u.role, 7),
                    cell(if u.disabled { "disabled" } else { "active" }, 8),
                    u.projects,
                    u.last_sign_in.map_or("never".to_string(), |t| t
                        .format("%Y-%m-%d %H:%M")
                        .to_string())
                ));
            }
            Ok(out)
        }
        AdminCmd::Projects => {
            let projects = admin.projects().await?;
            if as_json {
                return Ok(json(&projects));
            }
            let mut out = format!(
                "{} {} {}\n",
                cell("OWNER/NAME", 40),
                cell("STATUS", 11),
                "LAST ERROR"
            );
            for p in projects {
                let name = format!("{}/{}", p.owner, p.name);
                out.push_str(&format!(
                    "{} {} {}\n",
                    cell(&name, 40),
                    cell(&p.status.to_string(), 11),
                    safe(p.last_error.as_deref().unwrap_or("-"), 200)
                ));
            }
            Ok(out)
        }
        AdminCmd::Replicas => {
            let r = admin.replicas().await?;
            if as_json {
                return Ok(json(&r));
            }
            let mut out = format!("queue depth: {}\n", r.queue_depth);
            out.push_str(&format!("{} {:>6}\n", cell("REPLICA", 40), "LEASES"));
            for h in r.lease_holders {
                out.push_str(&format!("{} {:>6}\n", cell(&h.owner, 40), h.leases));
            }
            Ok(out)
        }
        AdminCmd::Stop { project } => intent(admin, &project, Intent::Stop, as_json).await,
        AdminCmd::Retry { project } => intent(admin, &project, Intent::Retry, as_json).await,
    }
}

async fn intent(admin: &AdminConsole, project: &str, intent: Intent, as_json: bool) -> Out {
    let status = admin.request(project, intent).await?;
    Ok(if as_json {
        json(
            &serde_json::json!({"project": project, "intent": intent.to_string(), "status": status}),
        )
    } else {
        format!(
            "{intent} requested for {}: now {status}\n",
            safe(project, 100)
        )
    })
}
