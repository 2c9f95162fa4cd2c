//! Templates: what a new project starts with (a description, the command
//! its default session runs, default variables, a repository and branch, a
//! setup script run once after the clone, and for Kubernetes an image and
//! sizes). A template is a small TOML file; parsing and validating one is
//! pure, and every refusal names the field.
//!
//! ```toml
//! name = "python"
//! description = "Python 3 with a virtual environment"
//! command = "bash"
//! setup = "python3 -m venv .venv"
//! [repo]
//! url = "https://github.com/acme/app.git"
//! branch = "main"
//! [env]
//! PYTHONUNBUFFERED = "1"
//! OPENAI_API_KEY = { secret = true }   # to be set by the user; no value in a template
//! [kubernetes]
//! image = "ghcr.io/acme/python:3.12"
//! cpu = "500m"
//! memory = "1Gi"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest template name.
pub const MAX_NAME_LEN: usize = 40;
/// Largest template file.
pub const MAX_FILE_LEN: usize = 64 * 1024;
/// Longest setup script.
pub const MAX_SETUP_LEN: usize = 16 * 1024;
/// Longest session command.
pub const MAX_COMMAND_LEN: usize = 1024;

/// The templates that ship with Kiln, by file name.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "templates/shell.toml",
        include_str!("../../templates/shell.toml"),
    ),
    (
        "templates/claude.toml",
        include_str!("../../templates/claude.toml"),
    ),
    (
        "templates/python.toml",
        include_str!("../../templates/python.toml"),
    ),
    (
        "templates/node.toml",
        include_str!("../../templates/node.toml"),
    ),
];

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    pub name: String,
    pub description: String,
    /// What the default session runs (`None`: the server's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Variables, sorted by key.
    pub env: Vec<TemplateVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Run once in the sandbox after the clone (`sh -c`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<K8sSizing>,
}

/// One default variable. A secret one carries no value: a template is no
/// place for a credential, so it names what the user must set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateVar {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub secret: bool,
}

