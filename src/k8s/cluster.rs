//! One tenant's place on a cluster: a client and the namespace its resources
//! live in. The driver traits are implemented on it in `sandbox.rs`,
//! `database.rs` and `attach.rs`; this module holds what they share: scoping
//! a resource to the namespace, bounding every call in time, and sorting
//! API errors into "retry later" and "needs a person".

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::settings::K8sSettings;
use crate::driver::{DriverError, DriverResult, ResourceRef};

/// Who owns the fields Kiln sets by server-side apply.
pub const FIELD_MANAGER: &str = "kiln";

/// A client, the namespace it acts in, and the settings objects are built from.
#[derive(Clone)]
pub struct K8sCluster {
    client: Client,
    namespace: String,
    settings: Arc<K8sSettings>,
    /// Where this tenant's sandboxes claimed from the warm pool run (the
    /// pool's namespace on the server's cluster; see `k8s::pool`). `None`
    /// for a tenant's own cluster, where nothing is claimed.
    pool: Option<Arc<K8sCluster>>,
}

// Written by hand because kube's `Client` has no `Debug`; nothing secret is
// hidden here (secrets use `model::secret::Secret`).
impl std::fmt::Debug for K8sCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sCluster")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl K8sCluster {
    pub fn new(client: Client, namespace: impl Into<String>, settings: Arc<K8sSettings>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            settings,
            pool: None,
        }
    }

    /// The same tenant place, whose pooled sandboxes live in `pool`.
    pub fn with_pool(mut self, pool: Arc<K8sCluster>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Where `r` lives when it is a sandbox or database claimed from the
    /// pool (its name is a pooled one, which no other resource's ever is);
    /// `None`: in this namespace.
    pub fn pool_home(&self, r: &ResourceRef) -> Option<&Arc<K8sCluster>> {
        self.pool.as_ref().filter(|_| {
            crate::model::naming::is_pooled_sandbox_name(&r.resource_name)
                || crate::model::naming::is_pooled_database_name(&r.resource_name)
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn settings(&self) -> &K8sSettings {
        &self.settings
    }

    /// One API call, bounded by `kubernetes.api_timeout_secs`.
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CallError> {
        bounded_within(self.settings.api_timeout(), what, call).await
    }

    /// The resource as this cluster knows it: whatever namespace the row
    /// carries, a tenant's objects live in the tenant's namespace.
    pub(crate) fn scoped(&self, r: &ResourceRef) -> ResourceRef {
        ResourceRef {
            namespace: self.namespace.clone(),
            ..r.clone()
        }
    }

    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Server-side apply as Kiln's field manager, forced: creates the object
    /// or makes the fields Kiln sets exactly the desired ones (a list such
    /// as a Role's rules or a policy's egress is replaced whole), however
    /// the object was made. Idempotent: applying again changes nothing.
    pub(crate) async fn apply<K>(&self, obj: &K, kind: &str) -> DriverResult<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let what = format!("applying {kind} {name}");
        self.bounded(
            &what,
            self.api::<K>().patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            ),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify(e, &what))
    }

    /// Deletes `name`; one that is already gone counts as deleted.
    pub(crate) async fn delete_quietly<K>(
        &self,
        api: &Api<K>,
        name: &str,
        what: &str,
    ) -> DriverResult<()>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        match self
            .bounded(what, api.delete(name, &DeleteParams::background()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(classify(e, what)),
        }
    }
}

/// Runs one API call for at most `limit`; a timeout becomes a transient
/// error that names the call.
pub(crate) async fn bounded_within<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Kube(e)),
        Err(_) => Err(CallError::Timeout(format!(
            "{what}: the API server did not answer within {}s",
            limit.as_secs()
        ))),
    }
}

/// A failed API call: the server's answer, or no answer in time.
#[derive(Debug)]
pub(crate) enum CallError {
    Kube(kube::Error),
    Timeout(String),
}

fn api_status(e: &CallError) -> Option<&kube::core::Status> {
    match e {
        CallError::Kube(kube::Error::Api(s)) => Some(s),
        _ => None,
    }
}

pub(crate) fn is_not_found(e: &CallError) -> bool {
    api_status(e).is_some_and(|s| s.code == 404)
}

pub(crate) fn is_already_exists(e: &CallError) -> bool {
    api_status(e).is_some_and(|s| s.code == 409 && s.reason == "AlreadyExists")
}

