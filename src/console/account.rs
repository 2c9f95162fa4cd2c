//! The signed-in user's own account: SSH keys, password, settings (user
//! configs, the kubeconfig among them) and `whoami`.

use crate::k8s::kubeconfig::TenantKubeconfig;
use crate::model::quota::{Limits, Usage};
use crate::store::keys::SshKey;
use crate::store::user_configs::{KUBECONFIG, UserConfig};
use crate::store::webhooks::WEBHOOK_URL;

use super::{Action, ConsoleResult, UserConsole};

/// What the settings screen shows.
#[derive(Debug)]
pub struct Settings {
    pub keys: Vec<SshKey>,
    pub has_password: bool,
    pub configs: Vec<UserConfig>,
    /// The user's own quota and usage.
    pub quota: (Limits, Usage),
    /// The quota and usage of each team the user belongs to, by name.
    pub team_quotas: Vec<TeamQuota>,
    /// The webhook's last outcome (its URL is among `configs`).
    pub webhook: crate::store::webhooks::WebhookStatus,
}

/// A team's quota and usage, as its members see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamQuota {
    pub team: String,
    pub role: crate::model::team::TeamRole,
    pub limits: Limits,
    pub usage: Usage,
}

/// Every quota that bounds what the user may create or start: their own
/// and their teams'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    pub own: (Limits, Usage),
    pub teams: Vec<TeamQuota>,
}

/// Who the actor is, and how they sign in.
#[derive(Debug)]
pub struct Whoami {
    pub username: String,
    pub role: String,
    pub projects: usize,
    pub password: bool,
    pub ssh_keys: usize,
}

/// What setting a user config did: a kubeconfig is checked against its
/// cluster before it is kept, and says where it points.
#[derive(Debug)]
pub enum ConfigSet {
    Value,
    Kubeconfig(Box<TenantKubeconfig>),
}

impl UserConsole {
    pub async fn keys(&self) -> ConsoleResult<Vec<SshKey>> {
        self.gated(Action::ListKeys, async {
            Ok(self.store().list_ssh_keys(self.user_id()).await?)
        })
        .await
    }

    /// Registers one OpenSSH public key line.
    pub async fn add_key(&self, line: &str) -> ConsoleResult<SshKey> {
        self.gated(Action::AddKey, async {
            // Pending until the user signs in with it: proof they hold the key.
            Ok(self.store().propose_ssh_key(self.user_id(), line).await?)
        })
        .await
    }

    /// Removes a key; returns its fingerprint in the form `keys list` shows
    /// (`SHA256:…`), whichever form was given.
    pub async fn remove_key(&self, fingerprint: &str) -> ConsoleResult<String> {
        self.gated(Action::RemoveKey { fingerprint }, async {
            self.store()
                .remove_ssh_key(self.user_id(), fingerprint)
                .await?;
            let fingerprint = fingerprint.trim();
            Ok(if fingerprint.starts_with("SHA256:") {
                fingerprint.to_string()
            } else {
                format!("SHA256:{fingerprint}")
            })
        })
        .await
    }

    pub async fn set_password(&self, password: &str) -> ConsoleResult<()> {
        self.gated(Action::SetPassword, async {
            Ok(self.store().set_password(self.user_id(), password).await?)
        })
        .await
    }

    pub async fn settings(&self) -> ConsoleResult<Settings> {
        self.gated(Action::ShowSettings, async {
            let (store, user) = (self.store(), self.user_id());
            Ok(Settings {
                keys: store.list_ssh_keys(user).await?,
                has_password: store.has_password(user).await?,
                configs: store.list_user_configs(user).await?,
                quota: store.quota_usage(user).await?,
                team_quotas: self.team_quotas().await?,
                webhook: store.webhook_status(user).await?,
            })
        })
        .await
    }

    /// The user's own quota and each of their teams' (any role: a viewer
    /// sees the team's projects, so its counts tell them nothing new).
    pub async fn quotas(&self) -> ConsoleResult<Quotas> {
        self.gated(Action::ShowQuotas, async {
            Ok(Quotas {
                own: self.store().quota_usage(self.user_id()).await?,
                teams: self.team_quotas().await?,
            })
        })
        .await
    }

    async fn team_quotas(&self) -> ConsoleResult<Vec<TeamQuota>> {
        let store = self.store();
        let teams = store.teams_of(self.user_id()).await?;
        let ids: Vec<uuid::Uuid> = teams.iter().map(|m| m.team_id).collect();
        let mut usages = store.quota_usages(&ids).await?;
        // A team deleted since it was listed is left out.
        Ok(teams
            .into_iter()
            .filter_map(|m| {
                let (limits, usage) = usages.remove(&m.team_id)?;
                Some(TeamQuota {
                    team: m.team,
                    role: m.role,
                    limits,
                    usage,
                })
            })
            .collect())
    }

    /// Sets one user config. `KUBECONFIG` goes through the kubeconfig's own
    /// checks, whichever way it was asked for.
    pub async fn set_config(
        &self,
        key: &str,
        value: &str,
        secret: bool,
    ) -> ConsoleResult<ConfigSet> {
        if key == KUBECONFIG {
            return self
                .set_kubeconfig(value)
                .await
                .map(|k| ConfigSet::Kubeconfig(Box::new(k)));
        }
        // A repository token is a credential whatever the form said.
        let secret = secret || key == crate::store::user_configs::GIT_TOKEN;
        // The webhook's URL is checked for where it points, whichever way
        // it was set (always kept secret: a URL may carry a token).
        if key == WEBHOOK_URL {
            return self.set_webhook(value).await.map(|_| ConfigSet::Value);
        }
        self.gated(Action::SetConfig { key }, async {
            self.store()
                .set_user_config(self.user_id(), key, value, secret)
                .await?;
            Ok(ConfigSet::Value)
        })
        .await
    }

    pub async fn unset_config(&self, key: &str) -> ConsoleResult<()> {
        if key == KUBECONFIG {
            return self.unset_kubeconfig().await;
        }
        if key == WEBHOOK_URL {
            return self.unset_webhook().await;
        }
        self.gated(Action::UnsetConfig { key }, async {
            Ok(self.store().unset_user_config(self.user_id(), key).await?)
        })
        .await
    }

    pub async fn whoami(&self) -> ConsoleResult<Whoami> {
        self.gated(Action::Whoami, async {
            let (store, user) = (self.store(), self.user_id());
            Ok(Whoami {
                username: self.actor.user.username.clone(),
                role: self.actor.user.role.clone(),
                projects: store.list_projects(user).await?.len(),
                password: store.has_password(user).await?,
                ssh_keys: store.list_ssh_keys(user).await?.len(),
            })
        })
        .await
    }
}
