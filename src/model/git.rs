//! Git, as far as Kiln decides anything about it: which repository URLs a
//! project may start from, which branch names are acceptable, which
//! addresses a repository host may resolve to, and what `git status
//! --porcelain=v2 --branch` says about a working tree. Pure: the console
//! resolves the host and the drivers run git.

use std::net::IpAddr;

/// Longest accepted repository URL.
pub const MAX_URL_LEN: usize = 2048;
/// Longest accepted branch name.
pub const MAX_BRANCH_LEN: usize = 200;

/// How a repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    Http,
    Ssh,
    /// `user@host:path`, which git reads as SSH.
    ScpLike,
    Git,
}

/// A repository URL Kiln accepts, with the host it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    pub url: String,
    pub transport: Transport,
    /// The host as written (no brackets around an IPv6 address).
    pub host: String,
    /// The port, when the URL names one.
    pub port: Option<u16>,
}

impl RepoUrl {
    /// Whether git may ask for a username and password over it (an HTTPS
    /// token only makes sense here).
    pub fn takes_token(&self) -> bool {
        matches!(self.transport, Transport::Https | Transport::Http)
    }

    /// The port to resolve the host with (any will do for an address check).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            Transport::Https => 443,
            Transport::Http => 80,
            Transport::Ssh | Transport::ScpLike => 22,
            Transport::Git => 9418,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoUrlError {
    #[error("the repository URL is empty")]
    Empty,
    #[error("the repository URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("the repository URL contains spaces or control characters")]
    Unprintable,
    #[error(
        "{0} repositories are refused: use https://, http://, ssh://, git:// or user@host:path"
    )]
    Transport(String),
    #[error("a local path is not a repository Kiln clones: use https://, ssh:// or git://")]
    LocalPath,
    #[error("the repository URL names no host")]
    NoHost,
    #[error("the repository URL's port is not a number from 1 to 65535")]
    Port,
    #[error(
        "put an access token in your settings (GIT_TOKEN), not in the URL: a password in a \
         URL ends up in the repository's config"
    )]
    Credentials,
    #[error("the repository URL names no repository path")]
    NoPath,
}

/// Checks a repository URL: `https://`, `http://`, `ssh://`, `git://` and
/// scp-style `user@host:path` only. `file://`, bare paths, `ext::` and
/// every other transport are refused; so is a password in the URL.
pub fn parse_repo_url(raw: &str) -> Result<RepoUrl, RepoUrlError> {
    let url = raw.trim();
    if url.is_empty() {
        return Err(RepoUrlError::Empty);
    }
    if url.len() > MAX_URL_LEN {
        return Err(RepoUrlError::TooLong);
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(RepoUrlError::Unprintable);
    }
    // A leading dash would be read by git as an option.
    if url.starts_with('-') {
        return Err(RepoUrlError::LocalPath);
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "https" => Transport::Https,
            "http" => Transport::Http,
            "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
            "git" => Transport::Git,
            "file" => return Err(RepoUrlError::Transport("file://".into())),
            other => return Err(RepoUrlError::Transport(format!("{other}://"))),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let host_port = match authority.rsplit_once('@') {
            Some((user, hp)) => {
                // ssh://git@host is how SSH names its user; a password is never wanted.
                if user.contains(':') || transport != Transport::Ssh {
                    return Err(RepoUrlError::Credentials);
                }
                hp
            }
            None => authority,
        };
        let (host, port) = split_host_port(host_port)?;
        if path.trim_matches('/').is_empty() {
            return Err(RepoUrlError::NoPath);
        }
        return Ok(RepoUrl {
            url: url.to_string(),
            transport,
            host,
            port,
        });
    }
    // git's `transport::address` form (`ext::sh -c …`, `fd::…`).
    if url.contains("::") {
        let name = url.split("::").next().unwrap_or_default();
        return Err(RepoUrlError::Transport(format!("{name}::")));
    }
    // scp-style: git takes it as SSH only when a colon comes before any
    // slash; otherwise it is a local path.
    let colon = url.find(':');
    let slash = url.find('/');
    match (colon, slash) {
        (Some(c), s) if s.is_none_or(|s| c < s) => {
            let (authority, path) = (&url[..c], &url[c + 1..]);
            let host = match authority.rsplit_once('@') {
                Some((user, host)) if !user.is_empty() => host,
                Some(_) => return Err(RepoUrlError::NoHost),
                None => authority,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(RepoUrlError::NoHost);
            }
            // `C:foo` (a drive letter) or `.:x` are paths, not hosts.
            if host.len() == 1 || host.starts_with('.') {
                return Err(RepoUrlError::LocalPath);
            }
            check_host(host)?;
            if path.trim_matches('/').is_empty() {
                return Err(RepoUrlError::NoPath);
            }
            Ok(RepoUrl {
                url: url.to_string(),
                transport: Transport::ScpLike,
                host: host.to_string(),
                port: None,
            })
        }
        _ => Err(RepoUrlError::LocalPath),
    }
}

