//! The driver traits on [`Backends`]: every call goes to the back end that
//! serves the resource's owner; observation is grouped per back end.

use std::collections::HashMap;

use async_trait::async_trait;

use super::router::{Backends, Route};
use crate::driver::{
    Attachment, DatabaseDriver, DatabaseSpec, DbCredentials, DriverError, DriverResult, LogEvent,
    Observed, ResourceRef, SandboxDriver, SandboxLogs, SandboxSpec, SessionAttach, SessionInfo,
    Viewer,
};

#[async_trait]
impl SandboxDriver for Backends {
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.sandboxes.ensure(spec).await,
            Route::Cluster(c) => SandboxDriver::ensure(c.as_ref(), spec).await,
        }
    }

    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed> {
        match self.route(r.owner).await? {
            Route::Local => self.local.sandboxes.stop(r).await,
            Route::Cluster(c) => SandboxDriver::stop(c.as_ref(), r).await,
        }
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        match self.route(r.owner).await? {
            Route::Local => self.local.sandboxes.delete(r).await,
            Route::Cluster(c) => SandboxDriver::delete(c.as_ref(), r).await,
        }
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let mut out = HashMap::with_capacity(rs.len());
        for (route, refs) in self.group(rs).await? {
            let seen = match route {
                Route::Local => self.local.sandboxes.observe(&refs).await?,
                Route::Cluster(c) => SandboxDriver::observe(c.as_ref(), &refs).await?,
            };
            out.extend(seen);
        }
        Ok(out)
    }

    async fn sync_env(&self, spec: &SandboxSpec) -> DriverResult<()> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.sandboxes.sync_env(spec).await,
            Route::Cluster(c) => c.sync_env(spec).await,
        }
    }
}

#[async_trait]
impl DatabaseDriver for Backends {
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.databases.ensure(spec).await,
            Route::Cluster(c) => DatabaseDriver::ensure(c.as_ref(), spec).await,
        }
    }

    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.databases.stop(spec).await,
            Route::Cluster(c) => DatabaseDriver::stop(c.as_ref(), spec).await,
        }
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        match self.route(r.owner).await? {
            Route::Local => self.local.databases.delete(r).await,
            Route::Cluster(c) => DatabaseDriver::delete(c.as_ref(), r).await,
        }
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        let mut out = HashMap::with_capacity(rs.len());
        for (route, refs) in self.group(rs).await? {
            let seen = match route {
                Route::Local => self.local.databases.observe(&refs).await?,
                Route::Cluster(c) => DatabaseDriver::observe(c.as_ref(), &refs).await?,
            };
            out.extend(seen);
        }
        Ok(out)
    }

    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        match self.route(spec.resource.owner).await? {
            Route::Local => self.local.databases.credentials(spec).await,
            Route::Cluster(c) => c.credentials(spec).await,
        }
    }
}

#[async_trait]
impl SessionAttach for Backends {
    async fn sessions(&self, r: &ResourceRef) -> DriverResult<Vec<SessionInfo>> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.sessions(r).await,
            Route::Cluster(c) => c.sessions(r).await,
        }
    }

    async fn app_endpoint(
        &self,
        r: &ResourceRef,
    ) -> DriverResult<Option<crate::driver::AppEndpoint>> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.app_endpoint(r).await,
            Route::Cluster(c) => c.app_endpoint(r).await,
        }
    }

    async fn attach(
        &self,
        r: &ResourceRef,
        session: Option<&str>,
        viewer: &Viewer,
    ) -> DriverResult<Attachment> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.attach(r, session, viewer).await,
            Route::Cluster(c) => c.attach(r, session, viewer).await,
        }
    }

    async fn restart(&self, r: &ResourceRef, session: Option<&str>) -> DriverResult<()> {
        match self.route(r.owner).await? {
            Route::Local => self.local_attach()?.restart(r, session).await,
            Route::Cluster(c) => c.restart(r, session).await,
        }
    }
}

#[async_trait]
impl SandboxLogs for Backends {
    async fn logs(
        &self,
        r: &ResourceRef,
        tail: Option<i64>,
        follow: bool,
    ) -> DriverResult<tokio::sync::mpsc::Receiver<LogEvent>> {
        match self.route(r.owner).await? {
            Route::Local => Err(DriverError::permanent(
                "logs: sandboxes on the local driver have no container log; attach to see the session",
            )),
            Route::Cluster(c) => c.logs(r, tail, follow).await,
        }
    }
}
