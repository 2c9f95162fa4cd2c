//! `templates [list] | show T | save T --from PROJECT | delete T`.

use super::Failure;
use super::args::TemplatesVerb;
use super::render::{cell, json, safe};
use crate::console::UserConsole;

type Out = Result<String, Failure>;

pub(super) async fn templates(
    c: &UserConsole,
    action: TemplatesVerb,
    name: Option<&str>,
    from: Option<&str>,
    as_json: bool,
) -> Out {
    match (action, name, from) {
        (TemplatesVerb::List, None, None) => {
            let list = c.templates().await?;
            Ok(if as_json {
                json(&list)
            } else {
                let mut out = format!(
                    "{} {} {}\n",
                    cell("NAME", 20),
                    cell("FROM", 9),
                    "DESCRIPTION"
                );
                for t in &list {
                    out.push_str(&format!(
                        "{} {} {}\n",
                        cell(&t.name, 20),
                        cell(t.scope.as_str(), 9),
                        safe(&t.description, 100)
                    ));
                }
                out
            })
        }
        (TemplatesVerb::Show, Some(name), None) => {
            let (scope, t) = c.template(name).await?;
            Ok(if as_json {
                json(&serde_json::json!({"scope": scope, "template": t}))
            } else {
                format!(
                    "# {} template\n{}",
                    scope.as_str(),
                    crate::model::template::to_toml(&t)
                )
            })
        }
        (TemplatesVerb::Save, Some(name), Some(project)) => {
            let t = c.save_template(name, project).await?;
            Ok(if as_json {
                json(&t)
            } else {
                let secrets: Vec<&str> = t
                    .env
                    .iter()
                    .filter(|v| v.secret)
                    .map(|v| v.key.as_str())
                    .collect();
                let mut out = format!(
                    "saved template {} from {}; `create NAME --template {}` uses it\n",
                    t.name,
                    safe(project, 100),
                    t.name
                );
                if !secrets.is_empty() {
                    out.push_str(&format!(
                        "secret variables are kept by name only: {}\n",
                        secrets.join(", ")
                    ));
                }
                out
            })
        }
        (TemplatesVerb::Delete, Some(name), None) => {
            c.delete_template(name).await?;
            Ok(if as_json {
                json(&serde_json::json!({"template": name, "deleted": true}))
            } else {
                format!("deleted template {}\n", safe(name, 40))
            })
        }
        (TemplatesVerb::List, ..) => Err(Failure::usage("`templates` takes nothing more")),
        (TemplatesVerb::Save, ..) => Err(Failure::usage(
            "expected `templates save NAME --from PROJECT`",
        )),
        (TemplatesVerb::Show, ..) => Err(Failure::usage("expected `templates show NAME`")),
        (TemplatesVerb::Delete, ..) => Err(Failure::usage("expected `templates delete NAME`")),
    }
}
