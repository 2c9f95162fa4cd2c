//! Property tests of [`parse`]: kubeconfigs whose current user and cluster
//! carry random mixes of allowed and refused fields, written in block
//! YAML, flow YAML (JSON) and with the user entry behind an anchor. The
//! verdict must follow from the fields alone, whatever the shape; what is
//! accepted, read back as it is stored, has no exec plugin, auth provider,
//! file reference or proxy; no message quotes the token. Arbitrary,
//! deeply nested and alias-bomb YAML is refused without a panic.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::model::untrusted::hostile_text;

const TOKEN: &str = "sEcReT-T0KEN-do-not-echo";

/// Fields a user entry may carry, and whether each is refused.
fn user_fields() -> Vec<(&'static str, Value, bool)> {
    vec![
        ("token", json!(TOKEN), false),
        ("client-certificate-data", json!("Y2VydA=="), false),
        ("client-key-data", json!("a2V5"), false),
        ("username", json!("admin"), false),
        ("password", json!(TOKEN), false),
        ("as", json!("someone"), false),
        (
            "exec",
            json!({"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh",
                   "args": ["-c", TOKEN]}),
            true,
        ),
        (
            "auth-provider",
            json!({"name": "oidc", "config": {"id-token": TOKEN}}),
            true,
        ),
        ("tokenFile", json!("/var/run/secrets/token"), true),
        ("client-certificate", json!("/root/.kube/client.crt"), true),
        ("client-key", json!("/root/.kube/client.key"), true),
        ("token-file", json!("/etc/token"), true),
        ("Password_FILE", json!("/etc/shadow"), true),
    ]
}

/// Fields a cluster entry may carry besides its server, and whether each is refused.
fn cluster_fields() -> Vec<(&'static str, Value, bool)> {
    vec![
        (
            "certificate-authority-data",
            json!("LS0tLS1CRUdJTg=="),
            false,
        ),
        ("insecure-skip-tls-verify", json!(true), false),
        ("tls-server-name", json!("k8s.internal"), false),
        (
            "certificate-authority",
            json!("/etc/kubernetes/ca.crt"),
            true,
        ),
        ("proxy-url", json!("socks5://10.0.0.1:1080"), true),
        ("ca-file", json!("/etc/ca"), true),
    ]
}

/// Servers, and whether each is refused.
const SERVERS: &[(Option<&str>, bool)] = &[
    (Some("https://k8s.example.com:6443"), false),
    (Some("http://10.0.0.1:8080/k8s/clusters/c-1"), false),
    (Some("HTTPS://K8S.EXAMPLE.COM"), false),
    (Some("ftp://k8s.example.com"), true),
    (Some("https://admin:pw@k8s.example.com"), true),
    (Some("https://k8s.example.com/?token=abc"), true),
    (Some("https://"), true),
    (Some("https://k8s example.com"), true),
    (None, true),
];

#[derive(Debug, Clone, Copy)]
enum Shape {
    Block,
    Flow,
    /// The user entry written once under an anchor (on another user) and
    /// aliased by the current one.
    Anchored,
}

#[derive(Debug, Clone)]
struct Case {
    yaml: String,
    refused: bool,
}

fn pick(fields: Vec<(&'static str, Value, bool)>, mask: u32) -> (Map<String, Value>, bool) {
    let mut map = Map::new();
    let mut refused = false;
    for (i, (k, v, bad)) in fields.into_iter().enumerate() {
        if mask >> i & 1 == 1 {
            map.insert(k.to_string(), v);
            refused |= bad;
        }
    }
    (map, refused)
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u32>(),
        any::<u32>(),
        proptest::sample::select(SERVERS),
        prop_oneof![Just(Shape::Block), Just(Shape::Flow), Just(Shape::Anchored)],
        any::<bool>(),
    )
        .prop_map(|(user_mask, cluster_mask, (server, bad_server), shape, ns)| {
            // Mostly a few fields, so accepted configs come up often too.
            let (user, bad_user) = pick(user_fields(), user_mask & user_mask >> 7 & user_mask >> 13);
            let (mut cluster, bad_cluster) = pick(cluster_fields(), cluster_mask & cluster_mask >> 5);
            if let Some(s) = server {
                cluster.insert("server".into(), json!(s));
            }
            let mut context = json!({"cluster": "prod", "user": "dev"});
            if ns {
                context["namespace"] = json!("team-a");
            }
            let doc = json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "prod", "cluster": cluster}],
                "users": [{"name": "other", "user": {"token": "x"}}, {"name": "dev", "user": user}],
                "contexts": [{"name": "main", "context": context}],
                "current-context": "main",
            });
            let yaml = match shape {
                Shape::Block => serde_yaml::to_string(&doc).unwrap(),
                Shape::Flow => serde_json::to_string(&doc).unwrap(),
                Shape::Anchored => format!(
                    "apiVersion: v1\nkind: Config\nclusters: {}\nusers:\n- name: other\n  user: &u {}\n- name: dev\n  user: *u\ncontexts: {}\ncurrent-context: main\n",
                    serde_json::to_string(&doc["clusters"]).unwrap(),
                    serde_json::to_string(&user).unwrap(),
                    serde_json::to_string(&doc["contexts"]).unwrap(),
                ),
            };
            Case { yaml, refused: bad_user || bad_cluster || bad_server }
        })
}

