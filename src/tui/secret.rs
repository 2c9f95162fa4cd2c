//! Text that must never reach a log in the dashboard's forms and effects (a
//! password, a setting's or env var's value on its way to the store): the
//! one [`Secret`](crate::model::secret::Secret) type, editable in place.

pub type SecretText = crate::model::secret::Secret<String>;
