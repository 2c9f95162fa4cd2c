//! The dashboard shown over SSH: Elm-style `App` (`app`) holding one state
//! per screen (`screens`, each with its own key bindings as data, `keys`),
//! rendering from those states (`view`), and display sanitising (`text`).
//! The SSH session owns an `App`, feeds it `Msg`s and performs the `Effect`s
//! it returns; an `Effect`'s reply carries the effect's tag (`Reply`). The
//! pane's keystroke fast path (keys straight to the session, the echo drawn
//! ahead of the frame) is `echo_preview`, reached only through
//! `App::echo_preview`.

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
