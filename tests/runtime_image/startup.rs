//! How the image starts, read from the Dockerfile: only port 3000, tini
//! running the entrypoint script, the files it needs copied in place (and not
//! dockerignored), the version label, the health check.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::dockerfile::{Dockerfile, Token, exec_form, parse_octal_mode, shell_tokens};
use crate::{read_runtime, runtime_dir};

const TMUX_CONF_PATH: &str = "/etc/kiln/tmux.conf";
const ONLY_PORT: &str = "3000";

#[test]
fn only_port_3000_is_exposed() {
    let df = Dockerfile::load();
    let ports: Vec<String> = df
        .all("EXPOSE")
        .into_iter()
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|p| df.expand(&p))
        .collect();
    let normalised: Vec<&str> = ports
        .iter()
        .map(|p| p.strip_suffix("/tcp").unwrap_or(p))
        .collect();
    assert_eq!(
        normalised,
        [ONLY_PORT],
        "the image must expose port {ONLY_PORT} (tcp) and nothing else"
    );
}

#[test]
fn entrypoint_is_tini_running_the_entrypoint_script() {
    let df = Dockerfile::load();
    let entrypoint = df.last("ENTRYPOINT");
    let argv = exec_form(&entrypoint.args).unwrap_or_else(|| {
        panic!(
            "line {}: ENTRYPOINT must use the exec form (JSON array) so the init is PID 1, \
             not `sh -c`: {}",
            entrypoint.line, entrypoint.args
        )
    });
    let init = Path::new(&argv[0])
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    assert!(
        ["tini", "tini-static", "dumb-init"].contains(&init.as_str()),
        "line {}: PID 1 must be tini or dumb-init, found {}",
        entrypoint.line,
        argv[0]
    );
    let (_, script) = df.copy_of("entrypoint.sh");
    let at = argv.iter().position(|a| *a == script).unwrap_or_else(|| {
        panic!(
            "line {}: ENTRYPOINT {argv:?} does not run the entrypoint script, copied to {script}",
            entrypoint.line
        )
    });
    if init.starts_with("tini") {
        assert!(
            argv[1..at].contains(&"--".to_string()),
            "line {}: pass `--` to tini before the script: {argv:?}",
            entrypoint.line
        );
    }
    // CMD would become the script's arguments, and the script then runs that
    // command instead of supervising the tmux session.
    for cmd in df.all("CMD") {
        assert_eq!(
            exec_form(&cmd.args),
            Some(Vec::new()),
            "line {}: a CMD replaces the tmux supervision (the entrypoint execs its arguments)",
            cmd.line
        );
    }
}

#[test]
fn entrypoint_script_is_copied_executable() {
    let df = Dockerfile::load();
    let (copy, dest) = df.copy_of("entrypoint.sh");
    let chmod_by_copy = copy
        .flags
        .get("chmod")
        .map(|m| parse_octal_mode(m) & 0o005 == 0o005);
    let chmod_by_run = df.runs().into_iter().any(|(ins, commands)| {
        ins.line > copy.line
            && commands.iter().any(|c| {
                c[0] == "chmod"
                    && c.contains(&dest)
                    && c.iter().any(|w| {
                        w.contains("+x")
                            || (w.len() >= 3
                                && w.chars().all(|c| c.is_ascii_digit())
                                && parse_octal_mode(w) & 0o005 == 0o005)
                    })
            })
    });
    assert!(
        chmod_by_copy == Some(true) || chmod_by_run,
        "line {}: {dest} must be readable and executable by the sandbox user: use \
         `COPY --chmod=0755` or a later `RUN chmod 0755 {dest}` (found flags {:?})",
        copy.line,
        copy.flags
    );
    // Without --chmod, COPY keeps the file's mode from the checkout.
    let mode = fs::metadata(runtime_dir().join("entrypoint.sh"))
        .expect("runtime/entrypoint.sh exists")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "runtime/entrypoint.sh should be executable in the repository (mode {mode:o})"
    );
}

