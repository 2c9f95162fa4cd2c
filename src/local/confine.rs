//! Confining a local sandbox (issue 18 §1): each sandbox's tmux server runs
//! under bubblewrap in its own user, mount, PID, IPC and UTS namespaces,
//! seeing a read-only system, its own `/tmp`, its own working directory and
//! its own run directory (where its tmux socket lives), and nothing of
//! Kiln's data directory, other sandboxes, Kiln's process or environment.
//! Every shell and program of the sandbox is a child of that server, so the
//! tmux command prompt, new windows and `run-shell` are confined too.
//!
//! When Kiln runs as root, the server is started under an unprivileged host
//! uid ([`SandboxUser`]): a user namespace created by root maps the sandbox
//! to host root otherwise. Kiln's own tmux clients then run under that uid
//! as well, because tmux only lets its owner (and root *in its namespace*,
//! which host root is not) connect.
//!
//! Deciding the bwrap command line is pure ([`bwrap_args`]); running it is
//! the sandbox driver's job.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where the sandbox's run directory appears inside the sandbox; its tmux
/// socket and config live there.
pub(crate) const INSIDE_RUN_DIR: &str = "/run/kiln";

/// Where Kiln's own binary appears inside a sandbox (for `kiln hook`): under
/// `/run`, a tmpfs of the sandbox's own (its root is read-only).
pub(crate) const INSIDE_KILN_BINARY: &str = "/run/kiln-bin/kiln";

/// The host uid and gid sandboxes run as when Kiln runs as root. Outside
/// the range Debian hands to people (1000–59999) and to packages
/// (60000–63999 is reserved for the system administrator; 64000 is the
/// first of the dynamic block Kiln claims for itself).
pub const DEFAULT_SANDBOX_UID: u32 = 64000;

/// The host identity a sandbox runs under when Kiln itself is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
}

/// How sandboxes on this host are isolated from each other and from Kiln.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Under bubblewrap, run as `user` on the host when Kiln is root.
    Bubblewrap {
        binary: PathBuf,
        user: Option<SandboxUser>,
        system: Vec<SystemEntry>,
        /// slirp4netns, which gives each sandbox a network of its own; without
        /// it sandboxes share the host's network (and Kiln says so).
        network: Option<PathBuf>,
    },
    /// Not confined, and why: every sandbox runs as Kiln's own user and
    /// can read Kiln's files. Only for trusted single-user hosts.
    Unconfined { reason: String },
}

impl Confinement {
    pub fn is_confined(&self) -> bool {
        matches!(self, Self::Bubblewrap { .. })
    }

    /// Whether each sandbox gets a network namespace of its own.
    pub fn has_own_network(&self) -> bool {
        matches!(
            self,
            Self::Bubblewrap {
                network: Some(_),
                ..
            }
        )
    }

    /// The host identity Kiln's tmux clients and the sandbox run under, if
    /// it is not Kiln's own.
    pub(crate) fn user(&self) -> Option<SandboxUser> {
        match self {
            Self::Bubblewrap { user, .. } => *user,
            Self::Unconfined { .. } => None,
        }
    }

    /// A few words for the dashboard's header.
    pub fn headline(&self) -> &'static str {
        match self {
            Self::Bubblewrap {
                network: Some(_), ..
            } => "sandboxes confined (bubblewrap, own network)",
            Self::Bubblewrap { network: None, .. } => {
                "sandboxes confined (bubblewrap), network NOT isolated"
            }
            Self::Unconfined { .. } => "sandboxes NOT confined: trusted single user only",
        }
    }

    /// One line for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Bubblewrap {
                user,
                binary,
                network,
                ..
            } => {
                let mut line = format!("sandboxes are confined by {}", binary.display());
                if let Some(u) = user {
                    line.push_str(&format!(" and run as host uid {}", u.uid));
                }
                match network {
                    Some(slirp) => line.push_str(&format!(
                        "; each has its own network ({}), with port {} forwarded from 127.0.0.1",
                        slirp.display(),
                        super::network::APP_PORT
                    )),
                    None => line.push_str(
                        "; their NETWORK IS NOT ISOLATED (slirp4netns is not installed, or \
                         /dev/net/tun is not usable by Kiln's user: apt install slirp4netns): \
                         they can reach the host's loopback services",
                    ),
                }
                line
            }
            Self::Unconfined { reason } => format!(
                "sandboxes are NOT confined ({reason}): every sandbox can read Kiln's files and \
                 the other sandboxes; use this host for one trusted user only"
            ),
        }
    }
}

