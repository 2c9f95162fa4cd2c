//! Setting and removing a user's kubeconfig, the one way into rule 1 of
//! [`crate::backends`]. The text is untrusted: it is parsed, refused if it
//! would make the server run a command or read a file, and checked against
//! the cluster (it answers; the user may create StatefulSets in the
//! namespace) before anything is stored. Stored encrypted; never echoed.

use uuid::Uuid;

use crate::k8s::kubeconfig::{self, TenantKubeconfig};
use crate::store::Store;
use crate::store::user_configs::KUBECONFIG;

/// Why a kubeconfig change was refused; the message is for the user.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "you have {0} project(s) running where your projects run now; delete them first (projects cannot move between clusters)"
    )]
    HasProjects(i64),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

async fn refuse_with_projects(store: &Store, user: Uuid) -> Result<(), KubeconfigChangeError> {
    match store.count_projects(user).await? {
        0 => Ok(()),
        n => Err(KubeconfigChangeError::HasProjects(n)),
    }
}

/// Validates `yaml` against its cluster and stores it. Nothing is stored
/// unless every check passed.
pub async fn set(
    store: &Store,
    user: Uuid,
    yaml: &str,
) -> Result<TenantKubeconfig, KubeconfigChangeError> {
    refuse_with_projects(store, user).await?;
    let checked = kubeconfig::validate(yaml)
        .await
        .map_err(|e| KubeconfigChangeError::Invalid(format!("kubeconfig refused: {e}")))?;
    store.set_user_config(user, KUBECONFIG, yaml, true).await?;
    Ok(checked)
}

/// Removes the user's kubeconfig (their next projects run on the server's
/// cluster or this host).
pub async fn unset(store: &Store, user: Uuid) -> Result<(), KubeconfigChangeError> {
    refuse_with_projects(store, user).await?;
    store.unset_user_config(user, KUBECONFIG).await?;
    Ok(())
}

/// Where the user's kubeconfig points, without its credentials; `None` when
/// they have none.
pub async fn describe(
    store: &Store,
    user: Uuid,
) -> Result<Option<TenantKubeconfig>, KubeconfigChangeError> {
    let (_, yaml) = store.tenant_backend_inputs(user).await?;
    match yaml {
        None => Ok(None),
        Some(y) => kubeconfig::parse(&y).map(Some).map_err(|e| {
            KubeconfigChangeError::Invalid(format!("your stored kubeconfig no longer parses: {e}"))
        }),
    }
}
