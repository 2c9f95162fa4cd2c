//! The store as the router's [`TenantDirectory`]. It sits in its own module
//! (not in `store/`, which must know nothing of drivers or back ends, nor in
//! the router, which knows only the trait, so tests route with a table of
//! their own) and so the dependency runs one way: `backends → store`, here
//! and in `drift`; nothing in `store/` imports anything from `backends/`.

use async_trait::async_trait;
use uuid::Uuid;

use super::tenants::{TenantDirectory, TenantInfo};
use crate::driver::{DriverError, DriverResult};
use crate::store::Store;

#[async_trait]
impl TenantDirectory for Store {
    async fn tenant(&self, user: Uuid) -> DriverResult<TenantInfo> {
        let (username, kubeconfig) = self
            .tenant_backend_inputs(user)
            .await
            .map_err(|e| DriverError::transient(format!("reading the user's back end: {e}")))?;
        Ok(TenantInfo {
            username,
            kubeconfig,
        })
    }
}
