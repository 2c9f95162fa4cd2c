//! The `[kubernetes]` table of kiln.toml: what every sandbox and database
//! object is built from, checked once at start so a typo fails there and not
//! as an API-server rejection on the first create.

use serde::Deserialize;

/// The runtime image version this build of Kiln was written against.
pub const RUNTIME_VERSION: &str = include_str!("../../runtime/VERSION");

/// Where the runtime image is published (see runtime/README.md).
pub const RUNTIME_REPOSITORY: &str = "ghcr.io/kiln-dev/kiln-runtime";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sSettings {
    /// Runtime image with its tag.
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`.
    pub image_pull_policy: String,
    /// UID (and GID) the sandbox runs as; the image's `kiln` user.
    pub run_as_user: i64,
    pub sandbox_cpu_request: String,
    pub sandbox_memory_request: String,
    pub sandbox_cpu_limit: String,
    pub sandbox_memory_limit: String,
    /// Size of the sandbox's home volume.
    pub home_size: String,
    /// `None` = the cluster's default storage class.
    pub storage_class: Option<String>,
    /// Apps are published at `https://{resource}-app.{domain}`; `None` = no Ingress.
    pub domain: Option<String>,
    /// TLS secret of the Ingress (a wildcard certificate for `domain`).
    pub tls_secret: String,
    pub ingress_class: Option<String>,
    pub db_cluster_definition: String,
    pub db_cluster_version: String,
    pub db_replicas: i32,
    pub db_storage_size: String,
    pub db_storage_class: Option<String>,
    pub db_cpu_request: String,
    pub db_memory_request: String,
    pub db_cpu_limit: String,
    pub db_memory_limit: String,
    /// Longest wait for one API call before it counts as failed and is
    /// retried later: a hung API server must not hold a lease hostage.
    pub api_timeout_secs: u64,
    /// Whether a tenant's kubeconfig may name an API server on a loopback,
    /// link-local or private address. Off: a tenant could otherwise make
    /// Kiln talk to its own host's services or the cloud metadata endpoint.
    pub allow_private_api_servers: bool,
    /// Namespace of the ingress controller: the only place outside a
    /// tenant's namespace whose pods may open connections to its sandboxes
    /// (the app port only). See `network_policy`.
    pub ingress_namespace: String,
    /// Namespace of the KubeBlocks operator, which probes and manages the
    /// database pods from there.
    pub kubeblocks_namespace: String,
    /// How many pre-started sandboxes the warm pool keeps on the server's
    /// cluster (0: none). They run in [`Self::pool_namespace`] with no
    /// tenant data until a create claims one (see `k8s::pool`).
    pub pool_sandboxes: u32,
    /// How many pre-made databases (KubeBlocks clusters, in
    /// [`Self::pool_namespace`]) the server's cluster keeps ready (0: none).
    pub pool_databases: u32,
    /// The namespace of the warm pool's sandboxes, claimed ones included:
    /// a running pod cannot move to its tenant's namespace.
    pub pool_namespace: String,
}

impl Default for K8sSettings {
    fn default() -> Self {
        Self {
            image: default_image(),
            image_pull_policy: "IfNotPresent".into(),
            run_as_user: 1001,
            sandbox_cpu_request: "20m".into(),
            sandbox_memory_request: "25Mi".into(),
            sandbox_cpu_limit: "2000m".into(),
            sandbox_memory_limit: "4096Mi".into(),
            home_size: "10Gi".into(),
            storage_class: None,
            domain: None,
            tls_secret: "wildcard-cert".into(),
            ingress_class: None,
            db_cluster_definition: "postgresql".into(),
            db_cluster_version: "postgresql-14.8.0".into(),
            db_replicas: 1,
            db_storage_size: "3Gi".into(),
            db_storage_class: None,
            db_cpu_request: "100m".into(),
            db_memory_request: "102Mi".into(),
            db_cpu_limit: "1000m".into(),
            db_memory_limit: "1024Mi".into(),
            api_timeout_secs: 20,
            allow_private_api_servers: false,
            ingress_namespace: "ingress-nginx".into(),
            kubeblocks_namespace: "kb-system".into(),
            pool_sandboxes: 0,
            pool_databases: 0,
            pool_namespace: "kiln-pool".into(),
        }
    }
}

