//! An in-memory driver for tests and benchmarks: it keeps resources in a map,
//! counts every call, and lets the caller inject latency, failures and hangs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::driver::{
    DatabaseDriver, DatabaseSpec, DbCredentials, DriverError, DriverResult, Observed, ResourceRef,
    SandboxDriver, SandboxSpec,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Sandbox,
    Database,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Ensure,
    Stop,
    Delete,
    Observe,
    SyncEnv,
    Credentials,
}

/// A failure queued for the next matching call (`None` name = any resource).
type InjectedFailure = (Option<String>, DriverError);

#[derive(Default)]
struct State {
    resources: HashMap<(Kind, String), Observed>,
    env: HashMap<String, Vec<(String, String)>>,
    calls: HashMap<(Kind, Op, String), u32>,
    failures: HashMap<(Kind, Op), VecDeque<InjectedFailure>>,
    hangs: HashSet<String>,
    /// What `ensure` leaves behind: Running by default, Starting to model a
    /// back end that needs time (the test then flips it with `set`).
    ensure_result: Option<Observed>,
    /// Databases have credentials only once they run (as a cluster's do
    /// on Kubernetes): a sandbox made before gets no `DATABASE_URL`.
    credentials_once_running: bool,
}

#[derive(Default)]
pub struct FakeDriver {
    state: Mutex<State>,
    latency: Mutex<Duration>,
    unhung: Notify,
}

impl FakeDriver {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_latency(&self, d: Duration) {
        *self.latency.lock().unwrap() = d;
    }

