//! `ssh host logs NAME [--follow] [--tail N]`: the sandbox's container log,
//! streamed to the client as it comes (like `kubectl logs -f`, but it keeps
//! following across pod restarts). Lines go to stdout, the follower's
//! notices ("waiting for pod…") to stderr, so `logs NAME > file` keeps only
//! what the sandbox printed. Every line is cleaned as the dashboard's log
//! view cleans it ([`crate::tui::text::clean`]): the sandbox's output must
//! not drive the reader's terminal (clipboard writes, titles, screen
//! clears, bracketed-paste ends).

use russh::ChannelId;
use russh::server::Handle;

use crate::console::UserConsole;
use crate::driver::LogEvent;
use crate::model::naming::printable;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsArgs {
    pub project: String,
    pub follow: bool,
    pub tail: Option<i64>,
}

const USAGE: &str = "usage: logs NAME [--follow|-f] [--tail N]   (the sandbox's container log; Kubernetes sandboxes)";

/// `Some` when the command line is a logs request (parsed or not).
pub fn parse(command: &str) -> Option<Result<LogsArgs, String>> {
    let words = shell_words::split(command).ok()?;
    if words.first().map(String::as_str) != Some("logs") {
        return None;
    }
    let mut project = None;
    let mut follow = false;
    let mut tail = Some(100);
    let mut it = words.into_iter().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            "--follow" | "-f" => follow = true,
            "--tail" | "-n" => match it.next().map(|n| n.parse::<i64>()) {
                Some(Ok(n)) if (-1..=100_000).contains(&n) => tail = (n >= 0).then_some(n),
                _ => {
                    return Some(Err(format!(
                        "--tail needs a number of lines (0-100000, or -1 for all); {USAGE}"
                    )));
                }
            },
            "--help" | "-h" => return Some(Err(USAGE.into())),
            _ if project.is_none() && !w.starts_with('-') => project = Some(w),
            other => {
                return Some(Err(format!(
                    "unexpected argument {}; {USAGE}",
                    printable(other, 40)
                )));
            }
        }
    }
    Some(match project {
        Some(project) => Ok(LogsArgs {
            project,
            follow,
            tail,
        }),
        None => Err(USAGE.into()),
    })
}

/// Streams the log to the channel until it ends or the client goes.
pub fn start(console: UserConsole, args: LogsArgs, handle: Handle, channel: ChannelId) {
    tokio::spawn(async move {
        let code = match stream(&console, &args, &handle, channel).await {
            Ok(()) => 0,
            Err(message) => {
                let _ = handle
                    .extended_data(channel, 1, format!("error: {message}\n").into_bytes())
                    .await;
                1
            }
        };
        let _ = handle.exit_status_request(channel, code).await;
        let _ = handle.eof(channel).await;
        let _ = handle.close(channel).await;
    });
}

async fn stream(
    console: &UserConsole,
    args: &LogsArgs,
    handle: &Handle,
    channel: ChannelId,
) -> Result<(), crate::console::ConsoleError> {
    let mut rx = console.logs(&args.project, args.tail, args.follow).await?;
    while let Some(event) = rx.recv().await {
        let sent = match event {
            LogEvent::Line(line) => {
                let line = crate::tui::text::clean(&line);
                handle.data(channel, format!("{line}\n").into_bytes()).await
            }
            LogEvent::Notice(n) => {
                let n = crate::tui::text::clean(&n);
                handle
                    .extended_data(channel, 1, format!("kiln: {n}\n").into_bytes())
                    .await
            }
        };
        if sent.is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_arguments() {
        assert_eq!(parse("projects"), None);
        assert_eq!(
            parse("logs blog -f --tail 5"),
            Some(Ok(LogsArgs {
                project: "blog".into(),
                follow: true,
                tail: Some(5)
            }))
        );
        assert_eq!(
            parse("logs blog --tail -1"),
            Some(Ok(LogsArgs {
                project: "blog".into(),
                follow: false,
                tail: None
            }))
        );
        assert!(parse("logs").unwrap().is_err());
        assert!(parse("logs blog --tail x").unwrap().is_err());
        assert!(parse("logs blog --tail").unwrap().is_err());
        assert!(parse("logs a b").unwrap().is_err());
    }
}