fn split_host_port(hp: &str) -> Result<(String, Option<u16>), RepoUrlError> {
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or(RepoUrlError::NoHost)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(RepoUrlError::NoHost),
        };
        (h, port)
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    if host.is_empty() {
        return Err(RepoUrlError::NoHost);
    }
    check_host(host)?;
    let port = match port {
        None | Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(RepoUrlError::Port),
        },
    };
    Ok((host.to_string(), port))
}

fn check_host(host: &str) -> Result<(), RepoUrlError> {
    let ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok && !host.starts_with('-') {
        Ok(())
    } else {
        Err(RepoUrlError::NoHost)
    }
}

/// Whether an address is one a repository host may not resolve to unless
/// the operator allows private hosts: loopback, link-local, private,
/// unspecified, and the like (so a sandbox's clone cannot reach Kiln's own
/// host or its network's services).
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let v4 = std::net::Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
                return private_v4(v4);
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
                || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible and ::/96
        }
    }
}

fn private_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network": reaches this host on Linux
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || a >= 240 // reserved
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BranchError {
    #[error("the branch name is empty")]
    Empty,
    #[error("the branch name is longer than {MAX_BRANCH_LEN} characters")]
    TooLong,
    #[error("{0:?} is not a valid branch name ({1})")]
    Invalid(String, &'static str),
}

/// Checks a branch name by git's rules (`git check-ref-format --branch`),
/// plus no leading `-` (it would read as an option).
pub fn check_branch(raw: &str) -> Result<String, BranchError> {
    let b = raw.trim();
    if b.is_empty() {
        return Err(BranchError::Empty);
    }
    if b.len() > MAX_BRANCH_LEN {
        return Err(BranchError::TooLong);
    }
    let bad = |why| Err(BranchError::Invalid(b.to_string(), why));
    if b.starts_with('-') {
        return bad("it must not start with '-'");
    }
    if b.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return bad("no spaces, control characters or any of ~^:?*[\\");
    }
    if b.contains("..") || b.contains("@{") || b == "@" {
        return bad("no '..', '@{' or a lone '@'");
    }
    if b.starts_with('/') || b.ends_with('/') || b.contains("//") {
        return bad("no empty path component");
    }
    if b.ends_with('.') {
        return bad("it must not end with '.'");
    }
    if b.split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return bad("no component starting with '.' or ending with '.lock'");
    }
    Ok(b.to_string())
}

/// What a working tree's state is, as the detail screen and `git NAME
/// status` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GitState {
    /// The checked-out branch; `None` when HEAD is detached.
    pub branch: Option<String>,
    /// The branch's upstream (`origin/main`), if it has one.
    pub upstream: Option<String>,
    /// Commits on the branch not on its upstream, and the reverse.
    pub ahead: u32,
    pub behind: u32,
    /// Changed, added, removed, conflicted or untracked paths.
    pub changed: u32,
}

impl GitState {
    /// One line: `main ↑1 ↓2, 3 changed` or `main, clean`.
    pub fn summary(&self) -> String {
        let mut s = self
            .branch
            .clone()
            .unwrap_or_else(|| "(detached HEAD)".into());
        if self.upstream.is_some() {
            if self.ahead > 0 {
                s.push_str(&format!(" ↑{}", self.ahead));
            }
            if self.behind > 0 {
                s.push_str(&format!(" ↓{}", self.behind));
            }
        } else if self.branch.is_some() {
            s.push_str(" (no upstream)");
        }
        if self.changed == 0 {
            s.push_str(", clean");
        } else {
            s.push_str(&format!(", {} changed", self.changed));
        }
        s
    }
}

