//! Whose a new project is: the create dialog's owner field, "me" or one of
//! the teams the user may create in (loaded when the dialog opens; until
//! then, and for a user in no team, only "me").

/// The owner field's choices and the one chosen (0: the user themself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerChoice {
    /// Teams the user may create projects in, by name.
    teams: Vec<String>,
    /// Index into `["me", teams…]`.
    chosen: usize,
    /// Whether the teams have been loaded.
    loaded: bool,
}

impl OwnerChoice {
    /// The teams arrived: the choice starts again at "me".
    pub fn set_teams(&mut self, teams: Vec<String>) {
        self.teams = teams;
        self.chosen = 0;
        self.loaded = true;
    }

    /// Whether there is anything to choose besides "me".
    pub fn has_teams(&self) -> bool {
        !self.teams.is_empty()
    }

    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// The chosen team; `None`: the user's own project.
    pub fn team(&self) -> Option<&str> {
        self.chosen
            .checked_sub(1)
            .and_then(|i| self.teams.get(i))
            .map(String::as_str)
    }

    /// How the field reads: `me`, or the team's name.
    pub fn label(&self) -> &str {
        self.team().unwrap_or("me")
    }

    /// The next choice (→), wrapping around.
    pub fn next(&mut self) {
        self.chosen = (self.chosen + 1) % (self.teams.len() + 1);
    }

    /// The previous choice (←), wrapping around.
    pub fn prev(&mut self) {
        let n = self.teams.len() + 1;
        self.chosen = (self.chosen + n - 1) % n;
    }

    /// Where the project will be named, for the dialog: `acme/NAME`.
    pub fn qualified(&self, name: &str) -> String {
        match self.team() {
            Some(t) => crate::model::team::qualified(t, name),
            None => name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_cycle_through_me_and_the_teams() {
        let mut o = OwnerChoice::default();
        assert!(!o.has_teams());
        o.next();
        assert_eq!(o.team(), None, "alone, me is the only choice");
        o.set_teams(vec!["acme".into(), "zeta".into()]);
        assert_eq!(o.label(), "me");
        o.next();
        assert_eq!(o.team(), Some("acme"));
        o.next();
        assert_eq!(o.team(), Some("zeta"));
        o.next();
        assert_eq!(o.team(), None);
        o.prev();
        assert_eq!(o.team(), Some("zeta"));
        assert_eq!(o.qualified("blog"), "zeta/blog");
        o.set_teams(vec!["acme".into()]);
        assert_eq!(o.label(), "me", "new teams start again at me");
    }
}
