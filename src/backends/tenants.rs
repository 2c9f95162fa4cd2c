//! Where the router learns who a user is and which kubeconfig they set.

use async_trait::async_trait;
use uuid::Uuid;

use crate::driver::DriverResult;

/// What the router needs to know about a user.
#[derive(Clone)]
pub struct TenantInfo {
    pub username: String,
    pub kubeconfig: Option<String>,
}

/// Where tenants' details come from (the store, or a test's table).
#[async_trait]
pub trait TenantDirectory: Send + Sync + 'static {
    async fn tenant(&self, user: Uuid) -> DriverResult<TenantInfo>;
}
