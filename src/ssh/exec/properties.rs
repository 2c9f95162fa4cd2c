//! Property tests of the command lines an SSH client sends: exec commands
//! (parsed here without a console), `attach` and `logs`. Whatever the line,
//! parsing never panics and what it answers is bounded and safe to print;
//! a name quoted the way the help says comes back exactly as typed.

use proptest::prelude::*;

use super::args::{Cmd, EnvVerb};
use super::{EXIT_OK, EXIT_USAGE, parse_line, wants_stdin};
use crate::model::untrusted::{hostile_text, is_unsafe_on_screen};
use crate::ssh::{attach, logs};

/// Words a command line is likely made of, so lines reach deep into clap.
const WORDS: &[&str] = &[
    "projects",
    "project",
    "create",
    "start",
    "stop",
    "delete",
    "retry",
    "sessions",
    "restart",
    "env",
    "events",
    "keys",
    "whoami",
    "kubeconfig",
    "webhook",
    "help",
    "attach",
    "logs",
    "set",
    "unset",
    "list",
    "add",
    "remove",
    "show",
    "--json",
    "--help",
    "-h",
    "--yes",
    "--secret",
    "--session",
    "-s",
    "--limit",
    "--description",
    "-d",
    "--",
    "-",
    "--tail",
    "-f",
    "--read-only",
    "0",
    "1001",
    "A=B",
];

/// One word: a likely one or hostile text, sometimes quoted.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        2 => hostile_text(12),
        1 => hostile_text(12).prop_map(|w| shell_words::quote(&w).into_owned()),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(word(), 0..6).prop_map(|w| w.join(" ")),
        1 => hostile_text(120),
    ]
}

/// `name` as one word the parser reads back as it is, even with a leading `-`.
fn quoted_name(name: &str) -> String {
    let dashes = if name.starts_with('-') { "-- " } else { "" };
    format!("{dashes}{}", shell_words::quote(name))
}

proptest! {
    #![proptest_config(crate::model::untrusted::config(256))]

    #[test]
    fn any_line_gets_a_bounded_printable_answer_or_a_command(line in line()) {
        let _ = wants_stdin(&line);
        let _ = attach::parse(&line);
        let _ = logs::parse(&line);
        if let Err(out) = parse_line(&line) {
            let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
            let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
            for text in [&stdout, &stderr] {
                prop_assert!(
                    !text.chars().any(|c| c != '\n' && is_unsafe_on_screen(c)),
                    "{text:?}"
                );
                prop_assert!(text.len() <= 8 * 1024, "{} bytes", text.len());
            }
            match out.code {
                // Help: on stdout, nothing on stderr.
                EXIT_OK => prop_assert!(!stdout.is_empty() && stderr.is_empty()),
                EXIT_USAGE => {
                    prop_assert!(stdout.is_empty());
                    prop_assert!(stderr.starts_with("error: "), "{stderr:?}");
                }
                other => prop_assert!(false, "exit {other} from the parser"),
            }
        }
    }

    #[test]
    fn a_quoted_project_name_comes_back_as_typed(name in hostile_text(40)) {
        let line = format!("project {}", quoted_name(&name));
        match parse_line(&line) {
            Ok(parsed) => match parsed.command {
                Cmd::Project { name: parsed } => prop_assert_eq!(parsed, name),
                other => prop_assert!(false, "{other:?}"),
            },
            Err(out) => prop_assert!(false, "{line:?}: {:?}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    #[test]
    fn a_quoted_assignment_comes_back_as_typed(
        name in hostile_text(20),
        key in "[A-Za-z_][A-Za-z0-9_]{0,10}",
        value in hostile_text(40),
        secret: bool,
    ) {
        let assignment = format!("{key}={value}");
        // Flags before the name: after a `--`, everything is positional.
        let line = format!(
            "env{} {} set {}",
            if secret { " --secret" } else { "" },
            quoted_name(&name),
            shell_words::quote(&assignment),
        );
        match parse_line(&line) {
            Ok(parsed) => match parsed.command {
                Cmd::Env { name: n, action: EnvVerb::Set, args, secret: s } => {
                    prop_assert_eq!(n, name);
                    prop_assert_eq!(args, vec![assignment]);
                    prop_assert_eq!(s, secret);
                }
                other => prop_assert!(false, "{other:?}"),
            },
            Err(out) => prop_assert!(false, "{line:?}: {:?}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    #[test]
    fn attach_and_logs_read_quoted_names_back(
        name in hostile_text(30).prop_filter("a name, not a flag", |n| !n.starts_with('-')),
        session in hostile_text(20),
        tail in -1i64..=100_000,
        follow: bool,
        read_only: bool,
    ) {
        let (project, s) = (shell_words::quote(&name), shell_words::quote(&session));
        let ro = if read_only { " -r" } else { "" };
        prop_assert_eq!(
            attach::parse(&format!("attach {project} --session {s}{ro}")),
            Some(Ok(attach::AttachArgs {
                project: name.clone(),
                session: Some(session.clone()),
                read_only,
            }))
        );
        let f = if follow { " -f" } else { "" };
        prop_assert_eq!(
            logs::parse(&format!("logs {project} --tail {tail}{f}")),
            Some(Ok(logs::LogsArgs {
                project: name,
                follow,
                tail: (tail >= 0).then_some(tail),
            }))
        );
    }

    #[test]
    fn keys_add_waits_for_stdin_unless_help_is_asked(
        json_at in proptest::option::of(0usize..3),
        help_at in proptest::option::of(0usize..3),
    ) {
        let mut words = vec!["keys", "add"];
        if let Some(at) = json_at {
            words.insert(at.min(words.len()), "--json");
        }
        if let Some(at) = help_at {
            words.insert(at.min(words.len()), "--help");
        }
        prop_assert_eq!(wants_stdin(&words.join(" ")), help_at.is_none(), "{:?}", words);
    }
}
