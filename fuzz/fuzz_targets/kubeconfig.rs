//! Kubeconfig YAML: never a panic (run with -timeout=2 to catch slow
//! inputs too); what is accepted, read back as stored, has no exec plugin,
//! auth provider, file reference or proxy; refusals are safe to print.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|yaml: &str| {
    match kiln::k8s::kubeconfig::parse(yaml) {
        Ok(t) => {
            let kc = t.kubeconfig().expect("the stored kubeconfig reads back");
            assert_eq!((kc.auth_infos.len(), kc.clusters.len(), kc.contexts.len()), (1, 1, 1));
            let user = kc.auth_infos[0].auth_info.as_ref().expect("a user");
            assert!(user.exec.is_none() && user.auth_provider.is_none());
            assert!(user.token_file.is_none() && user.client_certificate.is_none());
            assert!(user.client_key.is_none());
            assert!(!user.other.keys().any(|k| k.to_ascii_lowercase().contains("file")));
            let cluster = kc.clusters[0].cluster.as_ref().expect("a cluster");
            assert!(cluster.certificate_authority.is_none());
            assert!(cluster.proxy_url.as_deref().unwrap_or_default().is_empty());
            assert!(!cluster.other.keys().any(|k| k.to_ascii_lowercase().contains("file")));
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.len() <= 1024, "{} bytes", message.len());
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
    }
});
