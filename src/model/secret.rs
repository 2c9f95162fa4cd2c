//! The one type for a value that must never be printed: its `Debug` and
//! `Display` show `<secret>`, so a struct holding one can derive `Debug` and
//! still be logged. Reading the value is explicit ([`Secret::expose`]), which
//! makes every place that handles the plain text easy to find.

use std::fmt;

/// A value hidden from `Debug` and `Display`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The hidden value, for the places that must use it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The hidden value to change in place (a form's field being typed into).
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Secret<String> {
    /// The hidden text, for the places that must use it.
    pub fn expose_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

/// Comparing with a plain value tells only whether they are equal.
impl PartialEq<str> for Secret<String> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Secret<String> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s:?}"), "<secret>");
        assert_eq!(format!("{s}"), "<secret>");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(<secret>)");
        assert_eq!(s.expose_str(), "hunter2");
    }
}