/// `ghcr.io/kiln-dev/kiln-runtime:{runtime/VERSION}`.
pub fn default_image() -> String {
    format!("{RUNTIME_REPOSITORY}:{}", RUNTIME_VERSION.trim())
}

const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

/// Longest domain that still leaves room for the longest app host label
/// (`{resource}-app.`) within DNS's 253 characters.
const MAX_DOMAIN_LEN: usize = 253 - 64;

impl K8sSettings {
    /// Checks every value; the error names the key and says what would be accepted.
    pub fn validate(&self) -> Result<(), String> {
        let err = |key: &str, msg: String| Err(format!("kubernetes.{key}: {msg}"));

        if self.image.is_empty() || self.image.chars().any(char::is_whitespace) {
            return err(
                "image",
                format!(
                    "{:?} is not an image reference (e.g. {})",
                    self.image,
                    default_image()
                ),
            );
        }
        if !PULL_POLICIES.contains(&self.image_pull_policy.as_str()) {
            return err(
                "image_pull_policy",
                format!(
                    "{:?} is not one of {}",
                    self.image_pull_policy,
                    PULL_POLICIES.join(", ")
                ),
            );
        }
        if self.run_as_user <= 0 || self.run_as_user > i64::from(u32::MAX) {
            return err(
                "run_as_user",
                format!(
                    "{} is not a non-root UID (use a number above 0, e.g. 1001)",
                    self.run_as_user
                ),
            );
        }
        for (key, value) in self.quantities() {
            if quantity_value(value).is_none() {
                return err(
                    key,
                    format!(
                        "{value:?} is not a Kubernetes quantity (e.g. {})",
                        example(key)
                    ),
                );
            }
        }
        for (request, limit) in [
            ("sandbox_cpu_request", "sandbox_cpu_limit"),
            ("sandbox_memory_request", "sandbox_memory_limit"),
            ("db_cpu_request", "db_cpu_limit"),
            ("db_memory_request", "db_memory_limit"),
        ] {
            let get = |k: &str| self.quantities().find(|(key, _)| *key == k).map(|(_, v)| v);
            let (r, l) = (get(request).unwrap_or(""), get(limit).unwrap_or(""));
            if quantity_value(r) > quantity_value(l) {
                return err(
                    request,
                    format!(
                        "{r:?} is more than kubernetes.{limit} ({l:?}); Kubernetes refuses a request above its limit"
                    ),
                );
            }
        }
        if let Some(domain) = &self.domain
            && !is_dns_subdomain(domain, MAX_DOMAIN_LEN)
        {
            return err(
                "domain",
                format!(
                    "{domain:?} is not a DNS domain (lowercase labels of a-z, 0-9 and '-', e.g. apps.example.com)"
                ),
            );
        }
        let names = [
            ("tls_secret", Some(&self.tls_secret)),
            ("storage_class", self.storage_class.as_ref()),
            ("ingress_class", self.ingress_class.as_ref()),
            ("db_storage_class", self.db_storage_class.as_ref()),
            ("db_cluster_definition", Some(&self.db_cluster_definition)),
            ("db_cluster_version", Some(&self.db_cluster_version)),
        ];
        for (key, value) in names {
            if let Some(v) = value
                && !is_dns_subdomain(v, 253)
            {
                return err(
                    key,
                    format!(
                        "{v:?} is not a Kubernetes object name (lowercase a-z, 0-9, '-' and '.')"
                    ),
                );
            }
        }
        for (key, value) in [
            ("ingress_namespace", &self.ingress_namespace),
            ("kubeblocks_namespace", &self.kubeblocks_namespace),
            ("pool_namespace", &self.pool_namespace),
        ] {
            if !is_dns_label(value) {
                return err(
                    key,
                    format!(
                        "{value:?} is not a namespace name (1 to 63 of a-z, 0-9 and '-', e.g. ingress-nginx)"
                    ),
                );
            }
        }
        if !(1..=300).contains(&self.api_timeout_secs) {
            return err(
                "api_timeout_secs",
                format!("{} is out of range (1 to 300)", self.api_timeout_secs),
            );
        }
        for (key, target) in [
            ("pool_sandboxes", self.pool_sandboxes),
            ("pool_databases", self.pool_databases),
        ] {
            if target > crate::model::pool::PoolTargets::MAX {
                return err(
                    key,
                    format!(
                        "{target} is out of range (0, no pool, to {})",
                        crate::model::pool::PoolTargets::MAX
                    ),
                );
            }
        }
        if !(1..=5).contains(&self.db_replicas) {
            return err(
                "db_replicas",
                format!("{} is out of range (1 to 5)", self.db_replicas),
            );
        }
        Ok(())
    }

