//! The settings screen's keys: opening it, its forms and their effects. Same rules as the rest of the app: pure state
//! changes here, the session performs the effects and answers.

use super::{App, Effect, Overlay, Screen};
use crate::tui::keys::Action;
use crate::tui::screens::forms::{ConfigForm, KeyForm, PasswordForm};
use crate::tui::screens::settings::{ConfigRow, SettingsScreen};
use crate::tui::text;

impl App {
    pub(super) fn perform_settings(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Settings => {
                self.screen = Screen::Settings;
                self.settings = SettingsScreen::default();
                return vec![Effect::LoadSettings];
            }
            Action::NextSection => self.settings.next_section(),
            Action::KeyAdd => self.overlay = Some(Overlay::KeyForm(KeyForm::default())),
            Action::KeyRemove => {
                if let Some(k) = self.settings.selected_key() {
                    let fingerprint = k.fingerprint.clone();
                    self.overlay = Some(Overlay::ConfirmRemoveKey { fingerprint });
                }
            }
            Action::PasswordSet => self.overlay = Some(Overlay::PasswordForm(PasswordForm::new())),
            Action::ConfigAdd => self.overlay = Some(Overlay::ConfigForm(ConfigForm::add())),
            Action::ConfigEdit => {
                if let Some(row) = self.settings.selected_config_row() {
                    let form = ConfigForm::edit(row.key, row.config);
                    self.overlay = Some(Overlay::ConfigForm(form));
                }
            }
            Action::ConfigUnset => {
                if let Some(ConfigRow {
                    key,
                    config: Some(_),
                }) = self.settings.selected_config_row()
                {
                    let key = key.to_string();
                    self.overlay = Some(Overlay::ConfirmUnsetConfig { key });
                }
            }
            _ => {}
        }
        vec![]
    }

    /// The effect of a submitted settings form or confirmed removal; its
    /// `Done` reloads the screen (see `on_done`).
    pub(super) fn submit_settings(&mut self, overlay: Overlay) -> Vec<Effect> {
        let effect = match overlay {
            Overlay::KeyForm(f) => {
                self.info("adding the key…");
                Effect::AddKey {
                    line: f.line.trim().to_string(),
                }
            }
            Overlay::PasswordForm(f) => {
                self.info("setting the password…");
                Effect::SetPassword {
                    password: f.password,
                }
            }
            Overlay::ConfigForm(f) => {
                self.info(format!("setting {}…", text::clean(&f.key)));
                let secret = f.is_secret();
                Effect::SetUserConfig {
                    key: f.key,
                    value: f.value,
                    secret,
                }
            }
            Overlay::ConfirmRemoveKey { fingerprint } => {
                self.info(format!("removing {}…", text::clean(&fingerprint)));
                Effect::RemoveKey { fingerprint }
            }
            Overlay::ConfirmUnsetConfig { key } => {
                self.info(format!("removing {}…", text::clean(&key)));
                Effect::UnsetUserConfig { key }
            }
            other => {
                self.overlay = Some(other);
                return vec![];
            }
        };
        vec![effect]
    }
}
