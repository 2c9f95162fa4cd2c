//! Teams from a member's side: listing a team's members, and (owners)
//! adding, changing and removing them. Admins manage teams through the
//! operator's console.

use crate::model::team::TeamRole;
use crate::store::teams::Member;

use super::{Action, ConsoleResult, OperatorConsole, UserConsole};

impl UserConsole {
    /// The teams the actor may create projects in (where their role is at
    /// least member), by name: what the create dialog offers besides "me".
    pub async fn creatable_teams(&self) -> ConsoleResult<Vec<String>> {
        self.gated(Action::ListTeams, async {
            let needed = Action::CreateProject {
                name: "",
                team: Some(""),
            }
            .team_role_needed();
            let mut teams: Vec<String> = self
                .store()
                .teams_of(self.user_id())
                .await?
                .into_iter()
                .filter(|m| m.role >= needed)
                .map(|m| m.team)
                .collect();
            teams.sort();
            Ok(teams)
        })
        .await
    }

    pub async fn team_members(&self, team: &str) -> ConsoleResult<Vec<Member>> {
        self.gated_in(Action::TeamMembers { team }, |s| async move {
            Ok(self.store().team_members(s.owner).await?)
        })
        .await
    }

    /// Adds `user` to the team with `role`, or changes their role.
    pub async fn team_add(&self, team: &str, user: &str, role: TeamRole) -> ConsoleResult<()> {
        self.gated_in(Action::TeamAdd { team, user, role }, |s| async move {
            Ok(self.store().set_member(s.owner, user, role).await?)
        })
        .await
    }

    /// Removes `user` from the team; their open attaches to its projects
    /// are detached (see `sessions::watch_membership`).
    pub async fn team_remove(&self, team: &str, user: &str) -> ConsoleResult<()> {
        self.gated_in(Action::TeamRemove { team, user }, |s| async move {
            Ok(self.store().remove_member(s.owner, user).await?)
        })
        .await
    }
}

impl OperatorConsole {
    pub async fn create_team(&self, name: &str) -> ConsoleResult<crate::store::teams::Team> {
        let team = self.store().create_team(name).await?;
        self.record(Some(team.id), &team.name, "team.create", None, "")
            .await;
        Ok(team)
    }

    pub async fn delete_team(&self, name: &str) -> ConsoleResult<()> {
        self.store().delete_team(name).await?;
        self.record(None, name, "team.delete", None, "").await;
        Ok(())
    }

    pub async fn teams(&self) -> ConsoleResult<Vec<crate::store::teams::Team>> {
        Ok(self.store().list_teams().await?)
    }

    /// Adds a member or changes their role (`kiln team add|role`).
    pub async fn set_team_member(
        &self,
        team: &str,
        user: &str,
        role: TeamRole,
    ) -> ConsoleResult<()> {
        let id = self.store().require_team(team).await?;
        self.store().set_member(id, user, role).await?;
        let detail = format!("{user} as {role}");
        self.record(Some(id), team, "team.add", None, &detail).await;
        Ok(())
    }

    pub async fn remove_team_member(&self, team: &str, user: &str) -> ConsoleResult<()> {
        let id = self.store().require_team(team).await?;
        self.store().remove_member(id, user).await?;
        self.record(Some(id), team, "team.remove", None, user).await;
        Ok(())
    }

    pub async fn team_members(&self, team: &str) -> ConsoleResult<Vec<Member>> {
        let id = self.store().require_team(team).await?;
        Ok(self.store().team_members(id).await?)
    }
}
