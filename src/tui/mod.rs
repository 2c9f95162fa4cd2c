//! The dashboard shown over SSH: Elm-style state (`app`), key bindings as
//! data (`keys`), rendering (`view`) and display sanitising (`text`). The SSH
//! session owns an `App`, feeds it `Msg`s and performs the `Effect`s it returns.

pub mod app;
pub mod echo_preview;
pub mod keys;
pub mod logview;
pub mod pane;
pub mod prefix;
pub mod row_scan;
pub mod screens;
pub mod secret;
pub mod text;
pub mod view;

pub use app::{
    App, Effect, Key, Msg, PaneCommand, ProjectDetail, Reply, SessionChoice, SettingsData,
};

#[cfg(test)]
mod fixtures;
