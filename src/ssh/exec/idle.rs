//! The idle exec commands: `idle NAME [--after D|off|default]` and
//! `extend NAME [--for D]`. Each calls one console method and renders it.

use chrono::Utc;
use serde::Serialize;

use super::Failure;
use super::render::{json, safe};
use crate::console::UserConsole;
use crate::model::idle::{IdleSetting, format_duration, parse_duration, time_left};
use crate::store::idle::IdleState;

type Out = Result<String, Failure>;

fn describe(name: &str, s: &IdleState) -> String {
    let now = Utc::now();
    let name = safe(name.trim(), 100);
    let mut out = match s.stop_after_secs {
        None => format!(
            "{name}: never stopped for being idle (setting: {})\n",
            s.setting
        ),
        Some(secs) => format!(
            "{name}: stopped after {} without activity (setting: {})\n",
            format_duration(std::time::Duration::from_secs(secs)),
            s.setting
        ),
    };
    if let Some(at) = s.last_active_at {
        out.push_str(&format!(
            "last activity: {} ({} ago)\n",
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            crate::model::agent::short_duration((now - at).num_seconds())
        ));
    }
    if let Some(at) = s.stop_at {
        out.push_str(&format!(
            "idle stop coming: at {} (in {}); `extend {name}` postpones it\n",
            at.format("%H:%M:%S UTC"),
            time_left(now, at)
        ));
    } else if let Some(at) = s.due_at {
        out.push_str(&format!(
            "stops if unused until {} (in {})\n",
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            time_left(now, at)
        ));
    }
    out
}

pub(super) async fn idle(c: &UserConsole, name: &str, after: Option<&str>, as_json: bool) -> Out {
    let state = match after {
        None => c.idle_state(name).await?,
        Some(text) => {
            let Some(setting) = IdleSetting::parse(text) else {
                return Err(Failure::usage(format!(
                    "invalid --after {}: use a duration (90s, 30m, 8h, 2d), off or default",
                    safe(text, 30)
                )));
            };
            c.set_idle(name, setting).await?
        }
    };
    Ok(if as_json {
        json(&state)
    } else {
        describe(name, &state)
    })
}

#[derive(Serialize)]
struct ExtendJson {
    project: String,
    until: String,
}

pub(super) async fn extend(c: &UserConsole, name: &str, for_: Option<&str>, as_json: bool) -> Out {
    let asked = match for_ {
        None => None,
        Some(text) => Some(parse_duration(text).ok_or_else(|| {
            Failure::usage(format!(
                "invalid --for {}: use a duration such as 90s, 30m, 8h or 2d",
                safe(text, 30)
            ))
        })?),
    };
    let until = c.extend_idle(name, asked).await?;
    Ok(if as_json {
        json(&ExtendJson {
            project: name.trim().to_string(),
            until: until.to_rfc3339(),
        })
    } else {
        format!(
            "{} keeps running at least until {} (in {}) unless stopped\n",
            safe(name.trim(), 100),
            until.format("%Y-%m-%d %H:%M:%S UTC"),
            time_left(Utc::now(), until)
        )
    })
}