/// One top-level entry of the host's system tree a sandbox sees read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemEntry {
    /// A directory, bound read-only at the same path.
    Dir(PathBuf),
    /// A symbolic link (`/bin -> usr/bin` on merged-/usr systems), recreated.
    Symlink { path: PathBuf, target: PathBuf },
}

/// The system directories a sandbox needs to run programs: `/usr`, the
/// library and binary links, and `/etc` (with Kiln's own directory hidden).
const SYSTEM_PATHS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];

/// System directories hidden behind an empty tmpfs:
/// - under `/etc`, Kiln's own files (its config may sit there);
/// - libutempter's helper, a setgid `utmp` program tmux runs and waits for
///   at every new pane. A sandbox gains no privileges, so in there it only
///   ever fails, after an exec that each session start paid for; hidden,
///   the exec fails at once, and the sandbox has one setgid program less.
const HIDDEN: &[&str] = &[
    "/etc/kiln",
    "/usr/lib/x86_64-linux-gnu/utempter",
    "/usr/lib/aarch64-linux-gnu/utempter",
    "/usr/lib/utempter",
    "/usr/libexec/utempter",
];

/// Reads what [`SYSTEM_PATHS`] are on this host.
pub(crate) fn read_system() -> Vec<SystemEntry> {
    SYSTEM_PATHS
        .iter()
        .filter_map(|p| {
            let path = PathBuf::from(p);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                Some(SystemEntry::Symlink { path, target })
            } else if meta.is_dir() {
                Some(SystemEntry::Dir(path))
            } else {
                None
            }
        })
        .collect()
}

/// What one sandbox's confinement binds in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxMounts<'a> {
    /// Its working directory, read-write, at the same path as on the host
    /// (so paths Kiln hands to tmux mean the same inside and out).
    pub(crate) sandbox_dir: &'a Path,
    /// Its run directory (tmux socket and config), read-write, at
    /// [`INSIDE_RUN_DIR`].
    pub(crate) run_dir: &'a Path,
    /// Extra directories it may read (its database's socket directory).
    pub(crate) read_only: &'a [PathBuf],
    /// Its host name.
    pub(crate) hostname: &'a str,
    /// With a network of its own: the `resolv.conf` naming its resolver.
    pub(crate) own_network: Option<&'a Path>,
    /// `passwd` and `group` files naming the sandbox's user, bound over
    /// the host's (tools such as git and ssh refuse a nameless uid).
    pub(crate) identity: Option<(&'a Path, &'a Path)>,
    /// Kiln's own binary, read-only at [`INSIDE_KILN_BINARY`], so Claude
    /// Code's hooks can run `kiln hook` (see `hooks`).
    pub(crate) kiln_binary: Option<&'a Path>,
}

/// The `/etc/passwd` and `/etc/group` a sandbox sees: root, nobody and its
/// own user, whose home is its working directory. Nothing of the host's
/// accounts.
pub(crate) fn identity_files(uid: u32, gid: u32, home: &Path) -> (String, String) {
    let passwd = format!(
        "root:x:0:0:root:/root:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
         sandbox:x:{uid}:{gid}:Kiln sandbox:{}:/bin/bash\n",
        home.display()
    );
    let group = format!("root:x:0:\nnogroup:x:65534:\nsandbox:x:{gid}:\n");
    (passwd, group)
}