    /// Where tenants' API servers may be, from [`Self::allow_private_api_servers`].
    pub fn api_server_policy(&self) -> crate::k8s::kubeconfig::ApiServerPolicy {
        crate::k8s::kubeconfig::ApiServerPolicy {
            allow_private: self.allow_private_api_servers,
        }
    }

    /// What one sandbox requests (its CPU and memory requests), for the
    /// owners' CPU and memory quotas. Settings are validated at start, so
    /// an unreadable quantity counts as nothing rather than failing here.
    pub fn sandbox_size(&self) -> crate::model::quota::SandboxSize {
        let value = |q: &str| quantity_value(q).unwrap_or(0.0);
        crate::model::quota::SandboxSize {
            cpu_millis: (value(&self.sandbox_cpu_request) * 1000.0).ceil() as i64,
            memory_bytes: value(&self.sandbox_memory_request).ceil() as i64,
        }
    }

    /// [`Self::api_timeout_secs`] as a duration.
    pub fn api_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.api_timeout_secs)
    }

    fn quantities(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("sandbox_cpu_request", &self.sandbox_cpu_request),
            ("sandbox_memory_request", &self.sandbox_memory_request),
            ("sandbox_cpu_limit", &self.sandbox_cpu_limit),
            ("sandbox_memory_limit", &self.sandbox_memory_limit),
            ("home_size", &self.home_size),
            ("db_storage_size", &self.db_storage_size),
            ("db_cpu_request", &self.db_cpu_request),
            ("db_memory_request", &self.db_memory_request),
            ("db_cpu_limit", &self.db_cpu_limit),
            ("db_memory_limit", &self.db_memory_limit),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.as_str()))
    }
}

fn example(key: &str) -> &'static str {
    if key.contains("cpu") { "500m" } else { "10Gi" }
}

pub use crate::model::quota::quantity_value;

/// RFC 1123 subdomain as Kubernetes checks object names and hosts.
pub fn is_dns_subdomain(s: &str, max_len: usize) -> bool {
    !s.is_empty() && s.len() <= max_len && s.split('.').all(is_dns_label)
}