/// Sorts a failed call into what the reconcile loop should do: forbidden and
/// invalid need a person (ERROR with the server's reason); everything else
/// (5xx, throttling, conflicts, timeouts, a dropped connection) is retried
/// with backoff.
pub(crate) fn classify(e: CallError, what: &str) -> DriverError {
    match e {
        CallError::Timeout(msg) => DriverError::Transient(msg),
        CallError::Kube(kube::Error::Api(s)) => {
            let reason = status_message(&s);
            match s.code {
                401 => DriverError::permanent(format!(
                    "{what}: the cluster does not accept the credentials (401 Unauthorized): {reason}; set a fresh kubeconfig"
                )),
                403 => DriverError::permanent(format!(
                    "{what}: forbidden by the cluster (403): {reason}"
                )),
                400 | 422 => DriverError::permanent(format!(
                    "{what}: the cluster rejected the object as invalid ({}): {reason}",
                    s.code
                )),
                code => DriverError::transient(format!("{what}: {code} {reason}")),
            }
        }
        CallError::Kube(other) => match crate::k8s::kubeconfig::guard_refusal(&other) {
            // The operator's rule, not a passing fault: retrying cannot help.
            Some(refusal) => DriverError::permanent(format!(
                "{what}: Kiln does not contact this API server: {refusal}"
            )),
            None => DriverError::transient(format!("{what}: cannot reach the cluster: {other}")),
        },
    }
}

/// What kube calls the reason when an error answer was not a Kubernetes
/// `Status` and it put the raw body in the message instead.
const NOT_A_STATUS: &str = "Failed to parse error data";

/// The API server's message for an error, fit to show a tenant: a body
/// that was not a Kubernetes `Status` (a proxy's page, or whatever else
/// answers at the URL a kubeconfig names) is never echoed.
pub(crate) fn status_message(s: &kube::core::Status) -> String {
    if s.reason == NOT_A_STATUS {
        format!(
            "the server's answer ({}) was not a Kubernetes API response",
            s.code
        )
    } else if s.message.is_empty() {
        s.reason.clone()
    } else {
        s.message.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16, reason: &str, message: &str) -> CallError {
        let mut s = Status::failure(message, reason);
        s.code = code;
        CallError::Kube(kube::Error::Api(s.boxed()))
    }

    #[test]
    fn forbidden_and_invalid_need_a_person_the_rest_is_retried() {
        let table = [
            (403, "Forbidden", false),
            (401, "Unauthorized", false),
            (422, "Invalid", false),
            (400, "BadRequest", false),
            (500, "InternalError", true),
            (503, "ServiceUnavailable", true),
            (429, "TooManyRequests", true),
            (409, "Conflict", true),
            (404, "NotFound", true),
        ];
        for (code, reason, transient) in table {
            let e = classify(api_error(code, reason, "the message"), "creating x");
            assert_eq!(e.is_transient(), transient, "{code}");
            assert!(e.to_string().contains("creating x"), "{e}");
            assert!(e.to_string().contains("the message"), "{e}");
        }
        let t = classify(CallError::Timeout("listing: slow".into()), "listing");
        assert!(t.is_transient());
    }

    #[test]
    fn a_refused_api_server_address_needs_a_person() {
        use crate::k8s::kubeconfig::GuardError;
        let e = classify(
            CallError::Kube(kube::Error::Service(Box::new(GuardError::Forbidden))),
            "creating x",
        );
        assert!(!e.is_transient(), "{e}");
        assert!(e.to_string().contains("allow_private_api_servers"), "{e}");
        let e = classify(
            CallError::Kube(kube::Error::Service("connection reset".into())),
            "creating x",
        );
        assert!(e.is_transient(), "{e}");
    }

    #[test]
    fn an_answer_that_is_not_a_status_is_never_echoed() {
        let mut s = Status::failure("<html>secret internal page</html>", NOT_A_STATUS);
        s.code = 404;
        let shown = status_message(&s);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("404"), "{shown}");
        let e = classify(CallError::Kube(kube::Error::Api(s.boxed())), "listing");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn not_found_and_already_exists_are_recognised() {
        assert!(is_not_found(&api_error(404, "NotFound", "")));
        assert!(!is_not_found(&api_error(409, "AlreadyExists", "")));
        assert!(is_already_exists(&api_error(409, "AlreadyExists", "")));
        // A 409 from a stale resourceVersion is a conflict, not "exists".
        assert!(!is_already_exists(&api_error(409, "Conflict", "")));
    }
}
