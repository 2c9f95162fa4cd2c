//! The Claude Code hook settings Kiln installs in a sandbox, merged into
//! whatever settings file is already there.
//!
//! Where they live: the user settings of a `CLAUDE_CONFIG_DIR` that Kiln
//! owns (the sandbox's run directory, `/run/kiln/claude`), set in every
//! session's environment. Not `~/.claude`: a sandbox's home is its working
//! directory, the repository, so `~/.claude/settings.json` *is* the
//! repository's `.claude/settings.json`, and writing there would rewrite a
//! committed file. Not the managed-settings file either: that is the
//! operator's policy scope (`/etc/claude-code/managed-settings.json`), and
//! binding Kiln's over it would hide the operator's own. Claude Code runs
//! the hooks of every scope it reads, so the repository's own hooks (and
//! the user's `.claude/settings.local.json`) still run beside Kiln's.
//!
//! Merge, not clobber: keys and hooks already in the file are kept; only
//! Kiln's own handlers (those whose command ends with [`MARKER`]) are
//! replaced, so a restart never duplicates them and a user's own edits to
//! the file survive.

use serde_json::{Map, Value, json};

/// Ends every command Kiln installs: a shell comment, so it changes
/// nothing when the command runs, and names Kiln's entries for the merge.
pub const MARKER: &str = "# kiln-agent-hook";

/// The events Kiln follows (see `model::agent::transition`), and whether
/// each takes a matcher (tool events match tool names; Notification
/// matches the notification type).
pub const EVENTS: [(&str, bool); 7] = [
    ("SessionStart", false),
    ("UserPromptSubmit", false),
    ("PreToolUse", true),
    ("PostToolUse", true),
    ("Notification", true),
    ("Stop", false),
    ("SessionEnd", false),
];

/// A single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command line of Kiln's hook: `{binary} hook --socket {socket}`.
pub fn hook_command(binary: &str, socket: &str) -> String {
    format!(
        "{} hook --socket {} {MARKER}",
        shell_quote(binary),
        shell_quote(socket)
    )
}

/// The tmux command (for the sandbox's `tmux.conf`) that reports a
/// session's program exiting, whatever the reason (`SessionEnd` is only
/// said by a Claude that exits on its own; a killed one says nothing).
///
/// Why tmux's `pane-died` hook: sessions keep their pane when the program
/// exits (`remain-on-exit`), and tmux runs the hook the moment it marks the
/// pane dead, inside the sandbox, as the sandbox; the report then takes the
/// sandbox's own channel like any other. Polling `#{pane_dead}` from the
/// reconcile loop would cost a tmux call per sandbox per pass and lag by
/// a resync.
///
/// The default session (named after the sandbox, `default_session`) reports
/// as the empty session, the others by name (`#{q:}` quotes it for the
/// shell). `None` when a path holds a character that would need quoting
/// inside tmux's and the shell's quotes at once (confined sandboxes use
/// fixed paths; an unconfined data directory might not): then exits are
/// seen only through `SessionEnd`.
pub fn pane_died_hook(binary: &str, socket: &str, default_session: &str) -> Option<String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b))
    };
    if !(plain(binary) && plain(socket) && plain(default_session)) {
        return None;
    }
    Some(format!(
        "set-hook -g pane-died 'run-shell -b \"KILN_SESSION=#{{?#{{==:#{{session_name}},{default_session}}},,#{{q:session_name}}}} {binary} hook --socket {socket} --exited\"'"
    ))
}

fn is_kiln_handler(handler: &Value) -> bool {
    handler
        .get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| c.trim_end().ends_with(MARKER))
}