/// What a sandbox on Kubernetes runs as and asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct K8sSizing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// Why a template was refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TemplateError {
    pub field: String,
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> TemplateError {
    TemplateError {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    description: Option<String>,
    command: Option<String>,
    setup: Option<String>,
    repo: Option<RepoFile>,
    #[serde(default)]
    env: BTreeMap<String, VarFile>,
    kubernetes: Option<K8sFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoFile {
    url: Option<String>,
    branch: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VarFile {
    Plain(String),
    Table {
        value: Option<String>,
        #[serde(default)]
        secret: bool,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct K8sFile {
    image: Option<String>,
    cpu: Option<String>,
    memory: Option<String>,
}

/// Checks a template's name: `[a-z0-9][a-z0-9-]*`, at most 40 characters.
pub fn check_name(name: &str) -> Result<(), TemplateError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "name",
            format!(
                "{:?} is not a template name: 1-{MAX_NAME_LEN} of a-z, 0-9 and -, not starting \
                 with -",
                super::naming::printable(name, 50)
            ),
        ))
    }
}

/// Parses and checks a template file.
pub fn parse(text: &str) -> Result<Template, TemplateError> {
    if text.len() > MAX_FILE_LEN {
        return Err(bad("file", format!("larger than {MAX_FILE_LEN} bytes")));
    }
    let file: File = toml::from_str(text).map_err(|e| toml_error(&e))?;
    let name = file.name.ok_or_else(|| bad("name", "missing"))?;
    check_name(&name)?;
    let description = file.description.unwrap_or_default();
    super::naming::check_description(&description)
        .map_err(|e| bad("description", e.to_string()))?;
    let command = match file.command.map(|c| c.trim().to_string()) {
        Some(c) if c.is_empty() => {
            return Err(bad("command", "empty (leave it out for the default)"));
        }
        Some(c) if c.len() > MAX_COMMAND_LEN || c.chars().any(|ch| ch.is_control()) => {
            return Err(bad(
                "command",
                format!("at most {MAX_COMMAND_LEN} characters, one line"),
            ));
        }
        c => c,
    };
    let setup = match file.setup {
        Some(s) if s.trim().is_empty() => None,
        Some(s) if s.len() > MAX_SETUP_LEN => {
            return Err(bad("setup", format!("longer than {MAX_SETUP_LEN} bytes")));
        }
        Some(s) if s.contains('\0') => return Err(bad("setup", "contains a NUL byte")),
        s => s,
    };
    let (repo, branch) = match file.repo {
        None => (None, None),
        Some(r) => {
            let url = r.url.ok_or_else(|| bad("repo.url", "missing"))?;
            let url = super::git::parse_repo_url(&url)
                .map_err(|e| bad("repo.url", e.to_string()))?
                .url;
            let branch = r
                .branch
                .map(|b| super::git::check_branch(&b))
                .transpose()
                .map_err(|e| bad("repo.branch", e.to_string()))?;
            (Some(url), branch)
        }
    };
    let mut env = Vec::with_capacity(file.env.len());
    for (key, var) in file.env {
        let field = format!("env.{}", super::naming::printable(&key, 60));
        super::env::check_key(&key).map_err(|e| bad(&field, e.to_string()))?;
        let (value, secret) = match var {
            VarFile::Plain(v) => (Some(v), false),
            VarFile::Table { value, secret } => (value, secret),
        };
        match (&value, secret) {
            (Some(_), true) => {
                return Err(bad(
                    &field,
                    "a secret variable has no value in a template (set it per project)",
                ));
            }
            (None, false) => return Err(bad(&field, "a value is missing")),
            (Some(v), false) => {
                super::env::check_value(&key, v).map_err(|e| bad(&field, e.to_string()))?
            }
            (None, true) => {}
        }
        env.push(TemplateVar { key, value, secret });
    }
    if env.len() > super::env::MAX_VARS_PER_PROJECT {
        return Err(bad("env", "too many variables"));
    }
    let kubernetes = match file.kubernetes {
        None => None,
        Some(k) => {
            if let Some(image) = &k.image {
                check_image(image).map_err(|r| bad("kubernetes.image", r))?;
            }
            for (field, q) in [("kubernetes.cpu", &k.cpu), ("kubernetes.memory", &k.memory)] {
                if let Some(q) = q {
                    check_quantity(q).map_err(|r| bad(field, r))?;
                }
            }
            Some(K8sSizing {
                image: k.image,
                cpu: k.cpu,
                memory: k.memory,
            })
        }
    };
    Ok(Template {
        name,
        description,
        command,
        env,
        repo,
        branch,
        setup,
        kubernetes,
    })
}

/// TOML's own message names the line; the field is the key it points at
/// when it says so.
fn toml_error(e: &toml::de::Error) -> TemplateError {
    let message = e.message().to_string();
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("unknown field") || message.contains("missing field"))
        .unwrap_or("file")
        .to_string();
    let line = e.span().map(|_| e.to_string()).unwrap_or(message);
    bad(field, super::naming::printable(line.trim(), 300))
}

fn check_image(image: &str) -> Result<(), String> {
    let ok = !image.is_empty()
        && image.len() <= 255
        && !image.starts_with('-')
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "./:-_@".contains(c));
    if ok {
        Ok(())
    } else {
        Err("not an image reference (e.g. ghcr.io/acme/app:1.2)".into())
    }
}

/// A Kubernetes quantity such as `500m`, `2`, `1Gi`, `512Mi`.
fn check_quantity(q: &str) -> Result<(), String> {
    let digits = q.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &q[digits.len()..];
    let number_ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|&c| c == '.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix);
    if number_ok && suffix_ok {
        Ok(())
    } else {
        Err(format!(
            "{q:?} is not a quantity (e.g. 500m, 2, 512Mi, 1Gi)"
        ))
    }
}

