//! `deploy/`: the manifests validate offline against the Kubernetes
//! schemas (`kubernetes-validate`, strict), the invariants that matter hold
//! (every replica mounts the one host key the config names, probes point at
//! paths the operator listener serves, ports agree), and the ClusterRole
//! grants exactly what the code in `src/k8s` and `src/backends` calls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use serde_yaml::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every manifest file (not the kustomization, which is no Kubernetes object).
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    files
}

/// Every object of every manifest, by kind.
fn objects() -> Vec<Value> {
    let mut out = Vec::new();
    for f in manifests() {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    out
}

use serde::Deserialize;

fn one<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// `$KILN_KUBERNETES_VALIDATE`, else the venv `.ci/run` installs it into,
/// else one on PATH.
fn kubernetes_validate() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_KUBERNETES_VALIDATE") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(std::env::var_os("HOME").expect("HOME"))
        .join(".cache/kiln-kubernetes-validate/bin/kubernetes-validate");
    if venv.is_file() {
        return venv;
    }
    which::which("kubernetes-validate").unwrap_or_else(|_| {
        panic!(
            "kubernetes-validate (PyPI) is not installed: run .ci/run, or \
             python3 -m venv ~/.cache/kiln-kubernetes-validate && \
             ~/.cache/kiln-kubernetes-validate/bin/pip install kubernetes-validate"
        )
    })
}

fn validate(file: &Path) -> std::process::Output {
    Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(file)
        .output()
        .expect("run kubernetes-validate")
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    for f in manifests() {
        let out = validate(&f);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{}: {text}", f.display());
        assert!(text.contains("passed"), "{}: {text}", f.display());
    }
    // The validator is not a no-op: a field the schema lacks fails.
    let bad = std::env::temp_dir().join(format!("kd-{}.yaml", uuid::Uuid::new_v4().simple()));
    let text = std::fs::read_to_string(repo().join("deploy/pdb.yaml"))
        .unwrap()
        .replace("minAvailable: 1", "minAvailable: 1\n  minAvailible: 1");
    std::fs::write(&bad, text).unwrap();
    let out = validate(&bad);
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success(), "a misspelt field passed validation");
}

