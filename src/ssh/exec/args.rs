//! The exec command line grammar (clap derive). The doc comments here are the
//! help text users read, so they say what a command does and what it needs.

use clap::{ColorChoice, Parser, Subcommand, ValueEnum};

/// Shown under the command list; the one place that explains how exec works.
const AFTER_HELP: &str = "\
Run a command with `ssh -p PORT USER@HOST COMMAND`, e.g. `ssh -p 2222 alice@kiln projects`.
NAME is a project's name or slug; quote names with spaces twice: ssh … 'project \"my blog\"'.
A team's project is TEAM/NAME (`team TEAM members` lists who is in it).
Every command accepts --json for machine-readable output and --help for its options.
Live commands: `ssh -t … attach NAME [--session S] [--read-only]` (the prefix key, Ctrl-] by default, detaches) and
`ssh … logs NAME [--follow] [--tail N]` (the sandbox's container log, across restarts).
Exit status: 0 success, 1 failure, 2 usage error.";

#[derive(Debug, Parser)]
#[command(
    name = "",
    no_binary_name = true,
    disable_version_flag = true,
    color = ColorChoice::Never,
    after_help = AFTER_HELP,
    // Column width is fixed so the help reads the same in every terminal and test.
    term_width = 100
)]
pub(super) struct ExecArgs {
    /// Print JSON instead of text (stable shapes, for scripts)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub(super) enum Cmd {
    /// List your projects with their status
    Projects,
    /// Show one project: resources (and why they are where they are), variables, recent events
    Project {
        /// Project name or slug
        name: String,
    },
    /// Create a project: one sandbox and one database, starting at once
    Create {
        /// Project name (up to 100 characters; the slug keeps its letters and digits)
        name: String,
        /// A short description shown in the project detail
        #[arg(long, short, default_value = "")]
        description: String,
        /// Create it in this team (you need the member role); it is then TEAM/NAME
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
        /// Clone this repository into the sandbox first (https://, ssh://, git:// or
        /// user@host:path; a private one uses your GIT_TOKEN setting)
        #[arg(long, value_name = "URL")]
        repo: Option<String>,
        /// Check out this branch of the repository (created from the default branch if missing)
        #[arg(long, short, value_name = "B")]
        branch: Option<String>,
        /// Start from this template (`templates` lists them): its command, variables, repository
        #[arg(long, short, value_name = "T")]
        template: Option<String>,
    },
    /// A team's members: list them, or (team owners) add, change or remove one
    ///
    /// `team acme members` lists; `team acme add bob --role member` adds bob or changes his role
    /// (owner, member or viewer); `team acme remove bob` removes him, detaching his open sessions.
    /// A team's projects are named TEAM/NAME in every command.
    Team {
        /// Team name
        team: String,
        /// What to do
        #[arg(value_enum, default_value_t = TeamVerb::Members, hide_default_value = true)]
        action: TeamVerb,
        /// The user to add or remove
        user: Option<String>,
        /// With add: owner, member or viewer
        #[arg(long)]
        role: Option<String>,
    },
    /// Start a stopped project
    Start {
        /// Project name or slug
        name: String,
    },
    /// Stop a project (its files and database are kept)
    Stop {
        /// Project name or slug
        name: String,
    },
    /// Delete a project with its sandbox and database, for good (needs --yes)
    Delete {
        /// Project name or slug
        name: String,
        /// Confirm the deletion
        #[arg(long)]
        yes: bool,
    },
    /// Try again after an ERROR, toward what the project was asked to be
    Retry {
        /// Project name or slug
        name: String,
    },
    /// List a project's terminal sessions: state (running or exited), viewers, last activity
    Sessions {
        /// Project name or slug
        name: String,
    },
    /// Restart an exited session of a project (the default session unless --session)
    ///
    /// Only a session whose program has exited is restarted, in place and under the same name; a
    /// running session is left alone (exit 1). `sessions NAME` shows which have exited.
    Restart {
        /// Project name or slug
        name: String,
        /// A named session (as `sessions NAME` lists it); without it, the default session
        #[arg(long, short, value_name = "S")]
        session: Option<String>,
    },
    /// List, set or unset a project's environment variables
    ///
    /// `env NAME` lists, `env NAME set KEY=VALUE [--secret]` sets, `env NAME unset KEY` removes.
    //
    // The action is a plain positional, not a clap subcommand: clap matches
    // subcommand names before positionals, so a project named `list` or
    // `set` could not be addressed.
    Env {
        /// Project name or slug
        name: String,
        /// What to do
        #[arg(value_enum, default_value_t = EnvVerb::List, hide_default_value = true)]
        action: EnvVerb,
        /// KEY=VALUE for set (split at the first `=`), KEY for unset
        #[arg(value_name = "KEY[=VALUE]")]
        args: Vec<String>,
        /// With set: store the value encrypted and never print it back
        #[arg(long)]
        secret: bool,
    },
    /// List, show, save or delete templates (yours are seen by nobody else)
    ///
    /// `templates` lists them; `templates show T` prints one; `templates save T --from PROJECT`
    /// saves yours from a project (secret variables by name only); `templates delete T`.
    Templates {
        /// What to do
        #[arg(value_enum, default_value_t = TemplatesVerb::List, hide_default_value = true)]
        action: TemplatesVerb,
        /// The template's name (show, save, delete)
        name: Option<String>,
        /// With save: the project to take it from
        #[arg(long, value_name = "PROJECT")]
        from: Option<String>,
    },
    /// Show the git state of a project's working tree: branch, changed files, ahead/behind
    Git {
        /// Project name or slug
        name: String,
        /// What to show
        #[arg(value_enum, default_value_t = GitVerb::Status, hide_default_value = true)]
        action: GitVerb,
    },
    /// Show a project's event history, oldest first
    Events {
        /// Project name or slug
        name: String,
        /// How many of the newest events to show (1-1000)
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// List, add or remove your SSH public keys
    Keys {
        #[command(subcommand)]
        action: Option<KeysAction>,
    },
    /// Show who you are logged in as
    Whoami,
    /// Show your quota and your teams': projects and running sandboxes allowed and used
    Quota,
    /// Your audit trail: sign-ins, changes, attaches and refusals, oldest first
    ///
    /// Records name keys, never secret values. --since takes 30m, 12h, 7d or an RFC 3339 time.
    Audit {
        /// Only records since then (e.g. 1h, 7d, 2026-12-01T00:00:00Z)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// How many of the newest records to show (1-10000)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Show, set or remove the kubeconfig your projects run with
    ///
    /// `kubeconfig set < ~/.kube/config` checks it against the cluster (it answers, and you may
    /// create StatefulSets in its namespace) and stores it encrypted. Exec plugins, auth providers
    /// and file references are refused. It can change only while you have no projects.
    Kubeconfig {
        #[command(subcommand)]
        action: Option<KubeconfigAction>,
    },
    /// List every session's agent state (as Claude Code's hooks report it) with how long it has held
    Agents,
    /// List the sessions that need you (a permission prompt or a question), oldest wait first
    Inbox,
    /// Wait until a session's agent reaches a state; exit 0 when it does, 1 on timeout
    Wait {
        /// Project name or slug
        name: String,
        /// A named session; without it, the default session
        #[arg(long, short, value_name = "S")]
        session: Option<String>,
        /// The state to wait for
        #[arg(long, value_enum)]
        until: WaitState,
        /// How long to wait at most: 90, 90s, 500ms, 5m, 2h (at most 24h)
        #[arg(long, default_value = "5m", value_name = "DURATION")]
        timeout: String,
    },
    /// List your unread notifications, newest first, and mark them read (--all: read ones too)
    Notifications {
        /// How many to show (1-500)
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=500))]
        limit: i64,
        /// Read ones too, not only unread
        #[arg(long)]
        all: bool,
    },
    /// Show a project's idle stop, or set its own idle time with --after
    Idle {
        /// Project name or slug
        name: String,
        /// Stop after this long without activity (90s, 30m, 8h, 2d), `off`, or `default`
        #[arg(long, value_name = "DURATION|off|default")]
        after: Option<String>,
    },
    /// Postpone a running project's idle stop (by its idle time unless --for)
    Extend {
        /// Project name or slug
        name: String,
        /// Keep it running at least this long from now (90s, 30m, 8h, 2d)
        #[arg(long = "for", value_name = "DURATION")]
        for_: Option<String>,
    },
    /// Show, set or remove the webhook your agent notifications are POSTed to
    ///
    /// `webhook set <<< https://example.com/hook` reads the URL from stdin (it may carry a
    /// token, so it is stored encrypted and never shown whole). Each session entering
    /// needs_input or done is POSTed as JSON, retried on 5xx and no answer; `webhook` shows
    /// the last error. Loopback, link-local and private hosts are refused unless the operator
    /// allows them.
    Webhook {
        #[command(subcommand)]
        action: Option<WebhookAction>,
    },
    /// Mute a project's agent notifications (and the bell); --off unmutes
    Mute {
        /// Project name or slug
        name: String,
        /// Unmute instead
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum WaitState {
    /// A permission prompt or a question waits for you
    #[value(name = "needs_input")]
    NeedsInput,
    /// Claude finished its turn
    Done,
    /// Waiting for a new prompt
    Idle,
    /// Working on a prompt
    Working,
    /// The session ended
    Ended,
}

impl WaitState {
    pub(super) fn state(self) -> crate::model::agent::AgentState {
        use crate::model::agent::AgentState;
        match self {
            WaitState::NeedsInput => AgentState::NeedsInput,
            WaitState::Done => AgentState::Done,
            WaitState::Idle => AgentState::Idle,
            WaitState::Working => AgentState::Working,
            WaitState::Ended => AgentState::Ended,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum WebhookAction {
    /// Show its host and its last delivery or error (the default)
    Show,
    /// Read the URL from stdin, check where it points, and store it encrypted
    Set,
    /// Remove it (and whatever was waiting to be delivered)
    Unset,
}

#[derive(Debug, Subcommand)]
pub(super) enum KubeconfigAction {
    /// Show the cluster and namespace in use (the default); never the credentials
    Show,
    /// Read a kubeconfig from stdin, check it, and store it encrypted
    Set,
    /// Remove it: new projects run on the server's cluster or on this host
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum TeamVerb {
    /// List the members and their roles (the default)
    Members,
    /// Add a member, or change their role
    Add,
    /// Remove a member
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum TemplatesVerb {
    /// Every template you may use (the default)
    List,
    /// One template, as its file
    Show,
    /// Save your own from a project (--from PROJECT)
    Save,
    /// Delete one of yours
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum GitVerb {
    /// Branch, changed files and ahead/behind its upstream (the default)
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum EnvVerb {
    /// List the variables (the default); secret values are masked
    List,
    /// Set (add or replace) one variable
    Set,
    /// Remove one variable
    Unset,
}

#[derive(Debug, Subcommand)]
pub(super) enum KeysAction {
    /// List your keys (the default)
    List,
    /// Add a key read from stdin: `ssh … keys add < ~/.ssh/id_ed25519.pub`
    Add,
    /// Remove a key by its fingerprint (as `keys list` shows it)
    Remove {
        /// SHA256:… fingerprint
        fingerprint: String,
    },
}

/// The top-level command names, for telling "unknown command" from a usage
/// error inside a known one.
pub(super) fn command_names() -> Vec<String> {
    use clap::CommandFactory;
    ExecArgs::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .chain(["help".to_string()])
        .collect()
}
