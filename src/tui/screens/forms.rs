//! The input forms (create project, env var, and on the settings screen an
//! SSH key, the password and a user setting) and their live validation.
//! Validation reuses the same checks the store applies, so what the form
//! accepts is what the server accepts.

use crate::model::{env, naming};
use crate::store::keys::{self, SshKey};
use crate::store::user_configs::{self, UserConfig};
use crate::store::users;
use crate::tui::secret::SecretText;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateField {
    Name,
    Description,
    Repo,
    Branch,
    Template,
    /// Whose the project is (only when the user is in a team).
    Owner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateForm {
    pub name: String,
    pub description: String,
    /// A repository to clone into the sandbox (optional).
    pub repo: String,
    /// Its branch (optional; only with a repository).
    pub branch: String,
    /// The templates on offer (loaded when the dialog opens).
    pub templates: Vec<crate::console::TemplateInfo>,
    /// The chosen one: 0 is none, `i` is `templates[i - 1]`.
    pub template: usize,
    pub focus: CreateField,
    pub owner: super::owner::OwnerChoice,
}

impl Default for CreateForm {
    fn default() -> Self {
        Self::new()
    }
}

impl CreateForm {
    pub fn new() -> CreateForm {
        CreateForm {
            name: String::new(),
            description: String::new(),
            repo: String::new(),
            branch: String::new(),
            templates: Vec::new(),
            template: 0,
            focus: CreateField::Name,
            owner: Default::default(),
        }
    }

    /// The chosen template, if any.
    pub fn chosen(&self) -> Option<&crate::console::TemplateInfo> {
        self.template
            .checked_sub(1)
            .and_then(|i| self.templates.get(i))
    }

    /// Up/Down on the template field: the previous or next one, wrapping
    /// through "none".
    pub fn cycle_template(&mut self, forward: bool) {
        let n = self.templates.len() + 1;
        self.template = if forward {
            (self.template + 1) % n
        } else {
            (self.template + n - 1) % n
        };
    }

    /// The repository's transport, or why it is refused (`Ok(None)`: none).
    /// The console also checks where its host resolves.
    pub fn repo_check(&self) -> Result<Option<String>, String> {
        let (repo, branch) = (self.repo.trim(), self.branch.trim());
        if repo.is_empty() {
            return match branch.is_empty() {
                true => Ok(None),
                false => Err("a branch needs a repository".into()),
            };
        }
        crate::model::git::parse_repo_url(repo).map_err(|e| e.to_string())?;
        if !branch.is_empty() {
            crate::model::git::check_branch(branch).map_err(|e| e.to_string())?;
        }
        Ok(Some(match branch {
            "" => "cloned on its default branch".into(),
            b => format!("cloned on branch {b} (created if missing)"),
        }))
    }

    /// The slug the name will get, or why the name is refused.
    pub fn slug(&self) -> Result<String, String> {
        naming::slugify(&self.name).map_err(|e| e.to_string())
    }

    pub fn description_check(&self) -> Result<(), String> {
        naming::check_description(&self.description).map_err(|e| e.to_string())
    }

    /// Ok when Enter may submit; otherwise the first problem.
    pub fn valid(&self) -> Result<(), String> {
        self.slug()?;
        self.description_check()?;
        self.repo_check().map(|_| ())
    }

    /// The text field under the cursor; `None` on the template and the
    /// owner, which are chosen with the arrow keys.
    pub fn field_mut(&mut self) -> Option<&mut String> {
        match self.focus {
            CreateField::Name => Some(&mut self.name),
            CreateField::Description => Some(&mut self.description),
            CreateField::Repo => Some(&mut self.repo),
            CreateField::Branch => Some(&mut self.branch),
            CreateField::Template | CreateField::Owner => None,
        }
    }

    /// Tab: the fields in the order they are drawn (the owner only when
    /// there is a choice).
    pub fn switch(&mut self) {
        self.focus = match self.focus {
            CreateField::Name => CreateField::Description,
            CreateField::Description if self.owner.has_teams() => CreateField::Owner,
            CreateField::Description | CreateField::Owner => CreateField::Repo,
            CreateField::Repo => CreateField::Branch,
            CreateField::Branch => CreateField::Template,
            CreateField::Template => CreateField::Name,
        };
    }

    /// Shift-Tab: the same cycle backwards.
    pub fn switch_back(&mut self) {
        self.focus = match self.focus {
            CreateField::Name => CreateField::Template,
            CreateField::Template => CreateField::Branch,
            CreateField::Branch => CreateField::Repo,
            CreateField::Repo if self.owner.has_teams() => CreateField::Owner,
            CreateField::Repo | CreateField::Owner => CreateField::Description,
            CreateField::Description => CreateField::Name,
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvField {
    Key,
    Value,
    Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvForm {
    pub key: String,
    pub value: SecretText,
    pub secret: bool,
    pub focus: EnvField,
    /// Editing an existing variable: the key is fixed (changing it would be a
    /// different variable, and the old one would silently stay).
    pub editing: bool,
}

impl EnvForm {
    pub fn add() -> EnvForm {
        EnvForm {
            key: String::new(),
            value: SecretText::default(),
            secret: false,
            focus: EnvField::Key,
            editing: false,
        }
    }

    pub fn edit(key: &str, value: &str, secret: bool) -> EnvForm {
        EnvForm {
            key: key.to_string(),
            value: value.into(),
            secret,
            focus: EnvField::Value,
            editing: true,
        }
    }

    pub fn key_check(&self) -> Result<(), String> {
        env::check_key(&self.key).map_err(|e| e.to_string())
    }

    pub fn value_check(&self) -> Result<(), String> {
        env::check_value(&self.key, self.value.expose()).map_err(|e| e.to_string())
    }

    pub fn valid(&self) -> Result<(), String> {
        self.key_check()?;
        self.value_check()
    }

    /// The text field under the cursor; `None` on the checkbox or a fixed key.
    pub fn field_mut(&mut self) -> Option<&mut String> {
        match self.focus {
            EnvField::Key if !self.editing => Some(&mut self.key),
            EnvField::Value => Some(self.value.expose_mut()),
            _ => None,
        }
    }

    pub fn next(&mut self) {
        self.focus = match self.focus {
            EnvField::Key => EnvField::Value,
            EnvField::Value => EnvField::Secret,
            EnvField::Secret if self.editing => EnvField::Value,
            EnvField::Secret => EnvField::Key,
        };
    }

    pub fn prev(&mut self) {
        self.focus = match self.focus {
            EnvField::Key => EnvField::Secret,
            EnvField::Value if self.editing => EnvField::Secret,
            EnvField::Value => EnvField::Key,
            EnvField::Secret => EnvField::Value,
        };
    }
}

/// Add an SSH key: one field holding a pasted OpenSSH public key line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyForm {
    pub line: String,
}

impl KeyForm {
    /// What the key parses to (`algorithm fingerprint comment`), or why not;
    /// the same parser the store uses, so what shows ✓ is what gets added.
    pub fn check(&self, known: &[SshKey]) -> Result<String, String> {
        let key = keys::parse_public_key(&self.line).map_err(|e| e.to_string())?;
        let fingerprint = keys::fingerprint(&key);
        if known.iter().any(|k| k.fingerprint == fingerprint) {
            return Err(format!("{fingerprint} is already one of your keys"));
        }
        let comment = key.comment().as_str_lossy();
        Ok(
            format!("{} {fingerprint} {comment}", key.algorithm().as_str())
                .trim_end()
                .to_string(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordField {
    Password,
    Repeat,
}

/// Set or change the password: typed twice, never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordForm {
    pub password: SecretText,
    pub repeat: SecretText,
    pub focus: PasswordField,
}

impl Default for PasswordForm {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordForm {
    pub fn new() -> PasswordForm {
        PasswordForm {
            password: SecretText::default(),
            repeat: SecretText::default(),
            focus: PasswordField::Password,
        }
    }

    /// The store's own rule (length), so the form never accepts what it refuses.
    pub fn password_check(&self) -> Result<(), String> {
        users::check_password(self.password.expose()).map_err(|e| e.to_string())
    }

    pub fn repeat_check(&self) -> Result<(), String> {
        if self.repeat == self.password {
            Ok(())
        } else {
            Err("the two passwords differ".into())
        }
    }

    pub fn valid(&self) -> Result<(), String> {
        self.password_check()?;
        self.repeat_check()
    }

    pub fn field_mut(&mut self) -> &mut String {
        match self.focus {
            PasswordField::Password => self.password.expose_mut(),
            PasswordField::Repeat => self.repeat.expose_mut(),
        }
    }

    pub fn switch(&mut self) {
        self.focus = match self.focus {
            PasswordField::Password => PasswordField::Repeat,
            PasswordField::Repeat => PasswordField::Password,
        };
    }
}

/// Add or edit one of the user's settings (`user_configs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigForm {
    pub key: String,
    pub value: SecretText,
    /// What the user chose; `None` follows the key's default (known secrets
    /// such as ANTHROPIC_API_KEY start secret).
    pub secret: Option<bool>,
    pub focus: EnvField,
    /// The key is fixed (editing an existing or a known setting).
    pub editing: bool,
}

impl ConfigForm {
    pub fn add() -> ConfigForm {
        ConfigForm {
            key: String::new(),
            value: SecretText::default(),
            secret: None,
            focus: EnvField::Key,
            editing: false,
        }
    }

    /// Edit `key`; `current` is the stored setting if there is one. A secret
    /// starts empty (it is replaced, not appended to); a plain value is kept.
    pub fn edit(key: &str, current: Option<&UserConfig>) -> ConfigForm {
        ConfigForm {
            key: key.to_string(),
            value: current
                .filter(|c| !c.is_secret)
                .map(|c| c.value.expose().clone())
                .unwrap_or_default()
                .into(),
            secret: current.map(|c| c.is_secret),
            focus: EnvField::Value,
            editing: true,
        }
    }

    /// A kubeconfig is YAML: a paste into its value keeps its line breaks.
    pub fn takes_lines(&self) -> bool {
        self.focus == EnvField::Value && self.key == user_configs::KUBECONFIG
    }

    pub fn is_secret(&self) -> bool {
        self.secret
            .unwrap_or_else(|| user_configs::default_secret(&self.key))
    }

    pub fn toggle_secret(&mut self) {
        self.secret = Some(!self.is_secret());
    }

    pub fn key_check(&self) -> Result<(), String> {
        user_configs::check_config_key(&self.key).map_err(|e| e.to_string())
    }

    pub fn value_check(&self) -> Result<(), String> {
        user_configs::check_config_value(self.value.expose()).map_err(|e| e.to_string())
    }

    pub fn valid(&self) -> Result<(), String> {
        self.key_check()?;
        self.value_check()
    }

    /// Setting names are uppercase; typed letters are uppercased for the user.
    pub fn type_text(&mut self, s: &str) -> Result<(), &'static str> {
        match self.focus {
            EnvField::Key if !self.editing => {
                self.key.push_str(&s.to_ascii_uppercase());
                Ok(())
            }
            EnvField::Key => Err("this setting's name is fixed; press Esc and a to add another"),
            EnvField::Value => {
                self.value.expose_mut().push_str(s);
                Ok(())
            }
            EnvField::Secret => Err("space toggles the checkbox; Tab moves to a text field"),
        }
    }

    pub fn erase(&mut self) {
        match self.focus {
            EnvField::Key if !self.editing => {
                self.key.pop();
            }
            EnvField::Value => {
                self.value.expose_mut().pop();
            }
            _ => {}
        }
    }

    pub fn next(&mut self) {
        self.focus = match self.focus {
            EnvField::Key => EnvField::Value,
            EnvField::Value => EnvField::Secret,
            EnvField::Secret if self.editing => EnvField::Value,
            EnvField::Secret => EnvField::Key,
        };
    }

    pub fn prev(&mut self) {
        self.focus = match self.focus {
            EnvField::Key => EnvField::Secret,
            EnvField::Value if self.editing => EnvField::Secret,
            EnvField::Value => EnvField::Key,
            EnvField::Secret => EnvField::Value,
        };
    }
}
