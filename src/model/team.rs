//! Teams: the roles a member holds, and how a team's project is named on
//! the command line: `TEAM/NAME`. A name whose part before the first `/` is
//! a team the actor belongs to addresses that team's project; any other
//! name is the actor's own (so a non-member's `acme/x` is simply a project
//! of theirs that does not exist, as it should be).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    /// Sees the team's projects, their events and sessions; attaches read-only.
    Viewer,
    /// Everything on the team's projects: create, start, stop, delete,
    /// attach, env.
    Member,
    /// A member who also manages the team's members.
    Owner,
}

impl TeamRole {
    pub const ALL: [TeamRole; 3] = [TeamRole::Owner, TeamRole::Member, TeamRole::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Viewer => "viewer",
            TeamRole::Member => "member",
            TeamRole::Owner => "owner",
        }
    }
}

impl fmt::Display for TeamRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a team role is owner, member or viewer")]
pub struct BadRole;

impl FromStr for TeamRole {
    type Err = BadRole;
    fn from_str(s: &str) -> Result<Self, BadRole> {
        match s.trim() {
            "owner" => Ok(TeamRole::Owner),
            "member" => Ok(TeamRole::Member),
            "viewer" => Ok(TeamRole::Viewer),
            _ => Err(BadRole),
        }
    }
}

/// `TEAM/NAME` split at the first `/`, when both parts are non-empty.
pub fn split_ref(name: &str) -> Option<(&str, &str)> {
    let (team, project) = name.trim().split_once('/')?;
    (!team.is_empty() && !project.trim().is_empty()).then_some((team, project))
}

/// How a team's project is shown and addressed: `TEAM/NAME`.
pub fn qualified(team: &str, project: &str) -> String {
    format!("{team}/{project}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_references() {
        assert_eq!(split_ref("acme/blog"), Some(("acme", "blog")));
        assert_eq!(split_ref(" acme/my blog "), Some(("acme", "my blog")));
        assert_eq!(split_ref("acme/a/b"), Some(("acme", "a/b")));
        assert_eq!(split_ref("blog"), None);
        assert_eq!(split_ref("/blog"), None);
        assert_eq!(split_ref("acme/"), None);
        assert_eq!(qualified("acme", "blog"), "acme/blog");
        for r in TeamRole::ALL {
            assert_eq!(r.as_str().parse::<TeamRole>(), Ok(r));
        }
        assert_eq!("admin".parse::<TeamRole>(), Err(BadRole));
        assert!(TeamRole::Owner > TeamRole::Member && TeamRole::Member > TeamRole::Viewer);
    }
}
