//! The idle policy as users reach it: a project's idle state, its own idle
//! time (within the server's maximum), and postponing a coming stop. The
//! dashboard's key, `ssh … idle`/`extend` and `kiln project idle`/`extend`
//! all come here.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::idle::{IdleError, IdleSetting};
use crate::store::idle::IdleState;

use super::{Action, ConsoleError, ConsoleResult, UserConsole};

fn refused(field: &'static str, e: IdleError) -> ConsoleError {
    match e {
        IdleError::PolicyOff | IdleError::NotStopped => ConsoleError::refused(e.to_string()),
        IdleError::TooShort | IdleError::TooLong(_) => ConsoleError::invalid(field, e.to_string()),
    }
}

impl UserConsole {
    /// A project's idle setting, when it stops if unused, and any warning out.
    pub async fn idle_state(&self, project: &str) -> ConsoleResult<IdleState> {
        self.gated_in(Action::ShowIdle { project }, |s| async move {
            let view = self.store().find_project(s.owner, &s.name).await?;
            Ok(self
                .store()
                .idle_state(s.owner, view.project.id, &self.console.idle)
                .await?)
        })
        .await
    }

    /// Sets a project's own idle time (`Default`: the server's; `Off`:
    /// never stopped for being idle); bad input changes nothing.
    pub async fn set_idle(&self, project: &str, setting: IdleSetting) -> ConsoleResult<IdleState> {
        self.gated_in(Action::SetIdle { project }, |s| async move {
            let setting = self
                .console
                .idle
                .check(setting)
                .map_err(|e| refused("--after", e))?;
            let store = self.store();
            let view = store.find_project(s.owner, &s.name).await?;
            store
                .set_idle_setting(s.owner, view.project.id, setting)
                .await?;
            Ok(store
                .idle_state(s.owner, view.project.id, &self.console.idle)
                .await?)
        })
        .await
    }

    /// Postpones a running project's idle stop by `asked` (else the
    /// default extension) from now, withdrawing any warning. Returns until
    /// when it is kept running at least.
    pub async fn extend_idle(
        &self,
        project: &str,
        asked: Option<Duration>,
    ) -> ConsoleResult<DateTime<Utc>> {
        self.gated_in(Action::ExtendIdle { project }, |s| async move {
            let store = self.store();
            let view = store.find_project(s.owner, &s.name).await?;
            let state = store
                .idle_state(s.owner, view.project.id, &self.console.idle)
                .await?;
            let by = self
                .console
                .idle
                .extension(state.own, asked)
                .map_err(|e| refused("--for", e))?;
            store
                .extend_idle(s.owner, view.project.id, by, self.actor.event_name())
                .await?
                .ok_or_else(|| {
                    ConsoleError::refused(format!(
                        "{} is not running: there is no idle stop to postpone",
                        s.shown(&view.project.name)
                    ))
                })
        })
        .await
    }
}
