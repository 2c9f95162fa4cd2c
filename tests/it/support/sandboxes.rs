//! What the repository and template tests share: a signed-in user, waiting
//! for a project's status, and where its sandbox works on this host.

use std::path::PathBuf;
use std::time::Duration;

use kiln::driver::ResourceRef;
use kiln::model::ProjectStatus;
use kiln::store::resources::ResourceKind;

use super::eventually;
use super::ssh::{Client, Server, connect};

pub const PASSWORD: &str = "correct horse battery";

/// A new user `user`, and a client signed in as them.
pub async fn signed_in(server: &Server, user: &str) -> (uuid::Uuid, Client) {
    let u = server.user(user, PASSWORD).await;
    let mut c = connect(server.addr).await;
    assert!(c.password(user, PASSWORD).await);
    (u.id, c)
}

/// Waits until `project` is `want`; returns its sandbox's last error.
pub async fn status_becomes(
    server: &Server,
    owner: uuid::Uuid,
    project: &str,
    want: ProjectStatus,
) -> Option<String> {
    eventually(
        &format!("{project} to be {want}"),
        Duration::from_secs(90),
        || async {
            let p = server.store.find_project(owner, project).await.ok()?;
            (p.project.status == want).then(|| {
                p.resources
                    .iter()
                    .find(|r| r.kind == ResourceKind::Sandbox)
                    .and_then(|r| r.last_error.clone())
            })
        },
    )
    .await
}

/// The project's sandbox working directory on this host.
pub async fn working_dir(server: &Server, owner: uuid::Uuid, project: &str) -> PathBuf {
    let p = server.store.find_project(owner, project).await.unwrap();
    let sb = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    server.local.as_ref().unwrap().sandbox_dir(&ResourceRef {
        resource_name: sb.resource_name.clone(),
        namespace: String::new(),
        project_slug: p.project.slug.clone(),
        owner,
    })
}
