//! What the host provides: the PostgreSQL server programs, and, when Kiln
//! runs as root, the `postgres` user and `runuser` to run them as that user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{EmbeddedPgError, SYSTEM_PG_USER};

/// The PostgreSQL server programs, all from one installation directory so that
/// initdb and the server always agree on the on-disk format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub bin_dir: PathBuf,
    pub initdb: PathBuf,
    pub pg_ctl: PathBuf,
    pub postgres: PathBuf,
}

impl PgBinaries {
    fn in_dir(dir: &Path) -> Option<Self> {
        let bins = PgBinaries {
            bin_dir: dir.to_path_buf(),
            initdb: dir.join("initdb"),
            pg_ctl: dir.join("pg_ctl"),
            postgres: dir.join("postgres"),
        };
        [&bins.initdb, &bins.pg_ctl, &bins.postgres]
            .iter()
            .all(|p| is_executable(p))
            .then_some(bins)
    }
}

/// Finds initdb/pg_ctl/postgres: the first PATH directory holding all three,
/// else the newest `/usr/lib/postgresql/<version>/bin` (Debian/Ubuntu keep
/// the server programs off PATH).
pub(super) fn locate_binaries() -> Result<PgBinaries, EmbeddedPgError> {
    // Every initdb on PATH, in PATH order: the first whose directory also
    // holds pg_ctl and postgres wins.
    if let Ok(initdbs) = which::which_all("initdb") {
        for initdb in initdbs {
            if let Some(bins) = initdb.parent().and_then(PgBinaries::in_dir) {
                return Ok(bins);
            }
        }
    }
    let mut versioned: Vec<(Vec<u64>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            // "16" or "9.6": compare numerically so 16 beats 9.6.
            let version = name
                .split('.')
                .map(|part| part.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort();
    versioned
        .iter()
        .rev()
        .find_map(|(_, dir)| PgBinaries::in_dir(dir))
        .ok_or(EmbeddedPgError::BinariesNotFound)
}

/// The user the server runs as when Kiln runs as root.
#[derive(Debug, Clone)]
pub(super) struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub runuser: PathBuf,
}

pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Where `runuser` is looked for after PATH: root's usual directories, which
/// a service's PATH may lack.
const SYSTEM_DIRS: &str = "/usr/sbin:/sbin:/usr/bin:/bin";

/// Looks up the `postgres` system user and `runuser`, needed when running as root.
pub(super) fn postgres_system_user() -> Result<RunAs, EmbeddedPgError> {
    let (uid, gid) = lookup_user(SYSTEM_PG_USER).ok_or(EmbeddedPgError::RootWithoutPostgresUser)?;
    let runuser = which::which("runuser")
        .or_else(|_| which::which_in("runuser", Some(SYSTEM_DIRS), "/"))
        .map_err(|_| EmbeddedPgError::RunuserNotFound)?;
    Ok(RunAs {
        name: SYSTEM_PG_USER.to_string(),
        uid,
        gid,
        runuser,
    })
}

/// (uid, gid) of a user, from the system's user database.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let user = nix::unistd::User::from_name(name).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