/// Reads `git status --porcelain=v2 --branch` output. Unknown lines are
/// skipped (a newer git may add some).
pub fn parse_status(out: &str) -> GitState {
    let mut state = GitState::default();
    for line in out.lines() {
        if let Some(header) = line.strip_prefix("# ") {
            let (key, value) = header.split_once(' ').unwrap_or((header, ""));
            match key {
                "branch.head" if value != "(detached)" => state.branch = Some(value.to_string()),
                "branch.upstream" => state.upstream = Some(value.to_string()),
                "branch.ab" => {
                    for part in value.split_whitespace() {
                        if let Some(n) = part.strip_prefix('+') {
                            state.ahead = n.parse().unwrap_or(0);
                        } else if let Some(n) = part.strip_prefix('-') {
                            state.behind = n.parse().unwrap_or(0);
                        }
                    }
                }
                _ => {}
            }
        } else if matches!(line.split(' ').next(), Some("1" | "2" | "u" | "?")) {
            state.changed += 1;
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_urls_and_their_hosts() {
        let cases = [
            (
                "https://github.com/a/b.git",
                Transport::Https,
                "github.com",
                None,
            ),
            (
                "http://example.com:8080/r",
                Transport::Http,
                "example.com",
                Some(8080),
            ),
            (
                "ssh://git@host.example/x/y",
                Transport::Ssh,
                "host.example",
                None,
            ),
            (
                "ssh://host.example:2222/x",
                Transport::Ssh,
                "host.example",
                Some(2222),
            ),
            (
                "git://127.0.0.1:9418/repo",
                Transport::Git,
                "127.0.0.1",
                Some(9418),
            ),
            (
                "git@github.com:a/b.git",
                Transport::ScpLike,
                "github.com",
                None,
            ),
            (
                "host.example:repo",
                Transport::ScpLike,
                "host.example",
                None,
            ),
            ("https://[::1]:8443/r", Transport::Https, "::1", Some(8443)),
        ];
        for (url, transport, host, port) in cases {
            let u = parse_repo_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (u.transport, u.host.as_str(), u.port),
                (transport, host, port),
                "{url}"
            );
        }
    }

    #[test]
    fn refused_urls_say_why() {
        use RepoUrlError as E;
        let cases = [
            ("", E::Empty),
            ("file:///etc", E::Transport("file://".into())),
            ("FILE:///etc", E::Transport("file://".into())),
            ("/srv/repo.git", E::LocalPath),
            ("./repo", E::LocalPath),
            ("repo", E::LocalPath),
            ("../x:y", E::LocalPath),
            ("ext::sh -c touch% /tmp/x", E::Unprintable),
            ("ext::sh", E::Transport("ext::".into())),
            ("fd::3", E::Transport("fd::".into())),
            ("ftp://h/r", E::Transport("ftp://".into())),
            ("https://user:pw@h/r", E::Credentials),
            ("https://token@h/r", E::Credentials),
            ("https:///r", E::NoHost),
            ("https://h", E::NoPath),
            ("https://h:0/r", E::Port),
            ("https://h:99999/r", E::Port),
            ("--upload-pack=x", E::LocalPath),
            ("https://h/a b", E::Unprintable),
            ("c:repo", E::LocalPath),
            ("https://-oProxy/r", E::NoHost),
        ];
        for (url, want) in cases {
            assert_eq!(parse_repo_url(url), Err(want), "{url:?}");
        }
    }

    #[test]
    fn private_and_public_addresses() {
        let private = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ];
        for a in private {
            assert!(is_private_address(a.parse().unwrap()), "{a}");
        }
        for a in ["140.82.112.3", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private_address(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn branch_names_follow_gits_rules() {
        for ok in ["main", "feature/x", "v1.2", "kiln-work_1"] {
            assert_eq!(check_branch(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "-x", "a..b", "a b", "a~1", "x^", "a:b", "a?", "a*", "a[", "a\\b", "/a", "a/", "a//b",
            "a.", ".a", "a/.b", "a.lock", "@", "a@{1}",
        ] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
        assert_eq!(check_branch("  "), Err(BranchError::Empty));
    }

    #[test]
    fn porcelain_v2_status_is_read() {
        let out = "# branch.oid 1234\n# branch.head feature\n# branch.upstream origin/feature\n\
                   # branch.ab +2 -1\n1 .M N... 100644 100644 100644 a b src/x.rs\n\
                   2 R. N... 100644 100644 100644 a b R100 new\told\n\
                   u UU N... 1 2 3 4 a b c conflict\n? untracked.txt\n! ignored\n";
        let s = parse_status(out);
        assert_eq!(
            s,
            GitState {
                branch: Some("feature".into()),
                upstream: Some("origin/feature".into()),
                ahead: 2,
                behind: 1,
                changed: 4,
            }
        );
        assert_eq!(s.summary(), "feature ↑2 ↓1, 4 changed");
        let fresh = parse_status("# branch.oid (initial)\n# branch.head new\n");
        assert_eq!(fresh.summary(), "new (no upstream), clean");
        let detached = parse_status("# branch.head (detached)\n");
        assert_eq!(detached.branch, None);
    }
}
