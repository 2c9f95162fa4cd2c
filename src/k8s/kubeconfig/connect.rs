//! Connecting with a checked kubeconfig: building the tenant's client and
//! asking the cluster whether the credentials may do what the driver does.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::guard::{ApiServerPolicy, GuardError, guard_refusal, guarded_client};
use super::text::{clean, top_message};
use super::{KubeconfigError, TenantKubeconfig};

/// One permission the Kubernetes driver needs in the tenant's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.subresource.is_empty() {
            write!(f, "/{}", self.subresource)?;
        }
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        Ok(())
    }
}

/// What [`validate`](super::validate) asks the cluster about, in order; the first denial is reported.
pub const REQUIRED_ACCESS: &[Access] = &[
    Access {
        verb: "create",
        group: "apps",
        resource: "statefulsets",
        subresource: "",
    },
    Access {
        verb: "create",
        group: "",
        resource: "pods",
        subresource: "exec",
    },
];

impl TenantKubeconfig {
    /// The checked kubeconfig (current context, its cluster and user only).
    pub fn kubeconfig(&self) -> Result<Kubeconfig, KubeconfigError> {
        // Not the parser's message: it may quote a value, which may be a credential.
        serde_json::from_str(self.kubeconfig.expose_str()).map_err(|e| KubeconfigError::Config {
            detail: format!(
                "the checked kubeconfig could not be read back (column {})",
                e.column()
            ),
        })
    }

    /// A client for the tenant's cluster, with the tenant's namespace as its default.
    ///
    /// Every connection it opens is checked against `policy`
    /// ([`super::guard`]) and bounded by [`super::CONNECT_TIMEOUT`]. There is
    /// deliberately no read timeout: it would cut idle exec sessions and quiet
    /// watches (kube's default is none for that reason); bound single requests
    /// at the call site, as [`validate`](super::validate) does. No proxy from
    /// the server's environment is used.
    pub async fn client(&self, policy: ApiServerPolicy) -> Result<kube::Client, KubeconfigError> {
        let mut config =
            kube::Config::from_custom_kubeconfig(self.kubeconfig()?, &KubeConfigOptions::default())
                .await
                .map_err(|e| KubeconfigError::Config {
                    detail: top_message(&e),
                })?;
        config.read_timeout = None;
        config.proxy_url = None;
        config.default_namespace = self.namespace.clone();
        guarded_client(config, policy).map_err(|e| KubeconfigError::Config {
            detail: top_message(&e),
        })
    }

    /// The API server answers, and each of [`REQUIRED_ACCESS`] is allowed in the
    /// namespace. Each request is bounded by `limit`.
    pub async fn check_access(
        &self,
        client: &kube::Client,
        limit: Duration,
    ) -> Result<(), KubeconfigError> {
        self.bounded(limit, client.apiserver_version()).await?;
        let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
        for access in REQUIRED_ACCESS {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(self.namespace.clone()),
                        verb: Some(access.verb.to_string()),
                        group: Some(access.group.to_string()),
                        resource: Some(access.resource.to_string()),
                        subresource: Some(access.subresource.to_string()).filter(|s| !s.is_empty()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = self
                .bounded(limit, reviews.create(&PostParams::default(), &review))
                .await?;
            let status = answer.status.unwrap_or_default();
            if !status.allowed {
                let reason = status
                    .reason
                    .or(status.evaluation_error)
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "the cluster gave no reason".to_string());
                return Err(KubeconfigError::Denied {
                    namespace: self.namespace.clone(),
                    access: access.to_string(),
                    reason: clean(&reason),
                });
            }
        }
        Ok(())
    }

    async fn bounded<T>(
        &self,
        limit: Duration,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, KubeconfigError> {
        match tokio::time::timeout(limit, request).await {
            Err(_) => Err(KubeconfigError::Timeout {
                server: self.server.clone(),
                seconds: limit.as_secs().max(1),
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(kube::Error::Api(status))) if status.code == 401 => {
                Err(KubeconfigError::Unauthorized {
                    server: self.server.clone(),
                })
            }
            Ok(Err(kube::Error::Api(status))) => Err(KubeconfigError::Api {
                server: self.server.clone(),
                code: status.code,
                message: clean(&crate::k8s::cluster::status_message(&status)),
            }),
            Ok(Err(other)) => Err(KubeconfigError::Unreachable {
                server: self.server.clone(),
                reason: unreachable_reason(&other).to_string(),
            }),
        }
    }
}

/// Why no answer came, in as few words as can be said safely: the guard's
/// refusal is the operator's rule and is named; anything else (refused,
/// reset, closed, TLS or not HTTP at all) reads the same, so that the
/// errors cannot be used to map which ports are open where.
fn unreachable_reason(error: &kube::Error) -> &'static str {
    match guard_refusal(error) {
        Some(GuardError::Forbidden) => {
            "its address is loopback, link-local or private, which Kiln does not contact (the operator can allow it with kubernetes.allow_private_api_servers)"
        }
        Some(GuardError::NoHost | GuardError::NoAddress) => "its host name does not resolve",
        Some(GuardError::Connect) | None => "no Kubernetes API server answered there",
    }
}
