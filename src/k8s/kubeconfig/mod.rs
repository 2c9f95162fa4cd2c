//! A tenant's kubeconfig: untrusted input that tells Kiln which cluster,
//! credentials and namespace to use for the tenant's sandboxes.
//!
//! [`parse`] is pure and refuses anything that would make the Kiln server read
//! its own files or run commands on the tenant's behalf (exec plugins, auth
//! providers, paths to certificates, keys or tokens), keeping only the current
//! context with its cluster and user. [`validate`] also connects: the API server
//! must answer, and a SelfSubjectAccessReview must allow what the driver does.
//! Every connection to the API server goes through [`guard`]: no loopback,
//! link-local or private address unless the operator allows it.
//!
//! Error messages say what is wrong and what to do, name entries by their names,
//! and never contain credentials (tokens, passwords, keys) from the input.

mod connect;
mod guard;
mod nesting;
mod parse;
#[cfg(test)]
mod properties;
mod text;

use std::time::Duration;

use crate::model::secret::Secret;

pub use connect::{Access, REQUIRED_ACCESS};
pub use guard::{ApiServerPolicy, GuardError, GuardedConnector, forbidden, guard_refusal};
pub use parse::parse;

/// Larger kubeconfigs are refused before parsing.
pub const MAX_KUBECONFIG_BYTES: usize = 256 * 1024;
/// Bound for opening a TCP (and TLS) connection to the tenant's API server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for each request [`validate`] makes.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(15);
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the kubeconfig is empty; paste the whole file (kubectl config view --minify --raw)")]
    Empty,
    #[error(
        "the kubeconfig is {size} bytes; the limit is {limit} bytes (kubectl config view --minify --raw gives just the current context)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "the kubeconfig nests [ ] or {{ }} more than {limit} levels deep; a kubeconfig needs a few (kubectl config view --minify --raw writes one)"
    )]
    TooDeep { limit: usize },
    #[error(
        "the kubeconfig is not valid kubeconfig YAML ({detail}); check the file is complete and unchanged"
    )]
    Yaml { detail: String },
    #[error("the kubeconfig has no current-context; set one with kubectl config use-context NAME")]
    NoCurrentContext,
    #[error(
        "the current-context {context} is not among the kubeconfig's contexts; add it or pick another with kubectl config use-context"
    )]
    ContextNotFound { context: String },
    #[error(
        "context {context} names cluster {cluster}, which the kubeconfig does not define; add the cluster entry"
    )]
    ClusterNotFound { context: String, cluster: String },
    #[error(
        "context {context} has no user; add a user with credentials (for example a service account token)"
    )]
    NoUser { context: String },
    #[error(
        "context {context} names user {user}, which the kubeconfig does not define; add the user entry"
    )]
    UserNotFound { context: String, user: String },
    #[error("cluster {cluster} has no server URL; add server: https://HOST:PORT")]
    NoServer { cluster: String },
    #[error("the server URL of cluster {cluster} is not usable: {problem}")]
    BadServer {
        cluster: String,
        problem: &'static str,
    },
    #[error(
        "user {user} gets its credentials from an exec plugin, which Kiln will not run; use a token instead (for example a service account token: kubectl create token NAME)"
    )]
    ExecPlugin { user: String },
    #[error(
        "user {user} uses the {provider} auth-provider, which Kiln does not support; use a token or client certificate data instead"
    )]
    AuthProvider { user: String, provider: String },
    #[error(
        "{entry} refers to a file ({field}), which Kiln cannot read; embed the contents instead ({hint}), e.g. with kubectl config view --minify --raw --flatten"
    )]
    FileReference {
        entry: String,
        field: String,
        hint: &'static str,
    },
    #[error(
        "cluster {cluster} sets proxy-url, which Kiln does not support; remove it so Kiln connects directly"
    )]
    Proxy { cluster: String },
    #[error("the namespace {namespace} is not a valid Kubernetes namespace name: {problem}")]
    BadNamespace {
        namespace: String,
        problem: &'static str,
    },
    #[error("the kubeconfig could not be turned into a client configuration: {detail}")]
    Config { detail: String },
    /// `reason` is one of a few fixed texts: never the server's answer, and
    /// never whether a port was closed, refused or spoke another protocol.
    #[error(
        "the API server at {server} is unreachable: {reason}; check the server URL and that the cluster accepts connections from Kiln"
    )]
    Unreachable { server: String, reason: String },
    #[error(
        "the API server at {server} did not answer within {seconds} s; check the server URL and the cluster's health"
    )]
    Timeout { server: String, seconds: u64 },
    #[error(
        "the API server at {server} rejected the credentials (401 Unauthorized); the token or certificate may have expired; create a new one"
    )]
    Unauthorized { server: String },
    #[error("the API server at {server} refused the request ({code}): {message}")]
    Api {
        server: String,
        code: u16,
        message: String,
    },
    #[error(
        "the credentials may not {access} in namespace {namespace}: {reason}; grant it with a Role and RoleBinding in that namespace"
    )]
    Denied {
        namespace: String,
        access: String,
        reason: String,
    },
}

/// A tenant's kubeconfig that passed [`parse`]: only the current context, its
/// cluster and its user are kept.
#[derive(Debug, Clone)]
pub struct TenantKubeconfig {
    /// The context's namespace, or "default".
    pub namespace: String,
    /// The name of the current context.
    pub context: String,
    /// The API server URL (http or https, no credentials in it).
    pub server: String,
    /// The checked kubeconfig as JSON; secret because it holds the credentials.
    kubeconfig: Secret<String>,
}

/// [`parse`], then a client, then [`TenantKubeconfig::check_access`] with
/// [`VALIDATE_TIMEOUT`] per request.
pub async fn validate(
    yaml: &str,
    policy: ApiServerPolicy,
) -> Result<TenantKubeconfig, KubeconfigError> {
    validate_within(yaml, VALIDATE_TIMEOUT, policy).await
}

/// [`validate`] with another bound per request.
pub async fn validate_within(
    yaml: &str,
    limit: Duration,
    policy: ApiServerPolicy,
) -> Result<TenantKubeconfig, KubeconfigError> {
    let tenant = parse(yaml)?;
    let client = tenant.client(policy).await?;
    tenant.check_access(&client, limit).await?;
    Ok(tenant)
}

/// The client for Kiln's own cluster: `KUBECONFIG` (or ~/.kube/config) when
/// set, else the in-cluster service account. This is the operator's trusted
/// configuration, so exec plugins and files are fine here.
pub async fn server_client() -> Result<kube::Client, kube::Error> {
    kube::Client::try_default().await
}