#[test]
fn every_replica_mounts_the_same_host_key_and_the_probes_point_at_served_paths() {
    let objects = objects();
    let deployment = one(&objects, "Deployment", "kiln");
    let spec = &deployment["spec"];
    assert!(
        spec["replicas"].as_u64().unwrap() >= 2,
        "at least two replicas"
    );
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], labels);

    // The config every replica reads, valid for Kiln itself.
    let config_map = one(&objects, "ConfigMap", "kiln-config");
    let toml = s(&config_map["data"]["kiln.toml"]);
    let file = kiln::config::parse_file(toml).unwrap();
    let config =
        kiln::config::Config::from_parts(Path::new("/var/lib/kiln"), file, Default::default())
            .unwrap_or_else(|e| panic!("deploy's kiln.toml: {e}"));
    let host_key_file = config
        .ssh_host_key_file
        .clone()
        .expect("ssh.host_key_file is set");
    assert_eq!(
        config.server_cluster,
        kiln::config::ServerCluster::InCluster
    );

    let container = &pod["containers"][0];
    assert_eq!(pod["containers"].as_sequence().unwrap().len(), 1);
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let volumes = pod["volumes"].as_sequence().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    // The host key: one Secret, mounted where ssh.host_key_file points,
    // the same for every pod of the template (so for every replica).
    let key_mount = mounts
        .iter()
        .find(|m| host_key_file.starts_with(s(&m["mountPath"])))
        .unwrap_or_else(|| panic!("nothing is mounted at {}", host_key_file.display()));
    let key_volume = volume(s(&key_mount["name"]));
    let secret = &key_volume["secret"];
    assert_eq!(s(&secret["secretName"]), "kiln-host-key");
    let item = secret["items"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|i| Path::new(s(&key_mount["mountPath"])).join(s(&i["path"])) == host_key_file)
        .expect("the Secret item lands on ssh.host_key_file");
    assert_eq!(s(&item["key"]), "ssh_host_ed25519_key");
    // Group-readable for fsGroup, never world-readable (Kiln refuses that).
    let mode = secret["defaultMode"].as_u64().unwrap();
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
    assert!(pod["securityContext"]["fsGroup"].as_u64().is_some());
    // The config the replicas read is the ConfigMap.
    let config_mount = mounts.iter().find(|m| m["name"] == "config").unwrap();
    assert_eq!(s(&volume("config")["configMap"]["name"]), "kiln-config");
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let config_arg = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert_eq!(
        Path::new(config_arg),
        Path::new(s(&config_mount["mountPath"])).join("kiln.toml")
    );

    // Probes: the operator listener's paths, on its port.
    let ports: BTreeMap<&str, u64> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (s(&p["name"]), p["containerPort"].as_u64().unwrap()))
        .collect();
    let http: std::net::SocketAddr = config.http_listen.as_deref().unwrap().parse().unwrap();
    let ssh: std::net::SocketAddr = config.ssh.listen.parse().unwrap();
    assert_eq!(ports["http"], u64::from(http.port()));
    assert_eq!(ports["ssh"], u64::from(ssh.port()));
    for (probe, path) in [
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/livez"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(s(&get["path"]), path, "{probe}");
        assert!(kiln::ops::http::PATHS.contains(&path));
        assert_eq!(s(&get["port"]), "http", "{probe}");
    }

    // Secrets, not config: the secret key and the database URL.
    let env = container["env"].as_sequence().unwrap();
    for key in ["KILN_SECRET_KEY", "DATABASE_URL"] {
        let e = env.iter().find(|e| e["name"] == key).unwrap();
        assert_eq!(s(&e["valueFrom"]["secretKeyRef"]["name"]), "kiln-secrets");
        assert_eq!(s(&e["valueFrom"]["secretKeyRef"]["key"]), key);
    }
    assert!(!toml.contains("secret_key") && !toml.contains("database_url"));

    // Non-root, requests set, and time to stop before the kubelet kills.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().unwrap() > config.shutdown_grace.as_secs()
    );

    // The Service and the budget select these pods; SSH reaches its port.
    let service = one(&objects, "Service", "kiln");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(s(&service["spec"]["ports"][0]["targetPort"]), "ssh");
    let pdb = one(&objects, "PodDisruptionBudget", "kiln");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(s(&pod["serviceAccountName"]), "kiln");

    // The README creates the Secrets the Deployment reads.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for needle in [
        "create secret generic kiln-host-key --from-file=ssh_host_ed25519_key=",
        "create secret generic kiln-secrets",
        "--from-literal=KILN_SECRET_KEY=",
        "--from-literal=DATABASE_URL=",
        "kubectl apply -k deploy/",
    ] {
        assert!(readme.contains(needle), "the README lacks `{needle}`");
    }
}

/// (API group, resource, verb).
type Permission = (String, String, String);

fn permission(group: &str, resource: &str, verb: &str) -> Permission {
    (group.into(), resource.into(), verb.into())
}

/// The resource a Rust type names, for the types `src/k8s` uses.
fn resource_of(ty: &str) -> Option<(&'static str, &'static str)> {
    Some(match ty {
        "Secret" => ("", "secrets"),
        "Service" => ("", "services"),
        "Pod" => ("", "pods"),
        "PersistentVolumeClaim" => ("", "persistentvolumeclaims"),
        "Namespace" => ("", "namespaces"),
        "ServiceAccount" => ("", "serviceaccounts"),
        "StatefulSet" => ("apps", "statefulsets"),
        "Ingress" => ("networking.k8s.io", "ingresses"),
        "NetworkPolicy" => ("networking.k8s.io", "networkpolicies"),
        "Role" => ("rbac.authorization.k8s.io", "roles"),
        "RoleBinding" => ("rbac.authorization.k8s.io", "rolebindings"),
        "SelfSubjectAccessReview" => ("authorization.k8s.io", "selfsubjectaccessreviews"),
        _ => return None,
    })
}

