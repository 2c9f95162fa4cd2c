//! Exec commands: `ssh -p 2222 alice@host projects`. One command line in,
//! stdout/stderr bytes and an exit status out; the SSH server only moves the
//! bytes. Every command is scoped to the signed-in user, so another tenant's
//! project behaves exactly like one that does not exist.
//!
//! Conventions: human text by default, `--json` for scripts (pretty JSON on
//! stdout), `--help` on every command (stdout, exit 0). Exit 0 on success,
//! 1 on failure, 2 on a usage error, with one `error: …` line on stderr.
//!
//! JSON shapes (fields are only ever added):
//! - `projects`: `[Project]` where Project is `{name, slug, description,
//!   status, env_version, created_at, updated_at, resources: [Resource]}` and
//!   Resource is `{kind, name, status, desired, attempts, last_error,
//!   next_attempt_at, lease_owner, lease_until, updated_at}`.
//! - `project NAME`: Project plus `env: [{key, value, secret}]` and
//!   `events: [{time, kind, resource, from, to, message, actor}]`.
//! - `create`: Project.
//! - `start|stop|delete|retry`: `{project, intent, status}`.
//! - `env NAME [list]`: `[{key, value, secret}]` (secret values are `••••••`);
//!   `env NAME set|unset`: `{project, key, action, secret}`.
//! - `events NAME`: `[{time, kind, resource, from, to, message, actor}]`.
//! - `keys [list]`: `[{fingerprint, algorithm, comment, created_at}]`;
//!   `keys add`: one such object; `keys remove FP`: `{removed}`.
//! - `whoami`: `{username, role, projects, auth_methods, password, ssh_keys}`.
//! - `kubeconfig [show|set|unset]`: `{set, context, namespace, server}`.
//! - `sessions NAME`: `[{session, default, state, exit_status, viewers,
//!   last_activity}]`, default session first; `session` is `null` for the
//!   default one, `state` is `running` or `exited`, `exit_status` is `null`
//!   unless it exited with a status.
//! - `restart NAME [--session S]`: `{project, session, restarted}`.
//! - `team T members`: `[{username, role}]`; `team T add U --role R`:
//!   `{team, user, role}`; `team T remove U`: `{team, user, removed}`.
//!   A team's project appears in `projects` as `TEAM/NAME` (name and slug)
//!   with `team_role`, the actor's role in the team.
//! - `audit [--since WHEN]`: `[{id, at, username, operator, front, source,
//!   key_fingerprint, method, action, project, result, detail}]`, oldest
//!   first; `detail` is the key of an env or config change (never its value)
//!   or why a sign-in failed.
//! - `notifications [--all]`: `[{project, session, kind, message, at,
//!   unread}]`, newest first (only unread ones unless `--all`; they are read
//!   once listed).
//! - `idle NAME [--after D|off|default]`: `{setting, stop_after_secs,
//!   last_active_at, extended_until, stop_at, due_at}` (`stop_at`: the stop
//!   a warning announced; `due_at`: when it stops if unused).
//! - `extend NAME [--for D]`: `{project, until}`.

mod admin;
mod agents;
mod args;
mod commands;
mod idle;
#[cfg(test)]
mod properties;
mod render;
mod templates;

use std::panic::AssertUnwindSafe;

use clap::Parser;
use clap::error::ErrorKind;
use futures::FutureExt;

use crate::console::{ConsoleError, UserConsole};
use crate::model::naming::printable;

pub use render::{MASK, audit_list, json as safe_json};

/// `agents` (or `inbox`) as the exec command prints it, for the operator's
/// CLI; the error is the line exec would print.
pub async fn agent_listing(
    c: &crate::console::UserConsole,
    inbox: bool,
    as_json: bool,
) -> Result<String, String> {
    let out = if inbox {
        agents::inbox(c, as_json).await
    } else {
        agents::agents(c, as_json).await
    };
    out.map_err(|f| f.message)
}

/// `mute` as the exec command prints it, for the operator's CLI.
pub async fn agent_mute(
    c: &crate::console::UserConsole,
    name: &str,
    muted: bool,
) -> Result<String, String> {
    agents::mute(c, name, muted, false)
        .await
        .map_err(|f| f.message)
}

/// What one exec command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: u32,
}

pub const EXIT_OK: u32 = 0;
pub const EXIT_FAILURE: u32 = 1;
pub const EXIT_USAGE: u32 = 2;

/// Does this command line read stdin (so the server must collect it until EOF
/// first)? `keys add` and `kubeconfig set` do. Asking
/// for help never waits on stdin, or `keys add --help` would hang until ^D.
pub fn wants_stdin(command_line: &str) -> bool {
    let Ok(words) = shell_words::split(command_line) else {
        return false;
    };
    if words.iter().any(|w| w == "--help" || w == "-h") {
        return false;
    }
    let positional: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| !w.starts_with('-'))
        .take(2)
        .collect();
    positional == ["keys", "add"]
        || positional == ["kubeconfig", "set"]
        || positional == ["webhook", "set"]
}