    /// Calls of `op` on `name` so far.
    pub fn calls(&self, kind: Kind, op: Op, name: &str) -> u32 {
        let s = self.state.lock().unwrap();
        s.calls
            .get(&(kind, op, name.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Calls of `op` on any resource of `kind`.
    pub fn total_calls(&self, kind: Kind, op: Op) -> u32 {
        let s = self.state.lock().unwrap();
        s.calls
            .iter()
            .filter(|((k, o, _), _)| *k == kind && *o == op)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every resource name `op` was called on, with its count.
    pub fn call_counts(&self, kind: Kind, op: Op) -> HashMap<String, u32> {
        let s = self.state.lock().unwrap();
        s.calls
            .iter()
            .filter(|((k, o, _), _)| *k == kind && *o == op)
            .map(|((_, _, n), c)| (n.clone(), *c))
            .collect()
    }

    /// The next call of `op` (on `name`, or on anything when `None`) fails with `err`.
    pub fn fail_next(&self, kind: Kind, op: Op, name: Option<&str>, err: DriverError) {
        let mut s = self.state.lock().unwrap();
        s.failures
            .entry((kind, op))
            .or_default()
            .push_back((name.map(str::to_string), err));
    }

    /// Calls that touch `name` block until [`FakeDriver::release`].
    pub fn hang(&self, name: &str) {
        self.state.lock().unwrap().hangs.insert(name.to_string());
    }

    pub fn release(&self, name: &str) {
        self.state.lock().unwrap().hangs.remove(name);
        self.unhung.notify_waiters();
    }

    /// Databases answer `credentials` only once they run (see
    /// [`State::credentials_once_running`]).
    pub fn credentials_once_running(&self) {
        self.state.lock().unwrap().credentials_once_running = true;
    }

    pub fn set_ensure_result(&self, o: Observed) {
        self.state.lock().unwrap().ensure_result = Some(o);
    }

    /// Changes the world behind Kiln's back (a crash, a hand-scaled pod).
    pub fn set(&self, kind: Kind, name: &str, o: Observed) {
        self.state
            .lock()
            .unwrap()
            .resources
            .insert((kind, name.to_string()), o);
    }

    pub fn get(&self, kind: Kind, name: &str) -> Observed {
        self.state
            .lock()
            .unwrap()
            .resources
            .get(&(kind, name.to_string()))
            .cloned()
            .unwrap_or(Observed::Absent)
    }

    pub fn env_of(&self, name: &str) -> Option<Vec<(String, String)>> {
        self.state.lock().unwrap().env.get(name).cloned()
    }

    /// Counts the call, waits out the latency and any hang, then reports an
    /// injected failure if one is queued for this call.
    async fn enter(&self, kind: Kind, op: Op, name: &str) -> DriverResult<()> {
        {
            let mut s = self.state.lock().unwrap();
            *s.calls.entry((kind, op, name.to_string())).or_default() += 1;
        }
        loop {
            let notified = self.unhung.notified();
            if !self.state.lock().unwrap().hangs.contains(name) {
                break;
            }
            notified.await;
        }
        let latency = *self.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut s = self.state.lock().unwrap();
        if let Some(queue) = s.failures.get_mut(&(kind, op))
            && let Some(pos) = queue
                .iter()
                .position(|(n, _)| n.as_deref().is_none_or(|n| n == name))
        {
            let (_, err) = queue.remove(pos).expect("position is in range");
            return Err(err);
        }
        Ok(())
    }

    fn put(&self, kind: Kind, name: &str, o: Observed) -> Observed {
        self.state
            .lock()
            .unwrap()
            .resources
            .insert((kind, name.to_string()), o.clone());
        o
    }

    fn remove(&self, kind: Kind, name: &str) {
        self.state
            .lock()
            .unwrap()
            .resources
            .remove(&(kind, name.to_string()));
    }

    fn ensured(&self) -> Observed {
        self.state
            .lock()
            .unwrap()
            .ensure_result
            .clone()
            .unwrap_or(Observed::Running)
    }

    async fn observe_kind(
        &self,
        kind: Kind,
        rs: &[ResourceRef],
    ) -> DriverResult<HashMap<String, Observed>> {
        self.enter(kind, Op::Observe, "*").await?;
        Ok(rs
            .iter()
            .map(|r| (r.resource_name.clone(), self.get(kind, &r.resource_name)))
            .collect())
    }
}

#[async_trait]
impl SandboxDriver for FakeDriver {
    async fn ensure(&self, spec: &SandboxSpec) -> DriverResult<Observed> {
        let name = &spec.resource.resource_name;
        self.enter(Kind::Sandbox, Op::Ensure, name).await?;
        self.state
            .lock()
            .unwrap()
            .env
            .insert(name.clone(), spec.env.clone());
        Ok(self.put(Kind::Sandbox, name, self.ensured()))
    }

    async fn stop(&self, r: &ResourceRef) -> DriverResult<Observed> {
        self.enter(Kind::Sandbox, Op::Stop, &r.resource_name)
            .await?;
        Ok(self.put(Kind::Sandbox, &r.resource_name, Observed::Stopped))
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        self.enter(Kind::Sandbox, Op::Delete, &r.resource_name)
            .await?;
        self.remove(Kind::Sandbox, &r.resource_name);
        Ok(())
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        self.observe_kind(Kind::Sandbox, rs).await
    }

    async fn sync_env(&self, spec: &SandboxSpec) -> DriverResult<()> {
        let name = &spec.resource.resource_name;
        self.enter(Kind::Sandbox, Op::SyncEnv, name).await?;
        if self.get(Kind::Sandbox, name) != Observed::Running {
            return Err(DriverError::transient(format!(
                "sandbox {name} is not running"
            )));
        }
        self.state
            .lock()
            .unwrap()
            .env
            .insert(name.clone(), spec.env.clone());
        Ok(())
    }
}

#[async_trait]
impl DatabaseDriver for FakeDriver {
    async fn ensure(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let name = &spec.resource.resource_name;
        self.enter(Kind::Database, Op::Ensure, name).await?;
        Ok(self.put(Kind::Database, name, self.ensured()))
    }

    async fn stop(&self, spec: &DatabaseSpec) -> DriverResult<Observed> {
        let name = &spec.resource.resource_name;
        self.enter(Kind::Database, Op::Stop, name).await?;
        Ok(self.put(Kind::Database, name, Observed::Stopped))
    }

    async fn delete(&self, r: &ResourceRef) -> DriverResult<()> {
        self.enter(Kind::Database, Op::Delete, &r.resource_name)
            .await?;
        self.remove(Kind::Database, &r.resource_name);
        Ok(())
    }

    async fn observe(&self, rs: &[ResourceRef]) -> DriverResult<HashMap<String, Observed>> {
        self.observe_kind(Kind::Database, rs).await
    }

    async fn credentials(&self, spec: &DatabaseSpec) -> DriverResult<Option<DbCredentials>> {
        // Not counted through `enter`: sandboxes ask for it on every ensure,
        // and tests count lifecycle transitions, not lookups.
        let name = &spec.resource.resource_name;
        {
            let s = self.state.lock().unwrap();
            let running =
                s.resources.get(&(Kind::Database, name.clone())) == Some(&Observed::Running);
            if s.credentials_once_running && !running {
                return Ok(None);
            }
        }
        Ok(Some(DbCredentials {
            host: "fake.invalid".into(),
            port: 5432,
            database: spec.resource.resource_name.clone(),
            user: spec.resource.resource_name.clone(),
            password: spec.password.clone(),
        }))
    }
}