/// The type the generic helpers' `kind` argument names.
fn type_of_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "service" => "Service",
        "service account" => "ServiceAccount",
        "role" => "Role",
        "role binding" => "RoleBinding",
        "network policy" => "NetworkPolicy",
        _ => return None,
    })
}

/// The verbs a kube `Api` method needs, and the subresource it is on.
fn verbs_of(method: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match method {
        "create" => ("", &["create"]),
        "patch" => ("", &["patch"]),
        "replace" => ("", &["update"]),
        "get" | "get_opt" => ("", &["get"]),
        "list" => ("", &["list"]),
        "delete" => ("", &["delete"]),
        // The exec stream is a POST (SPDY) or a GET (WebSocket).
        "exec" => ("exec", &["create", "get"]),
        "log_stream" => ("log", &["get"]),
        _ => return None,
    })
}

/// What the code calls, read from its source: every use of a kube `Api`
/// in `src/k8s` and `src/backends` is matched by one of the shapes below;
/// a use in no known shape, a type or method not in the tables, fails the
/// test, so a new call cannot slip past without a rule.
fn code_permissions() -> BTreeSet<Permission> {
    let kubeblocks = kiln::k8s::database_objects::cluster_api_resource();
    let resource = |ty: &str, at: &str| -> (String, String) {
        if ty == "DynamicObject" || ty == "clusters()" {
            return (kubeblocks.group.clone(), kubeblocks.plural.clone());
        }
        let (g, r) = resource_of(ty)
            .unwrap_or_else(|| panic!("{at}: the code uses Api<{ty}>: add it to resource_of and a rule to deploy/rbac.yaml"));
        (g.into(), r.into())
    };
    let mut out = BTreeSet::new();
    fn add(out: &mut BTreeSet<Permission>, (g, r): (String, String), method: &str, at: &str) {
        let (sub, verbs) = verbs_of(method)
            .unwrap_or_else(|| panic!("{at}: unknown API method `{method}`: add it to verbs_of"));
        let r = if sub.is_empty() {
            r
        } else {
            format!("{r}/{sub}")
        };
        for v in verbs {
            out.insert(permission(&g, &r, v));
        }
    }
    // An expression that is an Api: `….api::<T>()`, `self.clusters()`.
    let api_expr = r"(?:\w+\.)?api::<(\w+)>\(\)|self\.clusters\(\)";
    let direct = Regex::new(&format!(r"(?:{api_expr})\s*\.\s*(\w+)\(")).unwrap();
    let deleted = Regex::new(&format!(r"delete_quietly\(\s*&(?:{api_expr})")).unwrap();
    let watched = Regex::new(&format!(r"watcher\(\s*(?:(?:{api_expr})|(\w+))\s*,")).unwrap();
    let binding = Regex::new(&format!(
        r"let\s+(\w+)(?:\s*:\s*Api<(\w+)>)?\s*=\s*(?:(?:{api_expr})|Api::(?:all|namespaced|namespaced_with)\()"
    ))
    .unwrap();
    let helper = Regex::new(r#"\.(apply|create_or_adopt)\(\s*&\w+\s*,\s*"([^"]+)"\s*\)"#).unwrap();
    let any_api = Regex::new(r"api::<|Api<|Api::|\.clusters\(\)").unwrap();
    let comment = Regex::new(r"(?m)^\s*//.*$").unwrap();

    let mut files = Vec::new();
    for dir in ["src/k8s", "src/backends"] {
        let mut stack = vec![repo().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "rs") {
                    files.push(p);
                }
            }
        }
    }
    for path in files {
        let full = std::fs::read_to_string(&path).unwrap();
        // Unit tests build objects but call no API server.
        let code = full.split("#[cfg(test)]").next().unwrap();
        let code = comment.replace_all(code, "");
        let name = path.strip_prefix(repo()).unwrap().display().to_string();
        let at = |pos: usize| format!("{name}:{}", code[..pos].lines().count());
        let mut accounted: Vec<std::ops::Range<usize>> = Vec::new();

        // Variables bound to an Api, in order: a use resolves to the latest.
        let mut bindings: Vec<(usize, String, String)> = Vec::new();
        for c in binding.captures_iter(&code) {
            let whole = c.get(0).unwrap();
            let ty = c
                .get(3)
                .map(|m| m.as_str().to_string())
                .or_else(|| c.get(2).map(|m| m.as_str().to_string()))
                .unwrap_or_else(|| "clusters()".into());
            let ty = if ty == "DynamicObject" {
                let rest = &code[whole.end()..];
                let stmt = &rest[..rest.find(';').unwrap()];
                assert!(
                    stmt.contains("cluster_api_resource()"),
                    "{}: a dynamic Api on an unknown resource",
                    at(whole.start())
                );
                ty
            } else {
                ty
            };
            bindings.push((whole.start(), c[1].to_string(), ty));
            accounted.push(whole.range());
        }
        for c in direct.captures_iter(&code) {
            let m = c.get(0).unwrap();
            let ty = c.get(1).map_or("clusters()", |t| t.as_str());
            accounted.push(m.range());
            if ty == "K" {
                continue; // the generic helpers: counted at their callers
            }
            add(
                &mut out,
                resource(ty, &at(m.start())),
                &c[2],
                &at(m.start()),
            );
        }
        for c in deleted.captures_iter(&code) {
            let m = c.get(0).unwrap();
            let ty = c.get(1).map_or("clusters()", |t| t.as_str());
            accounted.push(m.range());
            add(
                &mut out,
                resource(ty, &at(m.start())),
                "delete",
                &at(m.start()),
            );
        }
        for c in watched.captures_iter(&code) {
            let m = c.get(0).unwrap();
            accounted.push(m.range());
            let ty = match (c.get(1), c.get(2)) {
                (Some(t), _) => t.as_str().to_string(),
                (None, Some(var)) => bindings
                    .iter()
                    .rev()
                    .find(|(p, n, _)| *p < m.start() && n == var.as_str())
                    .map(|(_, _, t)| t.clone())
                    .unwrap_or_else(|| panic!("{}: watcher on an unknown Api", at(m.start()))),
                (None, None) => "clusters()".into(),
            };
            let r = resource(&ty, &at(m.start()));
            out.insert(permission(&r.0, &r.1, "list"));
            out.insert(permission(&r.0, &r.1, "watch"));
        }
        for c in helper.captures_iter(&code) {
            let m = c.get(0).unwrap();
            let ty = type_of_kind(&c[2]).unwrap_or_else(|| {
                panic!(
                    "{}: {}(…, {:?}): add the kind to type_of_kind",
                    at(m.start()),
                    &c[1],
                    &c[2]
                )
            });
            let r = resource(ty, &at(m.start()));
            // Server-side apply creates what is missing and patches the rest.
            let verbs: &[&str] = if &c[1] == "apply" {
                &["create", "patch"]
            } else {
                &["create"]
            };
            for v in verbs {
                out.insert(permission(&r.0, &r.1, v));
            }
        }
        // Calls through a bound variable.
        for (i, (start, var, ty)) in bindings.iter().enumerate() {
            let end = bindings
                .iter()
                .skip(i + 1)
                .find(|(_, n, _)| n == var)
                .map_or(code.len(), |(p, _, _)| *p);
            let call = Regex::new(&format!(r"\b{var}\s*\.\s*(\w+)\(")).unwrap();
            for c in call.captures_iter(&code[*start..end]) {
                let m = c.get(0).unwrap();
                let pos = start + m.start();
                add(&mut out, resource(ty, &at(pos)), &c[1], &at(pos));
            }
        }
        // Every mention of an Api must be one of the shapes above, or a
        // signature (`-> Api<…>`, `api: &Api<K>`, `fn api<K>`, `Api::namespaced(`
        // inside `fn api`).
        for m in any_api.find_iter(&code) {
            let inside = accounted.iter().any(|r| r.contains(&m.start()));
            let line_start = code[..m.start()].rfind('\n').map_or(0, |p| p + 1);
            let line_end = code[m.start()..]
                .find('\n')
                .map_or(code.len(), |p| m.start() + p);
            let line = code[line_start..line_end].trim();
            let signature = line.starts_with("fn ")
                || line.starts_with("pub")
                || line.contains("-> Api<")
                || line.contains(": &Api<K>")
                || line.starts_with("use ")
                || line.starts_with("Api::namespaced(self.client.clone()")
                || line == "Api::namespaced_with(";
            assert!(
                inside || signature,
                "{}: an API use this check does not understand: `{line}`; teach \
                 code_permissions its shape and add the rule to deploy/rbac.yaml",
                at(m.start())
            );
        }
    }
    out
}

