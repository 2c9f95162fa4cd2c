//! Each user's project list, loaded once per change for all of that user's
//! open dashboards on this server, and kept up to date by one task per user.
//!
//! Why not one load per dashboard: a user with many dashboards open (a wall
//! of terminals, a script that opens them) turned every change into as many
//! identical queries, all at once; the pool ran dry, loads timed out, and a
//! failed load left a dashboard stale until the next change (the soak of
//! `kiln bench faults`: 46 of 200 dashboards still drawing). Here a burst of
//! changes is one query whatever the number of dashboards, a failed load is
//! retried with backoff until it succeeds, and every dashboard is told the
//! list may be stale (and why) until then.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::console::UserConsole;
use crate::store::agents::AgentRow;
use crate::store::notify::{Change, ChangeFeed};
use crate::store::projects::ProjectView;

/// What a dashboard shows of its user's projects.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The newest list that loaded (`None`: none has yet).
    pub projects: Option<Arc<Vec<ProjectView>>>,
    /// The agent states of the user's sessions, read with the list
    /// (`None`: not read yet, or they could not be).
    pub agents: Option<Arc<Vec<AgentRow>>>,
    /// How many of the user's notifications are unread, counted with the
    /// list (`None`: not counted yet, or it could not be).
    pub unread: Option<i64>,
    /// Why `projects` may be out of date (the last load failed; it is
    /// being retried). `None` once a load succeeds.
    pub problem: Option<String>,
}

/// The first retry of a failed load waits this long, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The per-user lists of one server (cheap to clone).
#[derive(Clone)]
pub struct ProjectLists {
    feed: Arc<ChangeFeed>,
    users: Arc<Mutex<HashMap<Uuid, watch::Sender<Listing>>>>,
}

impl ProjectLists {
    pub fn new(feed: Arc<ChangeFeed>) -> Self {
        ProjectLists {
            feed,
            users: Arc::default(),
        }
    }

    /// Follows `console`'s user's list. The receiver sees the current list
    /// at once if there is one; the user's task starts with the first
    /// follower and ends when the last one is dropped.
    pub fn follow(&self, console: &UserConsole) -> watch::Receiver<Listing> {
        let user = console.user().id;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = users.get(&user) {
            let mut rx = tx.subscribe();
            if tx.borrow().projects.is_some() || tx.borrow().problem.is_some() {
                rx.mark_changed();
            }
            return rx;
        }
        let (tx, rx) = watch::channel(Listing::default());
        users.insert(user, tx.clone());
        // Subscribed under the lock: no change between this and the first
        // load goes unnoticed.
        let changes = self.feed.subscribe();
        tokio::spawn(keep_listed(
            console.clone(),
            tx,
            changes,
            self.users.clone(),
        ));
        rx
    }

    /// Users with a list being kept (for tests and status).
    pub fn users_followed(&self) -> usize {
        self.users.lock().map(|u| u.len()).unwrap_or(0)
    }
}

/// One user's task: load, publish, wait for a change that concerns the
/// user (or the retry of a failed load), again; until nobody follows.
async fn keep_listed(
    console: UserConsole,
    tx: watch::Sender<Listing>,
    mut changes: broadcast::Receiver<Change>,
    users: Arc<Mutex<HashMap<Uuid, watch::Sender<Listing>>>>,
) {
    let user = console.user().id;
    let mut retry = RETRY_FIRST;
    loop {
        let failed = match console.projects().await {
            Ok(list) => {
                retry = RETRY_FIRST;
                let agents = console.agents().await.ok().map(Arc::new);
                let unread = console.unread_notifications().await.ok();
                tx.send_replace(Listing {
                    projects: Some(Arc::new(list)),
                    agents,
                    unread,
                    problem: None,
                });
                false
            }
            Err(e) => {
                let problem = format!("{e} (retrying; the list may be out of date)");
                // Said once, not once per retry.
                tx.send_if_modified(|l| {
                    let new = l.problem.as_ref() != Some(&problem);
                    l.problem = Some(problem);
                    new
                });
                true
            }
        };
        let listed: HashSet<Uuid> = tx
            .borrow()
            .projects
            .iter()
            .flat_map(|p| p.iter().map(|v| v.project.id))
            .collect();
        let wait = async {
            if failed {
                tokio::time::sleep(retry).await;
                return true;
            }
            loop {
                match changes.recv().await {
                    Ok(c) if concerns(&c, user, &listed, |owner| console.concerns(owner)) => {
                        return true;
                    }
                    Ok(_) => {}
                    // Missed some: reload to be safe.
                    Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        let go_on = tokio::select! {
            go_on = wait => go_on,
            () = tx.closed() => false,
        };
        if failed {
            retry = (retry * 2).min(RETRY_MAX);
        }
        // A burst of changes is one reload.
        while changes.try_recv().is_ok() {}
        if !go_on || tx.is_closed() {
            let mut map = users.lock().unwrap_or_else(|p| p.into_inner());
            // Someone may have started following since: keep going for them.
            if tx.receiver_count() == 0 || !go_on {
                map.remove(&user);
                return;
            }
        }
    }
}

/// Whether a change may alter `user`'s list: their own rows (a team
/// membership of theirs included), a team's they are in (`in_team`), a
/// project on the list, or "everything" (the feed lost its connection).
fn concerns(
    change: &Change,
    user: Uuid,
    listed: &HashSet<Uuid>,
    in_team: impl Fn(Uuid) -> bool,
) -> bool {
    change.table == "*"
        || change.user_id == Some(user)
        || change.user_id.is_some_and(in_team)
        || change.project_id.is_some_and(|p| listed.contains(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(table: &str, user: Option<Uuid>, project: Option<Uuid>) -> Change {
        Change {
            table: table.into(),
            op: "UPDATE".into(),
            id: None,
            project_id: project,
            user_id: user,
        }
    }

    #[test]
    fn only_changes_that_can_alter_the_list_reload_it() {
        let (me, other, mine) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let team = Uuid::new_v4();
        let listed = HashSet::from([mine]);
        let in_team = |owner: Uuid| owner == team;
        let concerns = |c: &Change| concerns(c, me, &listed, in_team);
        assert!(concerns(&change("projects", Some(me), None)));
        assert!(concerns(&change("*", None, None)));
        assert!(concerns(&change("resources", None, Some(mine))));
        assert!(concerns(&change(
            "projects",
            Some(team),
            Some(Uuid::new_v4())
        )));
        assert!(!concerns(&change(
            "projects",
            Some(other),
            Some(Uuid::new_v4())
        )));
        assert!(!concerns(&change("resources", None, None)));
    }
}
