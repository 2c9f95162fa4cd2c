//! Templates as users and the operator see them: the built-in ones (files
//! shipped with Kiln, checked at start), global ones an admin added, and
//! each user's own (saved from one of their projects, seen by nobody else).
//! Creating a project from a template is `create_from` with `template` set.

use std::sync::Arc;

use serde::Serialize;

use crate::model::template::{self, Template, TemplateVar};
use crate::store::templates::StoredTemplate;

use super::operator::OperatorConsole;
use super::{Action, ConsoleError, ConsoleResult, UserConsole};

/// Where a template comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateScope {
    /// Shipped with Kiln (or from the operator's `templates.dir`).
    Builtin,
    /// Added by an admin for everyone.
    Global,
    /// The user's own.
    Yours,
}

impl TemplateScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateScope::Builtin => "built-in",
            TemplateScope::Global => "global",
            TemplateScope::Yours => "yours",
        }
    }
}

/// One template in a list: what the create dialog offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateInfo {
    pub name: String,
    pub description: String,
    pub scope: TemplateScope,
}

/// The templates every console starts from (built-in and the operator's
/// directory), checked at start.
pub type Catalog = Arc<Vec<Template>>;

/// The built-in templates alone (they are checked by a unit test and again
/// at start, so this never drops one silently in a released binary).
pub fn builtin_catalog() -> Catalog {
    Arc::new(template::builtins().unwrap_or_default())
}

fn stored(t: &StoredTemplate) -> Option<Template> {
    match template::parse(&t.body) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            // Stored only after the same check: a row that no longer parses
            // was made by another version; it is skipped, not fatal.
            tracing::warn!(template = %t.name, error = %e, "a stored template does not parse");
            None
        }
    }
}

impl UserConsole {
    /// Every template the actor may use: their own first (a name of theirs
    /// hides a global or built-in one of the same name), then global, then
    /// built-in.
    pub async fn templates(&self) -> ConsoleResult<Vec<TemplateInfo>> {
        self.gated(Action::ListTemplates, async {
            let rows = self.store().list_templates(self.user_id()).await?;
            let mut out: Vec<TemplateInfo> = Vec::new();
            let mut push = |name: &str, description: &str, scope| {
                if !out.iter().any(|t| t.name == name) {
                    out.push(TemplateInfo {
                        name: name.to_string(),
                        description: description.to_string(),
                        scope,
                    });
                }
            };
            for r in rows.iter().filter(|r| r.user_id.is_some()) {
                push(&r.name, &r.description, TemplateScope::Yours);
            }
            for r in rows.iter().filter(|r| r.user_id.is_none()) {
                push(&r.name, &r.description, TemplateScope::Global);
            }
            for t in self.console.templates.iter() {
                push(&t.name, &t.description, TemplateScope::Builtin);
            }
            Ok(out)
        })
        .await
    }

    /// One template the actor may use, by name.
    pub async fn template(&self, name: &str) -> ConsoleResult<(TemplateScope, Template)> {
        self.gated(Action::ShowTemplate { name }, self.find_template(name))
            .await
    }

    /// Finds a template without passing the gate (the caller did).
    pub(super) async fn find_template(
        &self,
        name: &str,
    ) -> ConsoleResult<(TemplateScope, Template)> {
        let name = name.trim();
        let rows = self.store().list_templates(self.user_id()).await?;
        for (scope, mine) in [(TemplateScope::Yours, true), (TemplateScope::Global, false)] {
            if let Some(t) = rows
                .iter()
                .find(|r| r.name == name && r.user_id.is_some() == mine)
                .and_then(stored)
            {
                return Ok((scope, t));
            }
        }
        if let Some(t) = self.console.templates.iter().find(|t| t.name == name) {
            return Ok((TemplateScope::Builtin, t.clone()));
        }
        Err(ConsoleError::NotFound(format!(
            "no such template: {} (`templates` lists them)",
            crate::model::naming::printable(name, 40)
        )))
    }

    /// Saves the actor's own template `name` from one of their projects:
    /// its description, session command, setup script, repository and
    /// branch, image and sizes on Kubernetes, and its variables (secret ones by name only: a template
    /// never holds a credential).
    pub async fn save_template(&self, name: &str, project: &str) -> ConsoleResult<Template> {
        let action = Action::SaveTemplate { name, project };
        self.gated_in(action, |s| async move {
            template::check_name(name).map_err(|e| ConsoleError::invalid("name", e.to_string()))?;
            let store = self.store();
            let view = store.find_project(s.owner, &s.name).await?;
            let env = store.list_env(s.owner, &view.project.slug).await?;
            let (command, setup, sizing) = store.project_recipe(view.project.id).await?;
            let p = &view.project;
            let t = Template {
                name: name.to_string(),
                description: p.description.clone(),
                command,
                env: env
                    .iter()
                    .map(|v| TemplateVar {
                        key: v.key.clone(),
                        value: (!v.is_secret).then(|| v.value.expose().clone()),
                        secret: v.is_secret,
                    })
                    .collect(),
                repo: p.git_repo.clone(),
                branch: p.git_branch.clone(),
                setup,
                kubernetes: (sizing != Default::default()).then_some(sizing),
            };
            let body = template::to_toml(&t);
            // The same check as any file: what is saved is what loads.
            let checked = template::parse(&body)
                .map_err(|e| ConsoleError::invalid("template", e.to_string()))?;
            store
                .insert_user_template(self.user_id(), name, &checked.description, &body)
                .await?;
            Ok(checked)
        })
        .await
    }

    /// Deletes one of the actor's own templates.
    pub async fn delete_template(&self, name: &str) -> ConsoleResult<()> {
        self.gated(Action::DeleteTemplate { name }, async {
            Ok(self
                .store()
                .delete_template(Some(self.user_id()), name.trim())
                .await?)
        })
        .await
    }
}

impl OperatorConsole {
    /// Adds (or replaces) a global template from a file's text, checked
    /// like a built-in one; a refusal names the field.
    pub async fn add_template(&self, text: &str) -> ConsoleResult<Template> {
        let t =
            template::parse(text).map_err(|e| ConsoleError::invalid("template", e.to_string()))?;
        if self.catalog().iter().any(|b| b.name == t.name) {
            return Err(ConsoleError::refused(format!(
                "{} is a built-in template's name; choose another",
                t.name
            )));
        }
        let body = template::to_toml(&t);
        self.store()
            .put_global_template(&t.name, &t.description, &body)
            .await?;
        self.record(None, "operator", "template.add", None, &t.name)
            .await;
        Ok(t)
    }

    /// Removes a global template.
    pub async fn remove_template(&self, name: &str) -> ConsoleResult<()> {
        self.store().delete_template(None, name.trim()).await?;
        self.record(None, "operator", "template.remove", None, name)
            .await;
        Ok(())
    }

    /// The built-in and global templates.
    pub async fn global_templates(&self) -> ConsoleResult<Vec<TemplateInfo>> {
        let rows = self.store().list_templates(uuid::Uuid::nil()).await?;
        let mut out: Vec<TemplateInfo> = rows
            .iter()
            .filter(|r| r.user_id.is_none())
            .map(|r| TemplateInfo {
                name: r.name.clone(),
                description: r.description.clone(),
                scope: TemplateScope::Global,
            })
            .collect();
        out.extend(self.catalog().iter().map(|t| TemplateInfo {
            name: t.name.clone(),
            description: t.description.clone(),
            scope: TemplateScope::Builtin,
        }));
        Ok(out)
    }
}