/// RFC 1123 label: 1–63 of a-z, 0-9, '-', neither first nor last a '-'.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1035 label, as Service names need: an RFC 1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_counts_its_requests_against_the_quotas() {
        let s = K8sSettings::default();
        assert_eq!(
            s.sandbox_size(),
            crate::model::quota::SandboxSize {
                cpu_millis: 20,
                memory_bytes: 25 << 20
            }
        );
    }

    #[test]
    fn defaults_are_valid_and_point_at_this_runtime_version() {
        let s = K8sSettings::default();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(
            s.image,
            format!("ghcr.io/kiln-dev/kiln-runtime:{}", RUNTIME_VERSION.trim())
        );
        assert!(!RUNTIME_VERSION.trim().is_empty());
    }

    #[test]
    fn an_empty_table_gives_the_defaults_and_unknown_keys_are_refused() {
        let s: K8sSettings = toml::from_str("").unwrap();
        assert_eq!(s, K8sSettings::default());
        let s: K8sSettings =
            toml::from_str("domain = \"apps.example.com\"\nhome_size = \"20Gi\"").unwrap();
        assert_eq!(s.domain.as_deref(), Some("apps.example.com"));
        assert_eq!(s.home_size, "20Gi");
        assert_eq!(s.db_replicas, 1);
        assert!(
            !s.allow_private_api_servers,
            "private API servers are refused by default"
        );
        let s: K8sSettings = toml::from_str("allow_private_api_servers = true").unwrap();
        assert!(s.api_server_policy().allow_private);
        let e = toml::from_str::<K8sSettings>("home_sise = \"20Gi\"").unwrap_err();
        assert!(e.to_string().contains("home_sise"), "{e}");
    }

    fn invalid(f: impl FnOnce(&mut K8sSettings)) -> String {
        let mut s = K8sSettings::default();
        f(&mut s);
        s.validate().unwrap_err()
    }

    #[test]
    fn each_bad_value_is_named_in_the_error() {
        assert_eq!(
            invalid(|s| s.home_size = "10 GB".into()),
            "kubernetes.home_size: \"10 GB\" is not a Kubernetes quantity (e.g. 10Gi)"
        );
        assert_eq!(
            invalid(|s| s.sandbox_cpu_limit = "two".into()),
            "kubernetes.sandbox_cpu_limit: \"two\" is not a Kubernetes quantity (e.g. 500m)"
        );
        assert!(invalid(|s| s.image = String::new()).starts_with("kubernetes.image:"));
        assert!(invalid(|s| s.image = "a b:1".into()).starts_with("kubernetes.image:"));
        assert!(
            invalid(|s| s.image_pull_policy = "always".into())
                .starts_with("kubernetes.image_pull_policy:")
        );
        assert!(invalid(|s| s.run_as_user = 0).starts_with("kubernetes.run_as_user:"));
        assert!(invalid(|s| s.run_as_user = -5).starts_with("kubernetes.run_as_user:"));
        assert!(invalid(|s| s.db_replicas = 0).starts_with("kubernetes.db_replicas:"));
        assert!(invalid(|s| s.db_replicas = 6).starts_with("kubernetes.db_replicas:"));
        for d in ["Apps.Example.com", "-x.com", "a..b", "x_y.com", "", "a.b-"] {
            let e = invalid(|s| s.domain = Some(d.into()));
            assert!(e.starts_with("kubernetes.domain:"), "{d}: {e}");
        }
        assert!(
            invalid(|s| s.domain = Some(format!("{}.com", "a".repeat(64))))
                .starts_with("kubernetes.domain:")
        );
        assert!(
            invalid(|s| s.storage_class = Some("Fast SSD".into()))
                .starts_with("kubernetes.storage_class:")
        );
        for ns in ["", "Ingress", "ingress_nginx", "-x", "a.b"] {
            let e = invalid(|s| s.ingress_namespace = ns.into());
            assert!(
                e.starts_with("kubernetes.ingress_namespace:"),
                "{ns:?}: {e}"
            );
            let e = invalid(|s| s.kubeblocks_namespace = ns.into());
            assert!(
                e.starts_with("kubernetes.kubeblocks_namespace:"),
                "{ns:?}: {e}"
            );
        }
        assert!(
            invalid(|s| s.sandbox_memory_request = "8Gi".into())
                .starts_with("kubernetes.sandbox_memory_request: \"8Gi\" is more than")
        );
    }

    #[test]
    fn good_values_pass() {
        let s = K8sSettings {
            domain: Some("apps.example.com".into()),
            storage_class: Some("local-path".into()),
            ingress_class: Some("nginx".into()),
            db_replicas: 5,
            sandbox_cpu_limit: "2".into(),
            sandbox_memory_limit: "4.5G".into(),
            home_size: "1e10".into(),
            image: "registry.local:5000/kiln/runtime@sha256:abc".into(),
            ingress_namespace: "traefik".into(),
            kubeblocks_namespace: "kubeblocks".into(),
            ..K8sSettings::default()
        };
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn quantities_parse_as_the_api_server_reads_them() {
        let cases: &[(&str, Option<f64>)] = &[
            ("20m", Some(0.02)),
            ("2", Some(2.0)),
            ("1.5", Some(1.5)),
            (".5", Some(0.5)),
            ("25Mi", Some(25.0 * 1024.0 * 1024.0)),
            ("10Gi", Some(10.0 * 1024f64.powi(3))),
            ("3k", Some(3000.0)),
            ("2e3", Some(2000.0)),
            ("2E-3", Some(0.002)),
            ("10 GB", None),
            ("10GB", None),
            ("Gi", None),
            ("", None),
            ("-1", None),
            ("1..2", None),
            ("1e", None),
            ("1mi", None),
        ];
        for (q, want) in cases {
            let got = quantity_value(q);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9 * w.max(1.0), "{q}: {g} vs {w}"),
                _ => assert_eq!(got, *want, "{q}"),
            }
        }
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_label("a-1"));
        assert!(is_dns_label("1a"));
        assert!(!is_dns1035_label("1a"));
        assert!(is_dns1035_label("a1"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("a.b.c", 253));
        assert!(!is_dns_subdomain("a.", 253));
    }
}
