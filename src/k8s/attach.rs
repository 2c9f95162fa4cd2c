//! Attach on Kubernetes: a pod exec with a TTY into the sandbox container
//! running `tmux new-session -A`, so the session lives in the pod and
//! outlives every connection. The viewer's size goes through the exec
//! terminal-size channel. Same pane, keys, named sessions and read-only mode
//! as the local driver; only the transport differs.

use async_trait::async_trait;
use futures::SinkExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::cluster::{K8sCluster, classify};
use super::objects::{self, CONTAINER, DEFAULT_SESSION, TMUX_SOCKET};
use crate::driver::{
    Attachment, DriverError, DriverResult, ResourceRef, SessionAttach, SessionInfo, SessionState,
    TMUX_SESSION_FORMAT, Viewer, tmux_listing_awaits_reap,
};

/// The tmux invocation every exec starts with: Kiln's own socket in the pod.
fn tmux() -> Vec<String> {
    vec!["tmux".into(), "-L".into(), TMUX_SOCKET.into()]
}

/// The tmux session a viewer asked for; `None` is the default one.
fn session_name(session: Option<&str>) -> DriverResult<String> {
    match session {
        None => Ok(DEFAULT_SESSION.into()),
        Some(s) => {
            crate::model::session::check_session_name(s)?;
            Ok(s.into())
        }
    }
}

/// Runs the rest of its arguments with `TERM` set to `$0` if the pod has a
/// terminfo entry for it; otherwise with the image's own TERM (the runtime
/// image sets xterm-256color). The name is an argument, never shell text.
const WITH_VIEWER_TERM: &str =
    "if infocmp \"$0\" >/dev/null 2>&1; then export TERM=\"$0\"; fi; exec \"$@\"";

/// The command an attach runs in the pod. Read-only viewers attach with
/// `-r` and never create a session. A viewer that named its terminal type
/// (`term`, from its SSH client) gets tmux drawing for that type when it is
/// a plain name the pod knows.
pub fn attach_command(session: &str, read_only: bool, term: Option<&str>) -> Vec<String> {
    let mut argv = match term.filter(|t| crate::model::terminal::is_drawable(t)) {
        Some(t) => vec!["sh".into(), "-c".into(), WITH_VIEWER_TERM.into(), t.into()],
        None => Vec::new(),
    };
    argv.extend(tmux());
    if read_only {
        argv.extend(["attach-session", "-r", "-t"].map(String::from));
        argv.push(format!("={session}"));
    } else {
        argv.extend(["new-session", "-A", "-s"].map(String::from));
        argv.push(session.into());
        if session != DEFAULT_SESSION {
            // Which session Claude Code's hooks report about (the image's
            // `kiln-hook` sends it; `main` reports as the default one).
            argv.push("-e".into());
            argv.push(format!("KILN_SESSION={session}"));
        }
    }
    argv
}

/// The command that lists the sessions ([`TMUX_SESSION_FORMAT`] lines).
/// With `reap`, tmux first runs a child that exits at once, so it reaps
/// every exited pane and knows their status (see
/// `driver::tmux_listing_awaits_reap`).
pub fn list_command(reap: bool) -> Vec<String> {
    let mut argv = tmux();
    if reap {
        argv.extend(["run-shell", "true", ";"].map(String::from));
    }
    argv.extend(["list-sessions", "-F", TMUX_SESSION_FORMAT].map(String::from));
    argv
}

/// The command that restarts an exited session's program. Without `-k`,
/// tmux refuses a pane whose program still runs, so a restart never kills
/// a live program (the runtime image's tmux.conf keeps dead panes with
/// `remain-on-exit on`).
pub fn restart_command(session: &str) -> Vec<String> {
    let mut argv = tmux();
    argv.extend(["respawn-pane", "-t"].map(String::from));
    argv.push(format!("={session}:"));
    argv
}

/// What the git-state command prints when the home is not a repository
/// (never a line of git's porcelain output, which starts `# `, `1 `, `2 `,
/// `u `, `? ` or `! `).
pub const NO_REPOSITORY: &str = "kiln: no repository";

