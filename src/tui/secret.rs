//! Text that must never reach a log: a password, or a setting's or env
//! var's value on its way to the store. `Debug` masks it (secrecy's
//! `SecretBox`), so the forms and effects holding one derive `Debug`.

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};

/// Editable secret text. `SecretString` is immutable and lacks `PartialEq`,
/// which the forms (typed into) and the effects (compared in tests) need.
#[derive(Debug)]
pub struct SecretText(SecretBox<String>);

impl SecretText {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The text to edit in place (a form's field).
    pub fn expose_mut(&mut self) -> &mut String {
        self.0.expose_secret_mut()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl Default for SecretText {
    fn default() -> Self {
        SecretText::from(String::new())
    }
}

impl From<String> for SecretText {
    fn from(s: String) -> Self {
        SecretText(SecretBox::new(Box::new(s)))
    }
}

impl From<&str> for SecretText {
    fn from(s: &str) -> Self {
        SecretText::from(s.to_string())
    }
}

impl Clone for SecretText {
    fn clone(&self) -> Self {
        SecretText::from(self.expose().to_string())
    }
}

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretText {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_text() {
        let s = SecretText::from("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.clone(), s);
        assert_eq!(s.expose(), "hunter2");
    }
}