/// `existing` (a settings file's text, if any) with Kiln's hooks running
/// `command` on every followed event. A file that is not a JSON object is
/// kept aside by the caller and replaced (Claude Code would not read it).
pub fn merge(existing: Option<&str>, command: &str) -> Value {
    let mut root = existing
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()));
    if !hooks.is_object() {
        *hooks = Value::Object(Map::new());
    }
    let hooks = hooks.as_object_mut().expect("made an object above");
    for (event, _) in EVENTS {
        if let Some(Value::Array(groups)) = hooks.get_mut(event) {
            // Drop Kiln's handlers from every group, then groups left empty.
            for g in groups.iter_mut() {
                if let Some(Value::Array(hs)) = g.get_mut("hooks") {
                    hs.retain(|h| !is_kiln_handler(h));
                }
            }
            groups.retain(|g| {
                g.get("hooks")
                    .and_then(Value::as_array)
                    .is_none_or(|hs| !hs.is_empty())
            });
        }
    }
    for (event, matcher) in EVENTS {
        let entry = hooks.entry(event).or_insert_with(|| json!([]));
        if !entry.is_array() {
            *entry = json!([]);
        }
        let mut group = json!({
            "hooks": [{ "type": "command", "command": command, "timeout": 5 }]
        });
        if matcher {
            group["matcher"] = json!("");
        }
        entry
            .as_array_mut()
            .expect("made an array above")
            .push(group);
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(v: &Value, event: &str) -> Vec<String> {
        v["hooks"][event]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["hooks"].as_array().unwrap().iter())
            .map(|h| h["command"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn an_empty_file_gets_every_event() {
        let cmd = hook_command("/run/kiln-bin/kiln", "/run/kiln/hook.sock");
        assert_eq!(
            cmd,
            "'/run/kiln-bin/kiln' hook --socket '/run/kiln/hook.sock' # kiln-agent-hook"
        );
        let v = merge(None, &cmd);
        for (event, matcher) in EVENTS {
            assert_eq!(commands(&v, event), vec![cmd.clone()], "{event}");
            assert_eq!(v["hooks"][event][0].get("matcher").is_some(), matcher);
        }
    }

    #[test]
    fn the_users_keys_and_hooks_are_kept_and_kilns_replaced_not_duplicated() {
        let old = hook_command("/old/kiln", "/run/kiln/hook.sock");
        let existing = json!({
            "model": "opus",
            "hooks": {
                "Stop": [
                    { "hooks": [
                        { "type": "command", "command": "notify-send done" },
                        { "type": "command", "command": old },
                    ]},
                ],
                "Notification": [{ "matcher": "", "hooks": [{ "type": "command", "command": old }] }],
                "PreCompact": [{ "hooks": [{ "type": "command", "command": "echo c" }] }],
            }
        })
        .to_string();
        let new = hook_command("/run/kiln-bin/kiln", "/run/kiln/hook.sock");
        let v = merge(Some(&existing), &new);
        assert_eq!(v["model"], "opus");
        assert_eq!(
            commands(&v, "Stop"),
            vec!["notify-send done".to_string(), new.clone()]
        );
        assert_eq!(commands(&v, "Notification"), vec![new.clone()]);
        assert_eq!(commands(&v, "PreCompact"), vec!["echo c".to_string()]);
        // Merging again changes nothing.
        assert_eq!(merge(Some(&v.to_string()), &new), v);
    }

    #[test]
    fn a_file_that_is_not_an_object_is_replaced() {
        let cmd = hook_command("k", "s");
        for bad in [
            "[1]",
            "nope",
            r#"{"hooks": 3}"#,
            r#"{"hooks": {"Stop": 1}}"#,
        ] {
            let v = merge(Some(bad), &cmd);
            assert_eq!(commands(&v, "Stop"), vec![cmd.clone()], "{bad}");
        }
    }

    #[test]
    fn the_pane_died_hook_reports_the_default_session_as_empty() {
        let line = pane_died_hook("/run/kiln-bin/kiln", "/run/kiln/hook.sock", "blog-a").unwrap();
        assert_eq!(
            line,
            r#"set-hook -g pane-died 'run-shell -b "KILN_SESSION=#{?#{==:#{session_name},blog-a},,#{q:session_name}} /run/kiln-bin/kiln hook --socket /run/kiln/hook.sock --exited"'"#
        );
        for bad in ["/a b/kiln", "/a'b", "/a\"b", "/a$b", "/a#b", ""] {
            assert_eq!(pane_died_hook(bad, "/s", "n"), None, "{bad}");
            assert_eq!(pane_died_hook("/k", bad, "n"), None, "{bad}");
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
