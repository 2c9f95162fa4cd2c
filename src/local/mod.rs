// TEMP STUB
use crate::driver::*;
use std::collections::HashMap;
pub struct LocalSandboxes;
impl LocalSandboxes {
    pub fn new(_: &std::path::Path, _: Option<String>) -> Result<Self, DriverError> {
        todo!()
    }
}
pub struct LocalDatabases;
impl LocalDatabases {
    pub async fn connect(_: &str) -> Result<Self, DriverError> {
        todo!()
    }
}
#[async_trait::async_trait]
impl SandboxDriver for LocalSandboxes {
    async fn ensure(&self, _: &SandboxSpec) -> DriverResult<Observed> {
        todo!()
    }
    async fn stop(&self, _: &ResourceRef) -> DriverResult<Observed> {
        todo!()
    }
    async fn delete(&self, _: &ResourceRef) -> DriverResult<()> {
        todo!()
    }
    async fn observe(&self, _: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        todo!()
    }
    async fn sync_env(&self, _: &SandboxSpec) -> DriverResult<()> {
        todo!()
    }
}
#[async_trait::async_trait]
impl DatabaseDriver for LocalDatabases {
    async fn ensure(&self, _: &DatabaseSpec) -> DriverResult<Observed> {
        todo!()
    }
    async fn stop(&self, _: &DatabaseSpec) -> DriverResult<Observed> {
        todo!()
    }
    async fn delete(&self, _: &ResourceRef) -> DriverResult<()> {
        todo!()
    }
    async fn observe(&self, _: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        todo!()
    }
    async fn credentials(&self, _: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        todo!()
    }
}
