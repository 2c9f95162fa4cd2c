//! Each user's route, kept for a few seconds and for as long as their
//! kubeconfig stays the same, so a client (its connections, its watch) is
//! rebuilt only when the kubeconfig changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::router::Route;

/// How long a user's route is trusted before the kubeconfig is read again.
const ROUTE_TTL: Duration = Duration::from_secs(5);

struct Cached {
    fetched: Instant,
    kubeconfig: Option<u64>,
    route: Route,
    /// The route's drift watch; replaced (and so stopped) with the route.
    _watch: Option<WatchGuard>,
}

/// Stops a watch task when dropped.
struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the cache holds for one user.
pub(super) struct Lookup {
    /// Younger than [`ROUTE_TTL`]: use it without asking anyone.
    pub fresh: bool,
    /// The fingerprint of the kubeconfig the route was built from.
    pub kubeconfig: Option<u64>,
    pub route: Route,
}

#[derive(Default)]
pub(super) struct RouteCache {
    routes: Mutex<HashMap<Uuid, Cached>>,
}

impl RouteCache {
    pub fn get(&self, owner: Uuid) -> Option<Lookup> {
        let routes = self.routes.lock().expect("routes lock");
        routes.get(&owner).map(|c| Lookup {
            fresh: c.fetched.elapsed() < ROUTE_TTL,
            kubeconfig: c.kubeconfig,
            route: c.route.clone(),
        })
    }

    /// The route is still right: trust it for another [`ROUTE_TTL`].
    pub fn touch(&self, owner: Uuid) {
        if let Some(c) = self.routes.lock().expect("routes lock").get_mut(&owner) {
            c.fetched = Instant::now();
        }
    }

    /// Keeps a new route (and its watch, stopped when the route is replaced).
    pub fn insert(
        &self,
        owner: Uuid,
        kubeconfig: Option<u64>,
        route: Route,
        watch: Option<tokio::task::JoinHandle<()>>,
    ) {
        self.routes.lock().expect("routes lock").insert(
            owner,
            Cached {
                fetched: Instant::now(),
                kubeconfig,
                route,
                _watch: watch.map(WatchGuard),
            },
        );
    }

    pub fn forget(&self, owner: Uuid) {
        self.routes.lock().expect("routes lock").remove(&owner);
    }
}

/// A stable fingerprint of a kubeconfig, to notice a change without keeping
/// a second copy of the secret around.
pub(super) fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_kubeconfig_has_a_new_fingerprint() {
        assert_eq!(fingerprint("a: 1"), fingerprint("a: 1"));
        assert_ne!(fingerprint("a: 1"), fingerprint("a: 2"));
    }
}