/// Reads the git state of the home volume (`$1`) in the sandbox container:
/// git's porcelain v2 status with the branch header, or [`NO_REPOSITORY`].
/// The repository is the sandbox's own, so its hooks and fsmonitor are
/// switched off: reading the state runs none of its code.
const GIT_STATE_SCRIPT: &str = r#"cd "$1" 2>/dev/null || { echo "kiln: no repository"; exit 0; }
if [ ! -d .git ]; then echo "kiln: no repository"; exit 0; fi
exec git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.untrackedCache=false \
  status --porcelain=v2 --branch --untracked-files=normal
"#;

/// The command that reads the git state of the sandbox's home `home`.
pub fn git_state_command(home: &str) -> Vec<String> {
    ["sh", "-c", GIT_STATE_SCRIPT, "sh", home]
        .map(String::from)
        .to_vec()
}

/// The git-state command's output as the state (`None`: no repository).
/// The sandbox prints it, so names are made printable and bounded.
pub fn parse_git_state(out: &str) -> Option<crate::model::git::GitState> {
    if out.lines().any(|l| l.trim() == NO_REPOSITORY) {
        return None;
    }
    let mut state = crate::model::git::parse_status(out);
    let clean = |s: Option<String>| s.map(|s| crate::model::naming::printable(&s, 200));
    state.branch = clean(state.branch);
    state.upstream = clean(state.upstream);
    Some(state)
}