#[test]
fn tmux_conf_is_installed_where_the_entrypoint_reads_it() {
    let df = Dockerfile::load();
    let (copy, dest) = df.copy_of("tmux.conf");
    assert_eq!(
        dest, TMUX_CONF_PATH,
        "line {}: tmux.conf must be copied to {TMUX_CONF_PATH}",
        copy.line
    );
    if let Some(mode) = copy.flags.get("chmod") {
        assert_eq!(
            parse_octal_mode(mode) & 0o004,
            0o004,
            "line {}: {TMUX_CONF_PATH} must be readable by the sandbox user",
            copy.line
        );
    }
    let script = read_runtime("entrypoint.sh");
    assert!(
        script.contains(&format!("KILN_TMUX_CONF:-{TMUX_CONF_PATH}")),
        "entrypoint.sh does not default KILN_TMUX_CONF to {TMUX_CONF_PATH}"
    );
}

#[test]
fn copied_files_exist_and_are_not_dockerignored() {
    let df = Dockerfile::load();
    let ignore = fs::read_to_string(runtime_dir().join(".dockerignore")).unwrap_or_default();
    for copy in df.copies() {
        assert!(
            !copy.flags.contains_key("from"),
            "line {}: unexpected COPY --from in a single-stage build",
            copy.line
        );
        for source in &copy.sources {
            assert!(
                runtime_dir().join(source).is_file(),
                "line {}: COPY source runtime/{source} does not exist",
                copy.line
            );
            assert!(
                !dockerignored(&ignore, source),
                "line {}: runtime/.dockerignore excludes {source}, which COPY needs",
                copy.line
            );
        }
    }
}

/// Whether `.dockerignore` rules exclude `path` (last matching rule wins;
/// patterns with `*` and `?`, `!` re-includes).
fn dockerignored(rules: &str, path: &str) -> bool {
    let mut ignored = false;
    for rule in rules.lines().map(str::trim) {
        if rule.is_empty() || rule.starts_with('#') {
            continue;
        }
        let (negated, pattern) = match rule.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, rule),
        };
        let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
        if glob_match(pattern.as_bytes(), path.as_bytes()) {
            ignored = !negated;
        }
    }
    ignored
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], text)
                || (!text.is_empty() && text[0] != b'/' && glob_match(pattern, &text[1..]))
        }
        (Some(b'?'), Some(&t)) if t != b'/' => glob_match(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob_match(&pattern[1..], &text[1..]),
        _ => false,
    }
}

#[test]
fn labels_carry_the_runtime_version() {
    let df = Dockerfile::load();
    let version = read_runtime("VERSION").trim().to_string();
    assert!(
        !version.is_empty() && version.split('.').all(|p| p.parse::<u32>().is_ok()),
        "runtime/VERSION `{version}` is not MAJOR.MINOR.PATCH"
    );
    assert_eq!(
        df.arg_defaults.get("KILN_RUNTIME_VERSION"),
        Some(&version),
        "ARG KILN_RUNTIME_VERSION's default must equal runtime/VERSION ({version}); bump both"
    );
    let labels: String = df
        .all("LABEL")
        .into_iter()
        .map(|i| i.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<String> = shell_tokens(&labels)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w),
            Token::Op(_) => None,
        })
        .collect();
    let label = |key: &str| {
        words
            .iter()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
    };
    let oci = label("org.opencontainers.image.version")
        .expect("no org.opencontainers.image.version label");
    assert_eq!(
        oci, "${KILN_RUNTIME_VERSION}",
        "the version label must come from ARG KILN_RUNTIME_VERSION"
    );
    assert_eq!(df.expand(&oci), version);
}

#[test]
fn healthcheck_is_the_readiness_probe() {
    let df = Dockerfile::load();
    for hc in df.all("HEALTHCHECK") {
        let cmd = hc
            .args
            .split_once("CMD")
            .map(|(_, c)| c.trim())
            .unwrap_or_else(|| panic!("line {}: HEALTHCHECK without CMD", hc.line));
        assert_eq!(
            exec_form(cmd),
            Some(
                ["tmux", "-L", "kiln", "has-session", "-t", "=main"]
                    .map(String::from)
                    .to_vec()
            ),
            "line {}: the health check should be the pod's readiness probe",
            hc.line
        );
    }
}