/// Renders a template back to its file form (what `templates show` prints
/// and what is stored).
pub fn to_toml(t: &Template) -> String {
    use std::fmt::Write;
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    let _ = writeln!(out, "name = {}", q(&t.name));
    let _ = writeln!(out, "description = {}", q(&t.description));
    if let Some(c) = &t.command {
        let _ = writeln!(out, "command = {}", q(c));
    }
    if let Some(s) = &t.setup {
        let _ = writeln!(out, "setup = {}", q(s));
    }
    if let Some(r) = &t.repo {
        let _ = writeln!(out, "\n[repo]\nurl = {}", q(r));
        if let Some(b) = &t.branch {
            let _ = writeln!(out, "branch = {}", q(b));
        }
    }
    if !t.env.is_empty() {
        let _ = writeln!(out, "\n[env]");
        for v in &t.env {
            match &v.value {
                Some(value) if !v.secret => {
                    let _ = writeln!(out, "{} = {}", v.key, q(value));
                }
                _ => {
                    let _ = writeln!(out, "{} = {{ secret = true }}", v.key);
                }
            }
        }
    }
    if let Some(k) = &t.kubernetes {
        let _ = writeln!(out, "\n[kubernetes]");
        for (key, v) in [("image", &k.image), ("cpu", &k.cpu), ("memory", &k.memory)] {
            if let Some(v) = v {
                let _ = writeln!(out, "{key} = {}", q(v));
            }
        }
    }
    out
}

/// The built-in templates, each checked; the first broken one is named with
/// its file and field (Kiln refuses to start with it).
pub fn builtins() -> Result<Vec<Template>, (String, TemplateError)> {
    BUILTIN_FILES
        .iter()
        .map(|(file, text)| parse(text).map_err(|e| (file.to_string(), e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_templates_validate_and_have_distinct_names() {
        let all = builtins().unwrap_or_else(|(f, e)| panic!("{f}: {e}"));
        assert_eq!(all.len(), BUILTIN_FILES.len());
        let mut names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for t in &all {
            assert!(!t.description.is_empty(), "{} has a description", t.name);
        }
    }

    #[test]
    fn a_full_template_round_trips() {
        let text = r#"
name = "py"
description = "Python"
command = "bash -l"
setup = "python3 -m venv .venv"
[repo]
url = "https://github.com/acme/app.git"
branch = "dev"
[env]
B = "2"
A = "1"
TOKEN = { secret = true }
[kubernetes]
image = "ghcr.io/acme/py:3.12"
cpu = "500m"
memory = "1Gi"
"#;
        let t = parse(text).unwrap();
        assert_eq!(t.command.as_deref(), Some("bash -l"));
        assert_eq!(t.branch.as_deref(), Some("dev"));
        let keys: Vec<&str> = t.env.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["A", "B", "TOKEN"]);
        assert!(t.env[2].secret && t.env[2].value.is_none());
        assert_eq!(parse(&to_toml(&t)).unwrap(), t);
    }

    #[test]
    fn every_refusal_names_its_field() {
        let cases = [
            ("description = \"x\"", "name"),
            ("name = \"Bad Name\"", "name"),
            ("name = \"a\"\ncolour = \"red\"", "colour"),
            ("name = \"a\"\ncommand = \"\"", "command"),
            ("name = \"a\"\n[repo]\nurl = \"file:///etc\"", "repo.url"),
            ("name = \"a\"\n[repo]\nbranch = \"main\"", "repo.url"),
            (
                "name = \"a\"\n[repo]\nurl = \"https://h/r\"\nbranch = \"a..b\"",
                "repo.branch",
            ),
            ("name = \"a\"\n[env]\n\"1BAD\" = \"x\"", "env.1BAD"),
            (
                "name = \"a\"\n[env]\nKEY = { value = \"v\", secret = true }",
                "env.KEY",
            ),
            ("name = \"a\"\n[env]\nKEY = { secret = false }", "env.KEY"),
            (
                "name = \"a\"\n[kubernetes]\ncpu = \"lots\"",
                "kubernetes.cpu",
            ),
            (
                "name = \"a\"\n[kubernetes]\nmemory = \"1Gb\"",
                "kubernetes.memory",
            ),
            (
                "name = \"a\"\n[kubernetes]\nimage = \"-x\"",
                "kubernetes.image",
            ),
            ("name = ", "file"),
        ];
        for (text, field) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.field, field, "{text:?}: {e}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["500m", "2", "0.5", "1Gi", "512Mi", "1G"] {
            assert!(check_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "m", "1.2.3", "1GB", "-1", "1 Gi"] {
            assert!(check_quantity(bad).is_err(), "{bad}");
        }
    }
}
