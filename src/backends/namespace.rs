//! The namespace a tenant gets on the server's cluster, created on first use.
//!
//! The namespace is the boundary between tenants on that cluster, so Kiln
//! uses only a namespace it created for this very tenant: one that exists
//! but lacks Kiln's labels for the tenant (a system namespace such as
//! `kiln-system`, or another tenant's) is refused, never adopted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use uuid::Uuid;

use crate::driver::{DriverError, DriverResult};
use crate::k8s::cluster::{K8sCluster, classify, is_already_exists};
use crate::k8s::settings::is_dns_label;

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The tenant's user id: unique, and a valid label value whatever the username.
const TENANT_ID: &str = "kiln.dev/tenant-id";
/// The username, as namespaces made before `TENANT_ID` existed carry it.
const TENANT_NAME: &str = "kiln.dev/tenant";

const PREFIX: &str = "kiln-";
/// Room left in a 63-character label for the name when a suffix is added.
const SUFFIX_LEN: usize = 8;
const MAX_NAME: usize = 63 - PREFIX.len() - 1 - SUFFIX_LEN;

/// The namespace a user gets on the server's cluster: `kiln-{username}`
/// when the username is already a DNS-1123 label (lower-cased), else the
/// username's letters and digits joined by '-' plus part of the user's id
/// (`bob.smith` → `kiln-bob-smith-1f2e3d4c`), so that every username gets a
/// valid name and two usernames that clean up alike still differ. The id
/// part cannot be guessed by another user wanting to take the name first;
/// were a name taken anyway, [`adoptable`] refuses it.
pub fn tenant_namespace(username: &str, id: Uuid) -> String {
    let lower = username.to_ascii_lowercase();
    if is_dns_label(&lower) && PREFIX.len() + lower.len() <= 63 {
        return format!("{PREFIX}{lower}");
    }
    let mut cleaned = String::new();
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cleaned.push(c);
        } else if !cleaned.ends_with('-') {
            cleaned.push('-');
        }
    }
    let cleaned: String = cleaned.trim_matches('-').chars().take(MAX_NAME).collect();
    let cleaned = cleaned.trim_end_matches('-');
    let suffix = &id.simple().to_string()[..SUFFIX_LEN];
    if cleaned.is_empty() {
        format!("{PREFIX}{suffix}")
    } else {
        format!("{PREFIX}{cleaned}-{suffix}")
    }
}

/// The labels Kiln puts on a tenant's namespace.
fn tenant_labels(username: &str, id: Uuid) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.to_string(), "kiln".to_string()),
        (TENANT_ID.to_string(), id.to_string()),
    ]);
    // Kept for people reading `kubectl get ns --show-labels` when it fits a label value.
    if is_dns_label(&username.to_ascii_lowercase()) {
        labels.insert(TENANT_NAME.to_string(), username.to_string());
    }
    labels
}

/// Whether an existing namespace with these labels is the tenant's own:
/// Kiln made it (managed-by) for this user (their id, or their username on
/// a namespace made before ids were written).
pub fn adoptable(labels: Option<&BTreeMap<String, String>>, username: &str, id: Uuid) -> bool {
    let Some(labels) = labels else {
        return false;
    };
    let get = |k: &str| labels.get(k).map(String::as_str);
    if get(MANAGED_BY) != Some("kiln") {
        return false;
    }
    match get(TENANT_ID) {
        Some(owner) => owner == id.to_string(),
        None => get(TENANT_NAME) == Some(username),
    }
}

pub(super) async fn ensure_namespace(
    cluster: &K8sCluster,
    username: &str,
    id: Uuid,
) -> DriverResult<()> {
    let ns = cluster.namespace();
    let api: Api<Namespace> = Api::all(cluster.client().clone());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.into()),
            labels: Some(tenant_labels(username, id)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let what = format!("creating namespace {ns}");
    match cluster
        .bounded(&what, api.create(&PostParams::default(), &object))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_already_exists(&e) => {
            let what = format!("reading namespace {ns}");
            let existing = cluster
                .bounded(&what, api.get(ns))
                .await
                .map_err(|e| classify(e, &what))?;
            if adoptable(existing.metadata.labels.as_ref(), username, id) {
                Ok(())
            } else {
                Err(DriverError::permanent(format!(
                    "namespace {ns} already exists and Kiln did not create it for you, so Kiln will not use it; ask the operator to remove or rename it"
                )))
            }
        }
        Err(e) => Err(classify(e, &what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn tenants_get_their_own_namespace() {
        let a = id(0x1f2e3d4c_0000_0000_0000_000000000001);
        assert_eq!(tenant_namespace("alice", a), "kiln-alice");
        assert_eq!(tenant_namespace("Alice", a), "kiln-alice");
        assert_ne!(tenant_namespace("alice", a), tenant_namespace("bob", a));
    }

    #[test]
    fn every_username_gets_a_valid_namespace() {
        let u = id(0x1f2e3d4c_5b6a_0000_0000_000000000001);
        assert_eq!(tenant_namespace("bob.smith", u), "kiln-bob-smith-1f2e3d4c");
        assert_eq!(tenant_namespace("bob_smith", u), "kiln-bob-smith-1f2e3d4c");
        assert_eq!(tenant_namespace("-bob-", u), "kiln-bob-1f2e3d4c");
        assert_eq!(tenant_namespace("ñ", u), "kiln-1f2e3d4c");
        for name in [
            "bob.smith",
            "Bob Smith",
            "a..b",
            "-",
            "",
            "élise",
            "x_",
            &"a".repeat(59),
            &"a.".repeat(100),
            "日本語",
        ] {
            let ns = tenant_namespace(name, u);
            assert!(is_dns_label(&ns), "{name:?} -> {ns:?}");
        }
        // Two usernames that clean up alike are told apart by the id.
        assert_ne!(
            tenant_namespace("bob.smith", u),
            tenant_namespace("bob_smith", id(2))
        );
    }

    #[test]
    fn only_a_namespace_kiln_made_for_this_tenant_is_adopted() {
        let alice = id(1);
        let mine = tenant_labels("alice", alice);
        assert!(adoptable(Some(&mine), "alice", alice));
        // Someone else's, unlabelled, or labelled by another tool.
        assert!(!adoptable(
            Some(&tenant_labels("bob", id(2))),
            "alice",
            alice
        ));
        assert!(!adoptable(None, "alice", alice));
        assert!(!adoptable(Some(&BTreeMap::new()), "alice", alice));
        let mut forged = mine.clone();
        forged.insert(MANAGED_BY.into(), "helm".into());
        assert!(!adoptable(Some(&forged), "alice", alice));
        // A namespace from before ids were written: the username decides.
        let old = BTreeMap::from([
            (MANAGED_BY.to_string(), "kiln".to_string()),
            (TENANT_NAME.to_string(), "alice".to_string()),
        ]);
        assert!(adoptable(Some(&old), "alice", alice));
        assert!(!adoptable(Some(&old), "system", id(3)));
    }
}
