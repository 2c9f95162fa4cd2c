//! The settings screen: SSH keys, the password, and the user's settings and
//! secrets (`user_configs`). Same rules as the rest of the app: pure state
//! changes here, the session performs the effects and answers.

use super::forms::{ConfigForm, KeyForm, PasswordForm};
use super::{App, Effect, Overlay, Screen};
use crate::store::keys::SshKey;
use crate::store::user_configs::{KNOWN_CONFIGS, KUBECONFIG, UserConfig};
use crate::tui::keys::Action;
use crate::tui::text;

/// Everything the settings screen shows; the answer to `Effect::LoadSettings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsData {
    pub keys: Vec<SshKey>,
    pub has_password: bool,
    pub configs: Vec<UserConfig>,
}

/// Which list of the settings screen ↑/↓ and the section keys act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsFocus {
    Keys,
    Configs,
}

/// One row of the settings list: a stored setting, or a known one not set yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRow<'a> {
    pub key: &'a str,
    pub config: Option<&'a UserConfig>,
}

const LOADING: &str = "still loading your settings";

impl App {
    /// The known settings first (set or not, so they can be filled in), then
    /// the rest of what is stored, by name. KUBECONFIG has its own status
    /// line and is listed only once set, so it can be unset.
    pub(crate) fn config_rows(&self) -> Vec<ConfigRow<'_>> {
        let Some(data) = &self.settings else {
            return vec![];
        };
        let find = |key: &str| data.configs.iter().find(|c| c.key == key);
        let mut rows: Vec<ConfigRow> = KNOWN_CONFIGS
            .iter()
            .filter(|(k, _)| *k != KUBECONFIG)
            .map(|&(key, _)| ConfigRow {
                key,
                config: find(key),
            })
            .collect();
        let known = |key: &str| {
            KNOWN_CONFIGS
                .iter()
                .any(|(k, _)| *k == key && *k != KUBECONFIG)
        };
        rows.extend(
            data.configs
                .iter()
                .filter(|c| !known(&c.key))
                .map(|c| ConfigRow {
                    key: &c.key,
                    config: Some(c),
                }),
        );
        rows
    }

    pub(crate) fn selected_key(&self) -> Option<&SshKey> {
        self.settings.as_ref()?.keys.get(self.key_selected)
    }

    pub(crate) fn selected_config_row(&self) -> Option<ConfigRow<'_>> {
        self.config_rows().get(self.config_selected).copied()
    }

    pub(crate) fn settings_loaded(&self) -> Result<(), String> {
        match self.settings {
            Some(_) => Ok(()),
            None => Err(LOADING.into()),
        }
    }

    /// Whether the selected key may be removed: never the last way in (the
    /// store refuses it too; this greys the key and says why beforehand).
    pub(crate) fn key_removal_check(&self) -> Result<(), String> {
        let data = self.settings.as_ref().ok_or(LOADING)?;
        if self.selected_key().is_none() {
            return Err("no key selected; press a to add one".into());
        }
        if data.keys.len() == 1 && !data.has_password {
            return Err(
                "this key is your only way in: set a password (p) or add another key (a) first"
                    .into(),
            );
        }
        Ok(())
    }

    pub(crate) fn config_edit_check(&self) -> Result<(), String> {
        self.settings_loaded()?;
        match self.selected_config_row() {
            Some(_) => Ok(()),
            None => Err("no setting selected; press a to add one".into()),
        }
    }

    pub(crate) fn config_unset_check(&self) -> Result<(), String> {
        self.settings_loaded()?;
        match self.selected_config_row() {
            Some(ConfigRow {
                config: Some(_), ..
            }) => Ok(()),
            Some(row) => Err(format!("{} is not set", text::clean(row.key))),
            None => Err("no setting selected".into()),
        }
    }

    pub(super) fn on_settings(&mut self, data: SettingsData) {
        self.key_selected = self.key_selected.min(data.keys.len().saturating_sub(1));
        self.settings = Some(data);
        let rows = self.config_rows().len();
        self.config_selected = self.config_selected.min(rows.saturating_sub(1));
    }

    pub(super) fn move_settings_cursor(&mut self, step: impl Fn(usize, usize) -> usize) {
        match self.settings_focus {
            SettingsFocus::Keys => {
                let n = self.settings.as_ref().map_or(0, |d| d.keys.len());
                self.key_selected = step(self.key_selected, n);
            }
            SettingsFocus::Configs => {
                let n = self.config_rows().len();
                self.config_selected = step(self.config_selected, n);
            }
        }
    }

    pub(super) fn perform_settings(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Settings => {
                self.screen = Screen::Settings;
                self.settings = None;
                self.settings_focus = SettingsFocus::Keys;
                self.key_selected = 0;
                self.config_selected = 0;
                return vec![Effect::LoadSettings];
            }
            Action::NextSection => {
                self.settings_focus = match self.settings_focus {
                    SettingsFocus::Keys => SettingsFocus::Configs,
                    SettingsFocus::Configs => SettingsFocus::Keys,
                };
            }
            Action::KeyAdd => self.overlay = Some(Overlay::KeyForm(KeyForm::default())),
            Action::KeyRemove => {
                if let Some(k) = self.selected_key() {
                    let fingerprint = k.fingerprint.clone();
                    self.overlay = Some(Overlay::ConfirmRemoveKey { fingerprint });
                }
            }
            Action::PasswordSet => self.overlay = Some(Overlay::PasswordForm(PasswordForm::new())),
            Action::ConfigAdd => self.overlay = Some(Overlay::ConfigForm(ConfigForm::add())),
            Action::ConfigEdit => {
                if let Some(row) = self.selected_config_row() {
                    let form = ConfigForm::edit(row.key, row.config);
                    self.overlay = Some(Overlay::ConfigForm(form));
                }
            }
            Action::ConfigUnset => {
                if let Some(ConfigRow {
                    key,
                    config: Some(_),
                }) = self.selected_config_row()
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
