//! Which back end serves a user (DESIGN §6), first rule that applies:
//! 1. the user set a kubeconfig: that cluster, in its current context's namespace;
//! 2. the server has a cluster (in-cluster or `KUBECONFIG`): that cluster, in
//!    a namespace of the user's own, `kiln-{username}` (made DNS-safe), created
//!    and labelled, and never one that Kiln did not create for that user;
//! 3. the local driver.
//!
//! [`Backends`] implements the driver traits by routing each resource to its
//! owner's back end, so the reconcile loop and the console stay unaware of
//! where anything runs. Clients are cached per user and rebuilt when the
//! kubeconfig changes; the cache is re-checked every few seconds, so a change
//! made through another replica is picked up too.
//!
//! One module per job: `router` decides, `dispatch` sends each driver call
//! where `router` says, `cache` keeps each user's route, `namespace` makes
//! a tenant's namespace, `drift` turns cluster watch reports into due rows,
//! `tenants` says where tenants' details come from and `store_tenants`
//! reads them from the store.

mod cache;
mod dispatch;
pub mod drift;
pub mod namespace;
pub mod router;
pub mod store_tenants;
pub mod tenants;

pub use drift::spawn_drift_marker;
pub use namespace::tenant_namespace;
pub use router::{Backends, LocalBackend, Route};
pub use tenants::{TenantDirectory, TenantInfo};
