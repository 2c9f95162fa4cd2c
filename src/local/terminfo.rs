//! Whether this machine has a terminfo entry for a terminal type: the local
//! driver's tmux clients run here, and tmux refuses a terminal it cannot
//! look up. Searches where ncurses does, in its order.

use std::path::{Path, PathBuf};

/// Directories ncurses searches for compiled terminfo entries, given the
/// process's environment.
fn search_dirs(env: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = env("TERMINFO").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
        dirs.push(Path::new(&home).join(".terminfo"));
    }
    if let Some(list) = env("TERMINFO_DIRS") {
        dirs.extend(list.split(':').filter(|d| !d.is_empty()).map(PathBuf::from));
    }
    dirs.extend(
        [
            "/etc/terminfo",
            "/lib/terminfo",
            "/usr/share/terminfo",
            "/usr/lib/terminfo",
        ]
        .map(PathBuf::from),
    );
    dirs
}

/// Whether an entry for `term` exists in one of `dirs`: under its first
/// letter (Linux) or that letter's hex code (macOS, case-insensitive file
/// systems). `term` must already be a plain name
/// ([`crate::model::terminal::is_plain_name`]), so it cannot leave the dir.
fn has_entry(dirs: &[PathBuf], term: &str) -> bool {
    let Some(first) = term.chars().next() else {
        return false;
    };
    let subdirs = [first.to_string(), format!("{:02x}", first as u32)];
    dirs.iter()
        .any(|d| subdirs.iter().any(|s| d.join(s).join(term).is_file()))
}

/// Whether tmux on this machine can look `term` up.
pub fn known(term: &str) -> bool {
    crate::model::terminal::is_plain_name(term)
        && has_entry(&search_dirs(|k| std::env::var(k).ok()), term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_order_follows_ncurses() {
        let env = |k: &str| match k {
            "TERMINFO" => Some("/t".to_string()),
            "HOME" => Some("/home/a".to_string()),
            "TERMINFO_DIRS" => Some("/x::/y".to_string()),
            _ => None,
        };
        let dirs = search_dirs(env);
        let shown: Vec<&str> = dirs.iter().map(|d| d.to_str().unwrap()).collect();
        assert_eq!(
            &shown[..4],
            ["/t", "/home/a/.terminfo", "/x", "/y"].as_slice()
        );
        assert!(shown.contains(&"/usr/share/terminfo"));
        assert_eq!(search_dirs(|_| None).len(), 4);
    }

    #[test]
    fn entries_under_the_letter_or_its_hex_code() {
        let root = std::env::temp_dir().join(format!("kiln-terminfo-{}", std::process::id()));
        let (linux, mac) = (root.join("linux"), root.join("mac"));
        std::fs::create_dir_all(linux.join("k")).unwrap();
        std::fs::create_dir_all(mac.join("6b")).unwrap();
        std::fs::write(linux.join("k").join("kiln-a"), b"entry").unwrap();
        std::fs::write(mac.join("6b").join("kiln-b"), b"entry").unwrap();
        // A directory of that name is not an entry.
        std::fs::create_dir_all(linux.join("k").join("kiln-dir")).unwrap();
        let dirs = vec![root.join("missing"), linux, mac];
        assert!(has_entry(&dirs, "kiln-a"));
        assert!(has_entry(&dirs, "kiln-b"));
        assert!(!has_entry(&dirs, "kiln-c"));
        assert!(!has_entry(&dirs, "kiln-dir"));
        assert!(!has_entry(&dirs, ""));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn this_machine_knows_the_fallback() {
        // tmux itself needs it: the dashboard pane's clients run with it.
        assert!(known(crate::model::terminal::FALLBACK));
        assert!(!known("kiln-no-such-terminal"));
        assert!(!known("../x/xterm"));
    }
}
