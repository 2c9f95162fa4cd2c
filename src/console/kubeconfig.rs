//! A user's kubeconfig, the one way into rule 1 of [`crate::backends`]. The
//! text is untrusted: it is parsed, refused if it would make the server run
//! a command or read a file, and checked against the cluster (it answers;
//! the user may create StatefulSets in the namespace) before anything is
//! stored. Stored encrypted; never echoed. It changes only while the user
//! has no projects: their resources would be stranded on the old cluster.

use crate::k8s::kubeconfig::{self, TenantKubeconfig};
use crate::store::user_configs::KUBECONFIG;

use super::{Action, ConsoleError, ConsoleResult, UserConsole};

impl UserConsole {
    /// Where the user's kubeconfig points, without its credentials; `None`
    /// when they have none.
    pub async fn kubeconfig(&self) -> ConsoleResult<Option<TenantKubeconfig>> {
        self.gated(Action::ShowKubeconfig, async {
            let (_, yaml) = self.store().tenant_backend_inputs(self.user_id()).await?;
            match yaml {
                None => Ok(None),
                Some(y) => kubeconfig::parse(&y).map(Some).map_err(|e| {
                    ConsoleError::invalid(
                        "kubeconfig",
                        format!("your stored kubeconfig no longer parses: {e}"),
                    )
                }),
            }
        })
        .await
    }

    /// Validates `yaml` against its cluster and stores it. Nothing is
    /// stored unless every check passed.
    pub async fn set_kubeconfig(&self, yaml: &str) -> ConsoleResult<TenantKubeconfig> {
        self.gated(Action::SetKubeconfig, async {
            self.refuse_with_projects().await?;
            let checked = kubeconfig::validate(yaml, self.console.api_servers)
                .await
                .map_err(|e| {
                    ConsoleError::invalid("kubeconfig", format!("kubeconfig refused: {e}"))
                })?;
            self.store()
                .set_user_config(self.user_id(), KUBECONFIG, yaml, true)
                .await?;
            Ok(checked)
        })
        .await
    }

    /// Removes the user's kubeconfig (their next projects run on the
    /// server's cluster or this host).
    pub async fn unset_kubeconfig(&self) -> ConsoleResult<()> {
        self.gated(Action::UnsetKubeconfig, async {
            self.refuse_with_projects().await?;
            Ok(self
                .store()
                .unset_user_config(self.user_id(), KUBECONFIG)
                .await?)
        })
        .await
    }

    async fn refuse_with_projects(&self) -> ConsoleResult<()> {
        match self.store().count_projects(self.user_id()).await? {
            0 => Ok(()),
            n => Err(ConsoleError::refused(format!(
                "you have {n} project(s) running where your projects run now; delete them first (projects cannot move between clusters)"
            ))),
        }
    }
}
