//! What may be done to a project right now, and if not, why: these grey
//! the keys in the footer and are the reason shown when one is pressed.

use crate::model::intent::{self, Intent};
use crate::store::projects::ProjectView;

pub fn intent_status_is_transition(v: &ProjectView) -> bool {
    use crate::model::ProjectStatus as P;
    matches!(
        v.project.status,
        P::Creating | P::Starting | P::Stopping | P::Terminating
    )
}

/// Why an intent is refused on `v` right now (the footer greys it and shows this).
/// Whether `a`/`v` may be pressed: to attach, or to be offered a start.
pub fn attach_or_start_allowed(v: Option<&ProjectView>) -> Result<(), String> {
    attach_allowed(v).or_else(|why| intent_allowed(v, Intent::Start).map_err(|_| why))
}

/// Attaching needs a running sandbox; otherwise say why and what to do.
pub fn attach_allowed(v: Option<&ProjectView>) -> Result<(), String> {
    let v = v.ok_or_else(|| "no project selected".to_string())?;
    let sandbox = v
        .resources
        .iter()
        .find(|r| r.kind == crate::store::resources::ResourceKind::Sandbox);
    match sandbox {
        Some(s) if s.status == crate::model::ResourceStatus::Running => Ok(()),
        Some(s) => Err(format!(
            "cannot attach: the sandbox is {}{}",
            s.status,
            if v.project.status == crate::model::ProjectStatus::Stopped {
                " (press s to start it)"
            } else {
                ""
            }
        )),
        None => Err("cannot attach: this project has no sandbox".into()),
    }
}

pub fn intent_allowed(v: Option<&ProjectView>, intent: Intent) -> Result<(), String> {
    let v = v.ok_or_else(|| "no project selected".to_string())?;
    member_allowed(Some(v), &intent.to_string())?;
    intent::check(intent, v.project.status).map_err(|e| e.to_string())
}

/// Whether the user's role lets them do `what` (env, logs, an intent) to
/// `v`: a team's viewer may not. The console decides again; this greys the
/// key with the same reason.
pub fn member_allowed(v: Option<&ProjectView>, what: &str) -> Result<(), String> {
    let v = v.ok_or_else(|| "no project selected".to_string())?;
    match v.team_role {
        Some(role) if role < crate::model::team::TeamRole::Member => Err(format!(
            "you are a {role} of this team: {what} needs the member role"
        )),
        _ => Ok(()),
    }
}
