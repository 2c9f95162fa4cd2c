//! The prefix key lives in `model/` (the config reads it too); this path
//! stays for the screens that name it here.

pub use crate::model::prefix_key::PrefixKey;