/// The bwrap options that confine one sandbox (the caller adds its own,
/// then `--` and the command).
/// The uid inside is the host uid the server runs as, so file ownership
/// reads the same on both sides.
pub(crate) fn bwrap_args(
    system: &[SystemEntry],
    mounts: &SandboxMounts<'_>,
    inside_uid: u32,
    inside_gid: u32,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&std::ffi::OsStr]| a.extend(parts.iter().map(|p| p.to_os_string()));
    let uid = inside_uid.to_string();
    let gid = inside_gid.to_string();
    push(&[
        "--unshare-user".as_ref(),
        "--uid".as_ref(),
        uid.as_ref(),
        "--gid".as_ref(),
        gid.as_ref(),
        "--unshare-pid".as_ref(),
        "--unshare-ipc".as_ref(),
        "--unshare-uts".as_ref(),
        "--unshare-cgroup-try".as_ref(),
        "--hostname".as_ref(),
        mounts.hostname.as_ref(),
        // No controlling terminal shared with Kiln: TIOCSTI cannot type
        // into anything outside.
        "--new-session".as_ref(),
        // Nothing the sandbox runs may gain privileges (setuid binaries).
        "--cap-drop".as_ref(),
        "ALL".as_ref(),
    ]);
    for entry in system {
        match entry {
            SystemEntry::Dir(p) => {
                push(&["--ro-bind".as_ref(), p.as_os_str(), p.as_os_str()]);
            }
            SystemEntry::Symlink { path, target } => {
                push(&["--symlink".as_ref(), target.as_os_str(), path.as_os_str()]);
            }
        }
    }
    for hidden in HIDDEN {
        if system
            .iter()
            .any(|e| matches!(e, SystemEntry::Dir(p) if Path::new(hidden).starts_with(p)))
            && Path::new(hidden).is_dir()
        {
            push(&["--tmpfs".as_ref(), hidden.as_ref()]);
        }
    }
    push(&[
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
        "--tmpfs".as_ref(),
        "/run".as_ref(),
        "--tmpfs".as_ref(),
        "/home".as_ref(),
        "--tmpfs".as_ref(),
        "/root".as_ref(),
    ]);
    for dir in mounts.read_only {
        push(&["--ro-bind".as_ref(), dir.as_os_str(), dir.as_os_str()]);
    }
    push(&[
        "--bind".as_ref(),
        mounts.sandbox_dir.as_os_str(),
        mounts.sandbox_dir.as_os_str(),
        "--bind".as_ref(),
        mounts.run_dir.as_os_str(),
        INSIDE_RUN_DIR.as_ref(),
        "--chdir".as_ref(),
        mounts.sandbox_dir.as_os_str(),
    ]);
    if let Some((passwd, group)) = mounts.identity {
        push(&[
            "--ro-bind".as_ref(),
            passwd.as_os_str(),
            "/etc/passwd".as_ref(),
            "--ro-bind".as_ref(),
            group.as_os_str(),
            "/etc/group".as_ref(),
        ]);
    }
    if let Some(kiln) = mounts.kiln_binary {
        push(&[
            "--ro-bind".as_ref(),
            kiln.as_os_str(),
            INSIDE_KILN_BINARY.as_ref(),
        ]);
    }
    if let Some(resolv) = mounts.own_network {
        push(&[
            "--unshare-net".as_ref(),
            "--ro-bind".as_ref(),
            resolv.as_os_str(),
            "/etc/resolv.conf".as_ref(),
        ]);
    }
    a
}

/// Whether bubblewrap can confine a sandbox on this host, tried for real:
/// a kernel without unprivileged user namespaces, a container without
/// `CAP_SYS_ADMIN` or a missing binary all show up here, at start, rather
/// than as a sandbox that never starts.
pub(crate) fn detect(user: Option<SandboxUser>) -> Confinement {
    let binary = match which::which("bwrap") {
        Ok(b) => b,
        Err(_) => {
            return Confinement::Unconfined {
                reason: "bubblewrap (bwrap) is not installed: apt install bubblewrap".into(),
            };
        }
    };
    let system = read_system();
    let probe_dir = std::env::temp_dir();
    let mounts = SandboxMounts {
        sandbox_dir: &probe_dir,
        run_dir: &probe_dir,
        read_only: &[],
        hostname: "kiln-probe",
        own_network: None,
        identity: None,
        kiln_binary: None,
    };
    let (uid, gid) = match user {
        Some(u) => (u.uid, u.gid),
        None => (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ),
    };
    let mut cmd = std::process::Command::new(&binary);
    cmd.args(bwrap_args(&system, &mounts, uid, gid))
        .arg("--")
        .arg("true")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(u) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(u.uid).gid(u.gid);
    }
    match cmd.output() {
        Ok(out) if out.status.success() => Confinement::Bubblewrap {
            binary,
            user,
            system,
            network: which::which("slirp4netns")
                .ok()
                .filter(|_| super::network::tun_usable()),
        },
        Ok(out) => Confinement::Unconfined {
            reason: format!(
                "{} does not work here: {}",
                binary.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        },
        Err(e) => Confinement::Unconfined {
            reason: format!("cannot run {}: {e}", binary.display()),
        },
    }
}