/// Runs one command through `console` (a signed-in user's). Never panics
/// on any input: a bug becomes exit 1 with a generic message.
pub async fn run(console: &UserConsole, command_line: &str, stdin: &[u8]) -> ExecOutput {
    // Boxed: the command's future lives on the heap, so whoever awaits
    // `run` holds a pointer, not the whole command (tens of kilobytes in a
    // debug build, where every await keeps a stack slot of its own).
    match AssertUnwindSafe(Box::pin(run_inner(console, command_line, stdin)))
        .catch_unwind()
        .await
    {
        Ok(out) => out,
        Err(_) => {
            tracing::error!(user = %console.user().username, "exec command panicked");
            failure(Failure::internal())
        }
    }
}

/// Why a command failed: its exit status and the one line to show.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u32,
    message: String,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    fn internal() -> Self {
        Failure::new("internal error (the server log has the details); try again in a moment")
    }
}

impl From<ConsoleError> for Failure {
    fn from(e: ConsoleError) -> Self {
        Failure::new(e.to_string())
    }
}

fn success(stdout: String) -> ExecOutput {
    ExecOutput {
        stdout: stdout.into_bytes(),
        stderr: Vec::new(),
        code: EXIT_OK,
    }
}

/// One `error: …` line, with anything a user typed made harmless.
fn failure(f: Failure) -> ExecOutput {
    ExecOutput {
        stdout: Vec::new(),
        stderr: format!("error: {}\n", printable(&f.message, 500)).into_bytes(),
        code: f.code,
    }
}

/// The command list, for `help` and for an unknown or empty command.
fn command_list() -> String {
    use clap::CommandFactory;
    args::ExecArgs::command()
        .render_help()
        .to_string()
        .replace("Usage:  ", "Usage: ")
}

async fn run_inner(console: &UserConsole, line: &str, stdin: &[u8]) -> ExecOutput {
    // `admin …` exists only for an admin; anyone else's line goes on to the
    // ordinary parser, which answers it as any unknown command.
    if let Some(admin) = console.admin()
        && let Ok(words) = shell_words::split(line)
        && admin::is_admin_line(&words)
    {
        return match admin::run(&admin, &words).await {
            Ok(stdout) => success(stdout),
            Err(answer) => answer,
        };
    }
    let parsed = match parse_line(line) {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    match commands::dispatch(console, parsed, stdin).await {
        Ok(stdout) => success(stdout),
        Err(f) => failure(f),
    }
}

/// What a command line answers without the console: help or a usage error,
/// or `None` when it names a command to run. Pure, for the fuzz targets.
pub(crate) fn answer_without_console(line: &str) -> Option<ExecOutput> {
    parse_line(line).err()
}

/// The command line as a command, or the output that answers it at once.
fn parse_line(line: &str) -> Result<args::ExecArgs, ExecOutput> {
    let words = match shell_words::split(line) {
        Ok(w) => w,
        Err(_) => {
            return Err(failure(Failure::usage(
                "unbalanced quotes in the command line: close every ' and \" you open",
            )));
        }
    };
    // The first word that is not the global --json names the command.
    let Some(first) = words.iter().find(|w| w.as_str() != "--json") else {
        return Err(ExecOutput {
            stdout: Vec::new(),
            stderr: format!("error: no command given\n\n{}", command_list()).into_bytes(),
            code: EXIT_USAGE,
        });
    };
    let is_help_flag = first == "--help" || first == "-h";
    if !is_help_flag && !args::command_names().contains(first) {
        return Err(ExecOutput {
            stdout: Vec::new(),
            stderr: format!(
                "error: unknown command {}\n\n{}",
                shell_words::quote(&printable(first, 60)),
                command_list()
            )
            .into_bytes(),
            code: EXIT_USAGE,
        });
    }
    args::ExecArgs::try_parse_from(&words).map_err(|e| clap_error(&e, first))
}

/// Help goes to stdout with exit 0; a usage error becomes one line on
/// stderr that points at the command's `--help`.
fn clap_error(e: &clap::Error, command: &str) -> ExecOutput {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            success(e.to_string().replace("Usage:  ", "Usage: "))
        }
        _ => {
            // clap's message is the paragraph up to the first blank line;
            // some kinds list their subject on the next lines ("…not
            // provided:\n  <NAME>"), so the paragraph is joined, not cut.
            let rendered = e.to_string();
            let paragraph: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = paragraph.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            failure(Failure::usage(format!(
                "{} (see `{} --help`)",
                printable(message, 300),
                printable(command, 40)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_add_waits_for_stdin() {
        assert!(wants_stdin("keys add"));
        assert!(wants_stdin("  keys   add --json"));
        assert!(wants_stdin("--json keys add"));
        assert!(!wants_stdin("keys add --help"));
        assert!(!wants_stdin("keys"));
        assert!(!wants_stdin("keys list"));
        assert!(!wants_stdin("projects"));
        assert!(!wants_stdin("create keys add"));
        assert!(!wants_stdin("keys 'add"));
        assert!(!wants_stdin(""));
    }

    #[test]
    fn the_command_grammar_is_consistent() {
        use clap::CommandFactory;
        args::ExecArgs::command().debug_assert();
    }
}