/// No refused field in what is stored (read back the way the driver reads it).
fn stored_is_inert(t: &TenantKubeconfig) -> Result<(), TestCaseError> {
    let kc = t
        .kubeconfig()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(kc.auth_infos.len(), 1);
    prop_assert_eq!(kc.clusters.len(), 1);
    let user = kc.auth_infos[0].auth_info.as_ref().expect("a user");
    prop_assert!(user.exec.is_none() && user.auth_provider.is_none());
    prop_assert!(user.token_file.is_none() && user.client_certificate.is_none());
    prop_assert!(user.client_key.is_none());
    prop_assert!(
        !user
            .other
            .keys()
            .any(|k| k.to_ascii_lowercase().contains("file"))
    );
    let cluster = kc.clusters[0].cluster.as_ref().expect("a cluster");
    prop_assert!(cluster.certificate_authority.is_none());
    prop_assert!(cluster.proxy_url.as_deref().unwrap_or_default().is_empty());
    prop_assert!(
        !cluster
            .other
            .keys()
            .any(|k| k.to_ascii_lowercase().contains("file"))
    );
    Ok(())
}

/// YAML made of pieces that steer the parser: anchors, aliases, tags,
/// flow and block collections, odd scalars.
fn yamlish() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "users:",
        "clusters:",
        "contexts:",
        "current-context: main",
        "\n",
        "\n- ",
        "  ",
        "- name: dev",
        "  user:",
        "    exec:",
        "      command: sh",
        "auth-provider: {name: x}",
        "&a ",
        "*a",
        "&b [",
        "]",
        "{",
        "}",
        ", ",
        ": ",
        "? ",
        "!!str ",
        "!!binary ",
        "!custom ",
        "<<: *a",
        "'",
        "\"",
        "~",
        "null",
        "1e999",
        "0x1F",
        "---\n",
        "...\n",
        "|\n",
        ">-\n",
        "# c",
        "\t",
        "%YAML 1.2\n",
        "server: https://x",
        // The secret appears only as a credential's value: a name (of a
        // context, cluster or user) is shown in errors on purpose, so the
        // user can find the entry to fix.
        "token: sEcReT-T0KEN-do-not-echo",
        "    token: sEcReT-T0KEN-do-not-echo\n",
    ];
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::sample::select(PIECES).prop_map(str::to_string),
            1 => hostile_text(6),
        ],
        0..40,
    )
    .prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(crate::model::untrusted::config(256))]

    #[test]
    fn the_verdict_follows_from_the_fields_whatever_the_shape(case in case()) {
        match parse(&case.yaml) {
            Ok(t) => {
                prop_assert!(!case.refused, "accepted:\n{}", case.yaml);
                stored_is_inert(&t)?;
            }
            Err(e) => {
                prop_assert!(case.refused, "refused ({e}):\n{}", case.yaml);
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains("T0KEN"), "{shown}");
            }
        }
    }

    #[test]
    fn any_text_is_refused_or_accepted_inert_without_echoing_it(
        text in prop_oneof![hostile_text(300), yamlish()],
    ) {
        match parse(&text) {
            Ok(t) => stored_is_inert(&t)?,
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(!shown.contains("T0KEN"), "{shown}");
                prop_assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
                prop_assert!(shown.len() <= 1024, "{} bytes", shown.len());
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_a_panic(
        depth in 1usize..3000,
        open in proptest::sample::select(vec!["[", "{a: ", "- ", "!t ["]),
    ) {
        let close = match open { "[" | "!t [" => "]", "{a: " => "}", _ => "" };
        let mut yaml = String::from("apiVersion: v1\nusers:\n- name: dev\n  user:\n    extensions: ");
        // Block sequences indent each level: keep them within the size limit.
        let depth = if open == "- " { depth.min(300) } else { depth };
        for i in 0..depth {
            if open == "- " {
                yaml.push('\n');
                yaml.push_str(&" ".repeat(4 + 2 * i));
            }
            yaml.push_str(open);
        }
        yaml.push('x');
        yaml.push_str(&close.repeat(depth));
        let _ = parse(&yaml);
    }

}

proptest! {
    // Each case expands aliases up to serde_yaml's repetition limit.
    #![proptest_config(crate::model::untrusted::config(64))]

    #[test]
    fn alias_bombs_are_refused_without_a_panic(width in 2usize..12, levels in 1usize..12) {
        let mut yaml = String::from("a0: &a0 [x]\n");
        for l in 1..=levels {
            let refs = vec![format!("*a{}", l - 1); width].join(", ");
            yaml.push_str(&format!("a{l}: &a{l} [{refs}]\n"));
        }
        yaml.push_str(&format!(
            "users:\n- name: dev\n  user: {{token: t, extensions: [{{name: e, extension: *a{levels}}}]}}\n"
        ));
        let _ = parse(&yaml);
    }
}

/// Found by `deep_nesting_is_refused_without_a_panic`: 256 KiB of `[`
/// took libyaml about a minute (its time grows with the square of the
/// depth). Now it is refused before the parser sees it.
#[test]
fn a_bracket_bomb_is_refused_before_the_yaml_parser() {
    for open in ["[", "{a: ", "!t ["] {
        let yaml = format!(
            "users: {}",
            open.repeat((MAX_KUBECONFIG_BYTES - 10) / open.len())
        );
        let started = std::time::Instant::now();
        let err = parse(&yaml).unwrap_err();
        assert!(matches!(err, KubeconfigError::TooDeep { .. }), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}

/// Found by `any_text_is_refused_or_accepted_inert_without_echoing_it`:
/// a plain scalar folded over two lines becomes one string that serde_yaml
/// quotes with the inner quote escaped (`"~ \"sEcReT…"`); the escaped
/// quote ended the masking and the token was shown.
#[test]
fn an_escaped_quote_in_a_yaml_message_does_not_unmask_the_rest() {
    let err = parse(&format!("~\n\"{TOKEN}")).unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains("T0KEN"), "{shown}");
}