/// `list-sessions` output ([`TMUX_SESSION_FORMAT`] lines) as session
/// infos, default session first, then named ones by name.
pub fn parse_sessions(listing: &str) -> Vec<SessionInfo> {
    let mut out: Vec<SessionInfo> = listing
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let name = f.next().filter(|n| !n.is_empty())?;
            let last_activity = f.next().and_then(|v| v.parse().ok());
            let viewers = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            Some(SessionInfo {
                name: (name != DEFAULT_SESSION).then(|| name.to_string()),
                last_activity,
                viewers,
                state: SessionState::from_tmux(f.next(), f.next()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The most of a short command's output that is read.
const MAX_EXEC_OUTPUT: u64 = 4 << 20;

impl K8sCluster {
    /// Runs a short command in the sandbox container and returns its stdout.
    pub(crate) async fn exec_capture(
        &self,
        r: &ResourceRef,
        argv: Vec<String>,
    ) -> DriverResult<(String, bool)> {
        let pod = objects::pod_name(r);
        let what = format!("running {} in pod {pod}", argv.join(" "));
        let ap = AttachParams::default()
            .container(CONTAINER)
            .stdin(false)
            .stdout(true)
            .stderr(true);
        let mut proc = self
            .bounded(&what, self.api::<Pod>().exec(&pod, argv.clone(), &ap))
            .await
            .map_err(|e| classify(e, &what))?;
        let mut stdout = proc
            .stdout()
            .ok_or_else(|| DriverError::transient(format!("{what}: no stdout")))?;
        let status = proc.take_status();
        let mut out = Vec::new();
        // The sandbox writes it: bounded, so a hostile one cannot fill
        // Kiln's memory.
        let read = async {
            let _ = (&mut stdout)
                .take(MAX_EXEC_OUTPUT)
                .read_to_end(&mut out)
                .await;
        };
        if tokio::time::timeout(self.settings().api_timeout(), read)
            .await
            .is_err()
        {
            proc.abort();
            return Err(DriverError::transient(format!("{what}: no answer in time")));
        }
        let ok = match status {
            Some(s) => s
                .await
                .is_none_or(|s| s.status.as_deref() == Some("Success")),
            None => true,
        };
        Ok((String::from_utf8_lossy(&out).into_owned(), ok))
    }
}

/// Keeps the exec alive as long as the attachment; aborting it closes the
/// websocket (tmux in the pod sees its client go and keeps the session).
struct ExecGuard {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[async_trait]
impl SessionAttach for K8sCluster {
    async fn sessions(&self, r: &ResourceRef) -> DriverResult<Vec<SessionInfo>> {
        let r = self.scoped(r);
        // No tmux server (the pod is still starting) reads as no sessions.
        let (mut listing, ok) = self.exec_capture(&r, list_command(false)).await?;
        if !ok {
            return Ok(Vec::new());
        }
        if tmux_listing_awaits_reap(&listing) {
            let (again, ok) = self.exec_capture(&r, list_command(true)).await?;
            if ok {
                listing = again;
            }
        }
        Ok(parse_sessions(&listing))
    }

    /// Looks the session up first, so the refusals say why (exec output
    /// carries no tmux error text); the respawn itself still refuses a live
    /// pane should it have been restarted in between.
    async fn restart(&self, r: &ResourceRef, session: Option<&str>) -> DriverResult<()> {
        let name = session_name(session)?;
        let shown = session.unwrap_or("default");
        let listed = self.sessions(r).await?;
        let Some(found) = listed.iter().find(|s| s.name.as_deref() == session) else {
            return Err(DriverError::permanent(match session {
                None => "the sandbox has no default session: it is not running".to_string(),
                Some(_) => format!("no session {shown} in this sandbox"),
            }));
        };
        if !found.state.is_exited() {
            return Err(DriverError::permanent(format!(
                "session {shown} is still running; only an exited session can be restarted"
            )));
        }
        let r = self.scoped(r);
        let (_, ok) = self.exec_capture(&r, restart_command(&name)).await?;
        if ok {
            Ok(())
        } else {
            Err(DriverError::transient(format!(
                "session {shown} could not be restarted (was it restarted meanwhile?)"
            )))
        }
    }

    async fn git_state(
        &self,
        r: &ResourceRef,
    ) -> DriverResult<Option<crate::model::git::GitState>> {
        let r = self.scoped(r);
        let (out, ok) = self
            .exec_capture(&r, git_state_command(objects::HOME))
            .await?;
        if !ok {
            return Err(DriverError::transient(
                "git status failed in the sandbox (is it running?)",
            ));
        }
        Ok(parse_git_state(&out))
    }

    async fn attach(
        &self,
        r: &ResourceRef,
        session: Option<&str>,
        viewer: &Viewer,
    ) -> DriverResult<Attachment> {
        let &Viewer {
            cols,
            rows,
            read_only,
            ..
        } = viewer;
        let r = self.scoped(r);
        let name = session_name(session)?;
        let pod = objects::pod_name(&r);
        let what = format!("attaching to session {name} in pod {pod}");
        let ap = AttachParams::interactive_tty().container(CONTAINER);
        let mut proc = self
            .bounded(
                &what,
                self.api::<Pod>().exec(
                    &pod,
                    attach_command(&name, read_only, viewer.term.as_deref()),
                    &ap,
                ),
            )
            .await
            .map_err(|e| classify(e, &what))?;
        let missing =
            |part: &str| DriverError::transient(format!("{what}: the exec has no {part}"));
        let mut stdin = proc.stdin().ok_or_else(|| missing("stdin"))?;
        let mut stdout = proc.stdout().ok_or_else(|| missing("stdout"))?;
        let mut sizes = proc
            .terminal_size()
            .ok_or_else(|| missing("resize channel"))?;
        let first = TerminalSize {
            width: cols.max(1),
            height: rows.max(1),
        };
        sizes
            .send(first)
            .await
            .map_err(|e| DriverError::transient(format!("{what}: resize: {e}")))?;

        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(64);
        let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(64);
        let (size_tx, mut size_rx) = mpsc::channel::<(u16, u16)>(8);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out_tx.send(buf[..n].to_vec()).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // Dropping out_tx tells the viewer the session is gone.
            drop(proc);
        });
        let writer = tokio::spawn(async move {
            while let Some(bytes) = in_rx.recv().await {
                // A read-only viewer's keys go nowhere; tmux -r would drop
                // them too, but they never leave Kiln.
                if read_only {
                    continue;
                }
                if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        let resizer = tokio::spawn(async move {
            while let Some((cols, rows)) = size_rx.recv().await {
                let size = TerminalSize {
                    width: cols.max(1),
                    height: rows.max(1),
                };
                if sizes.send(size).await.is_err() {
                    break;
                }
            }
        });
        Ok(Attachment {
            output: out_rx,
            input: crate::driver::SessionInput::new(in_tx),
            resize: size_tx,
            guard: Box::new(ExecGuard {
                tasks: vec![reader, writer, resizer],
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_commands_keep_the_session_in_the_pod() {
        assert_eq!(
            attach_command("main", false, None),
            ["tmux", "-L", TMUX_SOCKET, "new-session", "-A", "-s", "main"]
        );
        assert_eq!(
            attach_command("s1", true, None),
            [
                "tmux",
                "-L",
                TMUX_SOCKET,
                "attach-session",
                "-r",
                "-t",
                "=s1"
            ]
        );
    }

    #[test]
    fn a_named_session_tells_its_hooks_its_name() {
        assert_eq!(
            attach_command("s1", false, None),
            [
                "tmux",
                "-L",
                TMUX_SOCKET,
                "new-session",
                "-A",
                "-s",
                "s1",
                "-e",
                "KILN_SESSION=s1"
            ]
        );
    }

    #[test]
    fn the_viewers_terminal_type_is_an_argument_and_only_a_plain_name() {
        let argv = attach_command("main", false, Some("screen-256color"));
        assert_eq!(&argv[..2], ["sh", "-c"]);
        assert_eq!(argv[2], WITH_VIEWER_TERM);
        assert_eq!(argv[3], "screen-256color");
        assert_eq!(
            &argv[4..],
            ["tmux", "-L", TMUX_SOCKET, "new-session", "-A", "-s", "main"]
        );
        for bad in ["$(reboot)", "x;y", "dumb", ""] {
            assert_eq!(
                attach_command("main", false, Some(bad)),
                attach_command("main", false, None),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn session_names_are_checked_before_they_reach_the_pod() {
        assert_eq!(session_name(None).unwrap(), DEFAULT_SESSION);
        assert_eq!(session_name(Some("s2")).unwrap(), "s2");
        assert!(session_name(Some("-t evil")).is_err());
        assert!(session_name(Some("")).is_err());
    }

    #[test]
    fn the_git_state_is_read_from_porcelain_output_or_no_repository() {
        let argv = git_state_command("/home/kiln");
        assert_eq!(argv.last().map(String::as_str), Some("/home/kiln"));
        assert!(argv[2].contains("--porcelain=v2 --branch"), "{argv:?}");
        assert!(argv[2].contains("core.hooksPath=/dev/null"), "{argv:?}");
        assert_eq!(parse_git_state("kiln: no repository\n"), None);
        let state = parse_git_state(
            "# branch.oid 0123\n# branch.head feat\x1b[31m\n# branch.upstream origin/feat\n\
             # branch.ab +2 -1\n1 .M N... 100644 100644 100644 a b f.txt\n? new.txt\n",
        )
        .unwrap();
        assert_eq!(state.branch.as_deref(), Some("feat?[31m"));
        assert_eq!(state.upstream.as_deref(), Some("origin/feat"));
        assert_eq!((state.ahead, state.behind, state.changed), (2, 1, 2));
    }

    #[test]
    fn sessions_are_listed_default_first() {
        let listing = format!(
            "s2\t1700000100\t0\t0\t\n{DEFAULT_SESSION}\t1700000000\t2\t1\t3\ns1\tx\t1\t1\t\n\n"
        );
        let s = parse_sessions(&listing);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, None);
        assert_eq!(s[0].viewers, 2);
        assert_eq!(s[0].last_activity, Some(1_700_000_000));
        assert_eq!(s[0].state, SessionState::Exited { status: Some(3) });
        assert_eq!(s[1].name.as_deref(), Some("s1"));
        assert_eq!(s[1].last_activity, None);
        // Killed by a signal: no exit status.
        assert_eq!(s[1].state, SessionState::Exited { status: None });
        assert_eq!(s[2].name.as_deref(), Some("s2"));
        assert_eq!(s[2].state, SessionState::Running);
    }

    #[test]
    fn an_older_listing_without_pane_fields_reads_as_running() {
        let s = parse_sessions("s1\t1700000100\t0\n");
        assert_eq!(s[0].state, SessionState::Running);
    }

    #[test]
    fn the_listing_can_first_have_tmux_reap_exited_panes() {
        let plain = list_command(false);
        assert_eq!(&plain[..4], ["tmux", "-L", TMUX_SOCKET, "list-sessions"]);
        let reaping = list_command(true);
        assert_eq!(&reaping[3..6], ["run-shell", "true", ";"]);
        assert_eq!(reaping.last(), plain.last());
    }

    #[test]
    fn restart_targets_exactly_one_session_and_never_kills() {
        assert_eq!(
            restart_command("s1"),
            ["tmux", "-L", TMUX_SOCKET, "respawn-pane", "-t", "=s1:"]
        );
        assert!(!restart_command(DEFAULT_SESSION).contains(&"-k".to_string()));
    }
}