/// The identity sandboxes run under when Kiln is root; none otherwise
/// (they run as Kiln's own user, separated by namespaces alone).
pub(crate) fn sandbox_user_for(kiln_uid: u32, configured: u32) -> Option<SandboxUser> {
    (kiln_uid == 0).then_some(SandboxUser {
        uid: configured,
        gid: configured,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[OsString]) -> Vec<String> {
        a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    fn window<'a>(args: &'a [String], flag: &str, n: usize) -> Vec<&'a [String]> {
        args.windows(n).filter(|w| w[0] == flag).collect()
    }

    #[test]
    fn a_sandbox_sees_its_own_directories_and_a_read_only_system() {
        let system = vec![
            SystemEntry::Dir("/usr".into()),
            SystemEntry::Symlink {
                path: "/bin".into(),
                target: "usr/bin".into(),
            },
            SystemEntry::Dir("/etc".into()),
        ];
        let db = PathBuf::from("/data/pg/tenant");
        let args = strings(&bwrap_args(
            &system,
            &SandboxMounts {
                sandbox_dir: Path::new("/data/sandboxes/a"),
                run_dir: Path::new("/data/run/a"),
                read_only: std::slice::from_ref(&db),
                hostname: "a",
                own_network: Some(Path::new("/data/run/a/resolv.conf")),
                identity: None,
                kiln_binary: Some(Path::new("/usr/local/bin/kiln")),
            },
            64000,
            64000,
        ));
        for ns in [
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--new-session",
        ] {
            assert!(args.iter().any(|a| a == ns), "{ns} missing: {args:?}");
        }
        let ro: Vec<_> = window(&args, "--ro-bind", 3)
            .into_iter()
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(
            ro,
            [
                "/usr",
                "/etc",
                "/data/pg/tenant",
                "/usr/local/bin/kiln",
                "/data/run/a/resolv.conf"
            ]
        );
        assert_eq!(
            window(&args, "--ro-bind", 3)[3][2],
            INSIDE_KILN_BINARY,
            "Kiln's binary is read-only at a path of its own"
        );
        assert!(args.iter().any(|a| a == "--unshare-net"));
        let rw: Vec<_> = window(&args, "--bind", 3)
            .into_iter()
            .map(|w| (w[1].as_str(), w[2].as_str()))
            .collect();
        assert_eq!(
            rw,
            [
                ("/data/sandboxes/a", "/data/sandboxes/a"),
                ("/data/run/a", INSIDE_RUN_DIR)
            ],
            "only its own directories are writable, and nothing else of the data directory \
             is bound"
        );
        assert_eq!(window(&args, "--symlink", 3)[0][1..], ["usr/bin", "/bin"]);
        let tmpfs: Vec<_> = window(&args, "--tmpfs", 2)
            .into_iter()
            .map(|w| w[1].as_str())
            .collect();
        for private in ["/tmp", "/run", "/home", "/root"] {
            assert!(tmpfs.contains(&private), "{private} is not private");
        }
        // Hidden where this host has it (under the bound `/usr`).
        let utempter = "/usr/lib/x86_64-linux-gnu/utempter";
        if Path::new(utempter).is_dir() {
            assert!(tmpfs.contains(&utempter), "{tmpfs:?}");
        }
        assert_eq!(window(&args, "--uid", 2)[0][1], "64000");
        assert_eq!(window(&args, "--cap-drop", 2)[0][1], "ALL");
    }

    #[test]
    fn the_sandbox_user_has_a_name_and_a_home_and_the_host_accounts_are_hidden() {
        let (passwd, group) = identity_files(64000, 64000, Path::new("/d/sandboxes/a"));
        assert!(passwd.contains("sandbox:x:64000:64000:Kiln sandbox:/d/sandboxes/a:/bin/bash\n"));
        assert_eq!(passwd.lines().count(), 3);
        assert!(group.contains("sandbox:x:64000:\n"));
    }

    #[test]
    fn only_root_switches_sandboxes_to_another_host_user() {
        assert_eq!(
            sandbox_user_for(0, 64000),
            Some(SandboxUser {
                uid: 64000,
                gid: 64000
            })
        );
        assert_eq!(sandbox_user_for(1000, 64000), None);
    }

    #[test]
    fn unconfined_says_so_and_why() {
        let c = Confinement::Unconfined {
            reason: "bwrap missing".into(),
        };
        assert!(!c.is_confined());
        assert!(c.describe().contains("NOT confined (bwrap missing)"));
        assert_eq!(c.user(), None);
    }
}
