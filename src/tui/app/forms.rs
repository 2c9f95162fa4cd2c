//! The two input forms (create project, set env var) and their live validation.
//! Validation reuses the same `model` checks the store applies, so what the
//! form accepts is what the server accepts.

use crate::model::{env, naming};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateField {
    Name,
    Description,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateForm {
    pub name: String,
    pub description: String,
    pub focus: CreateField,
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
            focus: CreateField::Name,
        }
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
        self.description_check()
    }

    pub fn field_mut(&mut self) -> &mut String {
        match self.focus {
            CreateField::Name => &mut self.name,
            CreateField::Description => &mut self.description,
        }
    }

    pub fn switch(&mut self) {
        self.focus = match self.focus {
            CreateField::Name => CreateField::Description,
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
    pub value: String,
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
            value: String::new(),
            secret: false,
            focus: EnvField::Key,
            editing: false,
        }
    }

    pub fn edit(key: &str, value: &str, secret: bool) -> EnvForm {
        EnvForm {
            key: key.to_string(),
            value: value.to_string(),
            secret,
            focus: EnvField::Value,
            editing: true,
        }
    }

    pub fn key_check(&self) -> Result<(), String> {
        env::check_key(&self.key).map_err(|e| e.to_string())
    }

    pub fn value_check(&self) -> Result<(), String> {
        env::check_value(&self.key, &self.value).map_err(|e| e.to_string())
    }

    pub fn valid(&self) -> Result<(), String> {
        self.key_check()?;
        self.value_check()
    }

    /// The text field under the cursor; `None` on the checkbox or a fixed key.
    pub fn field_mut(&mut self) -> Option<&mut String> {
        match self.focus {
            EnvField::Key if !self.editing => Some(&mut self.key),
            EnvField::Value => Some(&mut self.value),
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