/// The permissions Kiln grants onward to each database's pods (its Role):
/// Kubernetes refuses to let Kiln grant what it does not hold.
fn granted_onward() -> BTreeSet<Permission> {
    let spec = kiln::driver::DatabaseSpec {
        resource: kiln::driver::ResourceRef {
            resource_name: "shop-agentruntime-abc123".into(),
            namespace: "kiln-t".into(),
            project_slug: "shop".into(),
            owner: uuid::Uuid::nil(),
        },
        password: "unused on Kubernetes".into(),
        sandbox: None,
    };
    let objects = kiln::k8s::database_objects::database_objects(&spec, &Default::default());
    let mut out = BTreeSet::new();
    for rule in objects.role.rules.unwrap_or_default() {
        for g in rule.api_groups.unwrap_or_default() {
            for r in rule.resources.clone().unwrap_or_default() {
                for v in &rule.verbs {
                    out.insert(permission(&g, &r, v));
                }
            }
        }
    }
    out
}

fn cluster_role_permissions() -> BTreeSet<Permission> {
    let objects = objects();
    let role = one(&objects, "ClusterRole", "kiln");
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        for g in rule["apiGroups"].as_sequence().unwrap() {
            for r in rule["resources"].as_sequence().unwrap() {
                for v in rule["verbs"].as_sequence().unwrap() {
                    assert_ne!(s(v), "*", "no wildcard verbs");
                    assert_ne!(s(r), "*", "no wildcard resources");
                    out.insert(permission(s(g), s(r), s(v)));
                }
            }
        }
    }
    out
}

