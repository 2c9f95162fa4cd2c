//! Applies a tenant namespace's NetworkPolicies (built in `network_policy`)
//! on the server's cluster, once per namespace each time Kiln first routes
//! the tenant there (at start, or when the route is rebuilt). Server-side
//! apply makes it idempotent, and brings policies that differ (changed by
//! hand, or made from other settings) back to the current rules.
//!
//! A team is a tenant like a user (an account of its own), so its
//! projects get `kiln-TEAM` with the same policies, apart from every
//! member's own namespace (`k8s_isolation::a_teams_projects_…`).
//!
//! Not done in a namespace a tenant's own kubeconfig names: that cluster
//! is theirs, and Kiln holds no other tenant there.

use super::cluster::K8sCluster;
use super::network_policy::namespace_policies;
use crate::driver::{DriverError, DriverResult};

impl K8sCluster {
    /// Applies the namespace's policies, the default deny first.
    pub async fn ensure_network_policies(&self) -> DriverResult<()> {
        for policy in namespace_policies(self.namespace(), self.settings()) {
            self.apply(&policy, "network policy")
                .await
                .map_err(|e| match e {
                    // Most likely Kiln's own RBAC: say who can fix it.
                    DriverError::Permanent(msg) => DriverError::permanent(format!(
                        "{msg}; Kiln's service account needs create and patch on networkpolicies (networking.k8s.io) in tenant namespaces: ask the operator"
                    )),
                    transient => transient,
                })?;
        }
        Ok(())
    }
}
