//! The SSH side of Kiln: exec commands (the server and authentication modules
//! join this folder separately).

pub mod exec;
