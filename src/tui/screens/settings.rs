//! The settings screen: SSH keys, the password, and the user's settings and
//! secrets (`user_configs`); which section has the cursor, and the checks
//! that grey its keys.

use super::bindings::movement;
use crate::store::keys::SshKey;
use crate::store::user_configs::{KNOWN_CONFIGS, KUBECONFIG, UserConfig};
use crate::tui::keys::{Action, Binding, Key};
use crate::tui::text;

/// Everything the settings screen shows; the answer to `Effect::LoadSettings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsData {
    pub keys: Vec<SshKey>,
    pub has_password: bool,
    pub configs: Vec<UserConfig>,
    /// The user's quota and their usage against it (`None`: not loaded).
    pub quota: Option<(crate::model::quota::Limits, crate::model::quota::Usage)>,
    /// Each of the user's teams' quota and usage, by team name.
    pub team_quotas: Vec<crate::console::TeamQuota>,
    /// The webhook's last outcome (`None`: not loaded).
    pub webhook: Option<crate::store::webhooks::WebhookStatus>,
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

pub struct SettingsScreen {
    /// `None` until the first `Msg::Settings` after opening the screen.
    pub data: Option<SettingsData>,
    pub focus: SettingsFocus,
    pub key_selected: usize,
    pub config_selected: usize,
}

impl Default for SettingsScreen {
    fn default() -> Self {
        SettingsScreen {
            data: None,
            focus: SettingsFocus::Keys,
            key_selected: 0,
            config_selected: 0,
        }
    }
}

impl SettingsScreen {
    /// The known settings first (set or not, so they can be filled in), then
    /// the rest of what is stored, by name. KUBECONFIG has its own status
    /// line and is listed only once set, so it can be unset.
    pub fn config_rows(&self) -> Vec<ConfigRow<'_>> {
        let Some(data) = &self.data else {
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

    pub fn selected_key(&self) -> Option<&SshKey> {
        self.data.as_ref()?.keys.get(self.key_selected)
    }

    pub fn selected_config_row(&self) -> Option<ConfigRow<'_>> {
        self.config_rows().get(self.config_selected).copied()
    }

    pub fn loaded(&self) -> Result<(), String> {
        match self.data {
            Some(_) => Ok(()),
            None => Err(LOADING.into()),
        }
    }

    /// Whether the selected key may be removed: never the last way in (the
    /// store refuses it too; this greys the key and says why beforehand).
    pub fn key_removal_check(&self) -> Result<(), String> {
        let data = self.data.as_ref().ok_or(LOADING)?;
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

    pub fn config_edit_check(&self) -> Result<(), String> {
        self.loaded()?;
        match self.selected_config_row() {
            Some(_) => Ok(()),
            None => Err("no setting selected; press a to add one".into()),
        }
    }

    pub fn config_unset_check(&self) -> Result<(), String> {
        self.loaded()?;
        match self.selected_config_row() {
            Some(ConfigRow {
                config: Some(_), ..
            }) => Ok(()),
            Some(row) => Err(format!("{} is not set", text::clean(row.key))),
            None => Err("no setting selected".into()),
        }
    }

    pub fn set_data(&mut self, data: SettingsData) {
        self.key_selected = self.key_selected.min(data.keys.len().saturating_sub(1));
        self.data = Some(data);
        let rows = self.config_rows().len();
        self.config_selected = self.config_selected.min(rows.saturating_sub(1));
    }

    pub fn move_cursor(&mut self, action: Action, page: usize) {
        match self.focus {
            SettingsFocus::Keys => {
                let n = self.data.as_ref().map_or(0, |d| d.keys.len());
                self.key_selected = super::step(action, self.key_selected, n, page);
            }
            SettingsFocus::Configs => {
                let n = self.config_rows().len();
                self.config_selected = super::step(action, self.config_selected, n, page);
            }
        }
    }

    pub fn next_section(&mut self) {
        self.focus = match self.focus {
            SettingsFocus::Keys => SettingsFocus::Configs,
            SettingsFocus::Configs => SettingsFocus::Keys,
        };
    }

    /// The settings screen: Tab picks the section (keys or settings) that ↑/↓,
    /// `a` and the removal keys act on; `p` works from either.
    pub fn bindings(&self) -> Vec<Binding> {
        let loaded = self.loaded();
        let password_label = match &self.data {
            Some(d) if d.has_password => "change password",
            _ => "set password",
        };
        let mut v = vec![Binding::new(Key::Esc, "back", Action::Back)];
        match self.focus {
            SettingsFocus::Keys => {
                v.push(
                    Binding::new(Key::Char('a'), "add key", Action::KeyAdd).when(loaded.clone()),
                );
                v.push(
                    Binding::new(Key::Char('d'), "remove key", Action::KeyRemove)
                        .when(self.key_removal_check()),
                );
            }
            SettingsFocus::Configs => {
                let edit = self.config_edit_check();
                v.push(
                    Binding::new(Key::Char('a'), "add setting", Action::ConfigAdd)
                        .when(loaded.clone()),
                );
                v.push(Binding::new(Key::Enter, "edit", Action::ConfigEdit).when(edit.clone()));
                v.push(
                    Binding::new(Key::Char('e'), "edit", Action::ConfigEdit)
                        .when(edit)
                        .help_only(),
                );
                v.push(
                    Binding::new(Key::Char('x'), "unset", Action::ConfigUnset)
                        .when(self.config_unset_check()),
                );
            }
        }
        v.push(Binding::new(Key::Char('p'), password_label, Action::PasswordSet).when(loaded));
        v.push(Binding::new(Key::Tab, "other section", Action::NextSection));
        v.push(Binding::new(Key::BackTab, "other section", Action::NextSection).help_only());
        v.extend(movement("list"));
        v.push(Binding::new(Key::Char('?'), "help", Action::Help));
        v.push(Binding::new(Key::Char('q'), "back", Action::Back).help_only());
        v.push(Binding::new(Key::Ctrl('c'), "quit", Action::Quit).help_only());
        v
    }
}