#[test]
fn the_cluster_role_grants_exactly_what_the_code_calls() {
    let code = code_permissions();
    // The derivation sees the calls the issue lists.
    for (g, r, v) in [
        ("", "namespaces", "create"),
        ("apps", "statefulsets", "patch"),
        ("", "services", "create"),
        ("", "secrets", "update"),
        ("networking.k8s.io", "ingresses", "create"),
        ("", "persistentvolumeclaims", "delete"),
        ("", "pods/exec", "create"),
        ("", "pods/log", "get"),
        ("apps.kubeblocks.io", "clusters", "create"),
        ("authorization.k8s.io", "selfsubjectaccessreviews", "create"),
    ] {
        assert!(
            code.contains(&permission(g, r, v)),
            "not derived: {g}/{r} {v}\n{code:#?}"
        );
    }
    let needed: BTreeSet<Permission> = code.union(&granted_onward()).cloned().collect();
    let granted = cluster_role_permissions();
    let missing: Vec<_> = needed.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&needed).collect();
    assert!(
        missing.is_empty(),
        "the code calls what deploy/rbac.yaml does not grant: {missing:#?}"
    );
    assert!(
        extra.is_empty(),
        "deploy/rbac.yaml grants what the code never calls (least privilege): {extra:#?}"
    );
    // And the Deployment runs as the account the binding names.
    let objects = objects();
    let binding = one(&objects, "ClusterRoleBinding", "kiln");
    assert_eq!(s(&binding["roleRef"]["name"]), "kiln");
    assert_eq!(s(&binding["subjects"][0]["name"]), "kiln");
    assert_eq!(s(&binding["subjects"][0]["namespace"]), "kiln");
}
