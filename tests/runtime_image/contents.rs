//! What the image contains, read from the Dockerfile: a pinned Debian or
//! Ubuntu base, the numeric non-root user, Claude Code and Node at pinned
//! versions, the apt toolset and apt hygiene, pipelines with pipefail.

use std::collections::HashMap;

use crate::dockerfile::{Dockerfile, Token, exec_form, option_value, shell_tokens, split_flags};

/// The sandbox user's UID and GID; the pod spec's runAsUser relies on it.
const KILN_UID: u32 = 1001;
const KILN_HOME: &str = "/home/kiln";

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
