//! The objects a sandbox wants (DESIGN §6): a one-replica StatefulSet whose
//! pod runs the runtime image's tmux session, a Service and (with a domain)
//! an Ingress for the app port, and a Secret holding the secret variables.
//! Pure and deterministic: the same spec and settings always give the same
//! objects, so a re-apply is a no-op and a diff means a real change.
//!
//! Over 500 lines: one builder per object of a sandbox, kept together
//! because they share its names, labels and Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext,
    Service, ServicePort, ServiceSpec, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::settings::{K8sSettings, is_dns_label, is_dns1035_label};
use crate::driver::{ResourceRef, SandboxSpec};

pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kiln");
pub const PROJECT_LABEL: &str = "kiln.dev/project";
pub const RESOURCE_LABEL: &str = "kiln.dev/resource";
/// `sandbox` or `database`.
pub const KIND_LABEL: &str = "kiln.dev/kind";
pub const SANDBOX_KIND: &str = "sandbox";
pub const DATABASE_KIND: &str = "database";
/// Pod-template annotation that changes whenever the Secret's data does, so
/// the StatefulSet rolls the pod (a pod reads `secretKeyRef` only at start).
pub const ENV_HASH_ANNOTATION: &str = "kiln.dev/env-hash";

/// The main container.
pub const CONTAINER: &str = "sandbox";
/// The init container that clones the sandbox's repository.
pub const CLONE_CONTAINER: &str = "clone";
/// The init container that runs its template's setup script, once.
pub const SETUP_CONTAINER: &str = "setup";
/// Where the setup script's output is kept, in the home volume (the same
/// name as on the local driver).
pub const SETUP_LOG: &str = ".kiln-setup.log";
/// Written in the home volume once the setup script has succeeded: it is
/// never run again, whatever restarts.
pub const SETUP_DONE: &str = ".kiln-setup.done";
/// `tmux -L kiln`: the runtime image's private tmux socket.
pub const TMUX_SOCKET: &str = "kiln";
/// The session running Claude Code.
pub const DEFAULT_SESSION: &str = "main";
pub const HOME: &str = "/home/kiln";
/// The only port that leaves a sandbox (the seed's port policy).
pub const APP_PORT: i32 = 3000;
pub const APP_PORT_NAME: &str = "app";
/// Name of the volume claim template (and so the prefix of the PVC's name).
pub const HOME_VOLUME: &str = "home";
/// The key of the owner's git token in the sandbox's Secret, and the
/// variable the clone's credential helper reads it from: the init
/// container's only, never the sandbox container's.
pub const GIT_TOKEN_KEY: &str = "KILN_GIT_TOKEN";

/// Longest base name: the StatefulSet controller labels each pod with
/// `controller-revision-hash={sts}-{up to 10 chars}`, a label value (≤ 63).
const MAX_BASE_LEN: usize = 47;

pub fn labels(r: &ResourceRef, kind: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (PROJECT_LABEL.to_string(), r.project_slug.clone()),
        (RESOURCE_LABEL.to_string(), r.resource_name.clone()),
        (KIND_LABEL.to_string(), kind.to_string()),
    ])
}

/// Label selector for everything Kiln manages of one kind, for batched observation.
pub fn selector(kind: &str) -> String {
    format!("{}={},{KIND_LABEL}={kind}", MANAGED_BY.0, MANAGED_BY.1)
}

/// The resource name when it is a valid RFC 1035 label short enough for
/// every derived name (always, for names from `model::naming` whose slug
/// starts with a letter); otherwise a deterministic valid stand-in. A slug
/// may start with a digit, and Service names may not.
pub fn object_base_name(r: &ResourceRef) -> String {
    safe_label(&r.resource_name, MAX_BASE_LEN)
}

/// `name` itself if it is an RFC 1035 label of at most `max` characters;
/// otherwise its allowed characters behind `k-`, cut to fit, with a hash of
/// the whole original when anything was lost, so distinct inputs stay distinct.
pub(crate) fn safe_label(name: &str, max: usize) -> String {
    if name.len() <= max && is_dns1035_label(name) {
        return name.to_string();
    }
    let cleaned: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    let core = cleaned.trim_matches('-');
    let prefixed = format!("k-{core}");
    if !core.is_empty() && core == name && prefixed.len() <= max {
        return prefixed;
    }
    let hash = format!("{:016x}", fnv1a64(name.as_bytes()));
    let keep = max.saturating_sub(9);
    let head: String = prefixed.chars().take(keep).collect();
    format!("{}-{}", head.trim_end_matches('-'), &hash[..8])
}

pub fn statefulset_name(r: &ResourceRef) -> String {
    object_base_name(r)
}
pub fn service_name(r: &ResourceRef) -> String {
    object_base_name(r)
}
pub fn ingress_name(r: &ResourceRef) -> String {
    object_base_name(r)
}
pub fn env_secret_name(r: &ResourceRef) -> String {
    format!("{}-env", object_base_name(r))
}
/// The StatefulSet's only pod.
pub fn pod_name(r: &ResourceRef) -> String {
    format!("{}-0", statefulset_name(r))
}
/// The PVC the volume claim template makes for pod 0 (`{template}-{pod}`).
pub fn home_claim_name(r: &ResourceRef) -> String {
    format!("{HOME_VOLUME}-{}", pod_name(r))
}

/// The app host's first label: `{resource}-app`, or the base name's when
/// the resource name cannot be a DNS label.
fn app_host_label(r: &ResourceRef) -> String {
    let label = format!("{}-app", r.resource_name);
    if is_dns_label(&label) {
        label
    } else {
        format!("{}-app", object_base_name(r))
    }
}

/// Where the sandbox's app is published, if the settings name a domain.
pub fn app_url(r: &ResourceRef, s: &K8sSettings) -> Option<String> {
    app_host(r, s).map(|h| format!("https://{h}"))
}

fn app_host(r: &ResourceRef, s: &K8sSettings) -> Option<String> {
    s.domain
        .as_ref()
        .map(|d| format!("{}.{d}", app_host_label(r)))
}

pub struct SandboxObjects {
    pub statefulset: StatefulSet,
    pub service: Service,
    pub ingress: Option<Ingress>,
    pub env_secret: Secret,
}

pub fn sandbox_objects(spec: &SandboxSpec, s: &K8sSettings) -> SandboxObjects {
    SandboxObjects {
        statefulset: statefulset(spec, s),
        service: service(&spec.resource),
        ingress: ingress(&spec.resource, s),
        env_secret: env_secret(spec),
    }
}

fn meta(r: &ResourceRef, name: String, kind: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(r.namespace.clone()),
        labels: Some(labels(r, kind)),
        ..Default::default()
    }
}

fn is_secret(spec: &SandboxSpec, key: &str) -> bool {
    spec.secret_keys.contains(key)
}

/// The container's environment, sorted by key: plain values inline, secret
/// ones as references into [`env_secret_name`], so no secret value is ever
/// part of the StatefulSet.
pub fn env_vars(spec: &SandboxSpec) -> Vec<EnvVar> {
    let sorted: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let secret = env_secret_name(&spec.resource);
    sorted
        .into_iter()
        .map(|(key, value)| {
            if is_secret(spec, key) {
                EnvVar {
                    name: key.to_string(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.clone(),
                            key: key.to_string(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            } else {
                EnvVar {
                    name: key.to_string(),
                    value: Some(value.to_string()),
                    ..Default::default()
                }
            }
        })
        .collect()
}

/// The Secret's data: the secret variables, and the git token the clone
/// uses when the sandbox has a repository and its owner one.
pub fn secret_data(spec: &SandboxSpec) -> BTreeMap<String, ByteString> {
    let mut data: BTreeMap<String, ByteString> = spec
        .env
        .iter()
        .filter(|(k, _)| is_secret(spec, k))
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect();
    if let Some(token) = spec.repo.as_ref().and_then(|r| r.token.as_ref()) {
        data.insert(
            GIT_TOKEN_KEY.to_string(),
            ByteString(token.expose_str().as_bytes().to_vec()),
        );
    }
    data
}

/// Stable across builds and platforms (unlike `DefaultHasher`), so two Kiln
/// replicas, or two releases, compute the same annotation and never fight.
/// Not a secret-keeping hash: whoever can read the StatefulSet can read the
/// Secret too in a Kiln namespace.
pub fn env_hash(spec: &SandboxSpec) -> String {
    let mut bytes = Vec::new();
    // Length prefixes keep ("ab","c") and ("a","bc") apart. The git token
    // is read only by a clone into an empty home: a new one is no reason to
    // restart the sandbox.
    for (k, v) in secret_data(spec)
        .into_iter()
        .filter(|(k, _)| k != GIT_TOKEN_KEY)
    {
        for part in [k.as_bytes(), &v.0] {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
    }
    format!("{:016x}", fnv1a64(&bytes))
}

/// 64-bit FNV-1a.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn quantities(pairs: [(&str, &str); 2]) -> BTreeMap<String, Quantity> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// The readiness probe's command: ready means the default session exists.
/// `=` makes tmux match the name exactly, not as a prefix of another session.
pub fn session_probe_command() -> Vec<String> {
    [
        "tmux",
        "-L",
        TMUX_SOCKET,
        "has-session",
        "-t",
        &format!("={DEFAULT_SESSION}"),
    ]
    .map(String::from)
    .to_vec()
}

/// Clones the project's repository into the home volume, only while it is
/// empty (so a restart never clobbers work): git with no `file`/`ext`
/// transports, no hooks, no system or global config, no prompt. The URL and
/// branch are in the environment, not in the script; so is the owner's
/// token, from the sandbox's Secret, which a credential helper naming only
/// the variable hands to git (never an argument, never in `.git/config`).
const CLONE_SCRIPT: &str = r#"set -e
cd "$KILN_HOME"
if [ -n "$(ls -A . | grep -v '^lost+found$' || true)" ]; then
  echo "the home volume is not empty: not cloning"
  exit 0
fi
set -- -c credential.helper=
if [ -n "${KILN_GIT_TOKEN:-}" ]; then
  set -- "$@" -c 'credential.helper=!f() { test "$1" = get && printf "username=x-access-token\npassword=%s\n" "$KILN_GIT_TOKEN"; }; f'
fi
git -c protocol.file.allow=never -c protocol.ext.allow=never -c protocol.fd.allow=never \
  -c core.hooksPath=/dev/null -c core.fsmonitor=false "$@" \
  clone --progress -- "$KILN_REPO_URL" .
if [ -n "$KILN_REPO_BRANCH" ]; then
  if git rev-parse --verify --quiet "refs/remotes/origin/$KILN_REPO_BRANCH" >/dev/null; then
    git checkout -q -B "$KILN_REPO_BRANCH" --track "origin/$KILN_REPO_BRANCH"
  else
    git checkout -q -b "$KILN_REPO_BRANCH"
  fi
fi
"#;

/// The init container that clones the sandbox's repository, if it has one.
/// It runs Kiln's runtime image whatever the template's is: that one is
/// known to have git.
fn clone_container(spec: &SandboxSpec, s: &K8sSettings) -> Option<Container> {
    let repo = spec.repo.as_ref()?;
    let var = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let mut env = vec![
        var("KILN_HOME", HOME),
        var("KILN_REPO_URL", &repo.url),
        var("KILN_REPO_BRANCH", repo.branch.as_deref().unwrap_or("")),
        var("HOME", "/tmp"),
        var("GIT_CONFIG_NOSYSTEM", "1"),
        var("GIT_CONFIG_GLOBAL", "/dev/null"),
        var("GIT_TERMINAL_PROMPT", "0"),
    ];
    if repo.token.is_some() {
        env.push(EnvVar {
            name: GIT_TOKEN_KEY.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: env_secret_name(&spec.resource),
                    key: GIT_TOKEN_KEY.into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Some(Container {
        name: CLONE_CONTAINER.into(),
        image: Some(s.image.clone()),
        image_pull_policy: Some(s.image_pull_policy.clone()),
        command: Some(vec!["sh".into(), "-c".into(), CLONE_SCRIPT.into()]),
        // A failed clone's status then carries git's last lines.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        env: Some(env),
        volume_mounts: Some(vec![VolumeMount {
            name: HOME_VOLUME.into(),
            mount_path: HOME.into(),
            ..Default::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Runs the template's setup script (`$KILN_SETUP_SCRIPT`) once, in the
/// home volume, after the clone: its output goes to [`SETUP_LOG`], a
/// success leaves [`SETUP_DONE`] so that no restart runs it again, and a
/// failure prints the log's last lines (the container's termination
/// message) and exits with the script's status. Kiln's two files are kept
/// out of the clone's `git status` through `.git/info/exclude`.
const SETUP_SCRIPT: &str = r#"set -u
cd "$KILN_HOME"
if [ -e .kiln-setup.done ]; then
  echo "the setup script already ran"
  exit 0
fi
if [ -d .git ] && ! grep -qx '.kiln-setup.log' .git/info/exclude 2>/dev/null; then
  mkdir -p .git/info && printf '%s\n' .kiln-setup.log .kiln-setup.done >> .git/info/exclude
fi
status=0
sh -c "$KILN_SETUP_SCRIPT" > .kiln-setup.log 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  tail -n 20 .kiln-setup.log
  exit "$status"
fi
touch .kiln-setup.done
"#;

/// The init container that runs the template's setup script, if it has
/// one: after the clone, in the image the sandbox runs (the script
/// installs what the sandbox will use), with the sandbox's own
/// environment and limits, confined exactly like the sandbox container.
fn setup_container(spec: &SandboxSpec, s: &K8sSettings, main: &Container) -> Option<Container> {
    let script = spec.setup.as_ref()?;
    let mut env = main.env.clone().unwrap_or_default();
    let var = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    env.push(var("KILN_HOME", HOME));
    env.push(var("KILN_SETUP_SCRIPT", script));
    if !env.iter().any(|v| v.name == "HOME") {
        env.push(var("HOME", HOME));
    }
    Some(Container {
        name: SETUP_CONTAINER.into(),
        image: main.image.clone(),
        image_pull_policy: Some(s.image_pull_policy.clone()),
        command: Some(vec!["sh".into(), "-c".into(), SETUP_SCRIPT.into()]),
        // A failed script's status then carries its last lines.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        env: Some(env),
        resources: main.resources.clone(),
        volume_mounts: main.volume_mounts.clone(),
        working_dir: Some(HOME.into()),
        security_context: main.security_context.clone(),
        ..Default::default()
    })
}

fn statefulset(spec: &SandboxSpec, s: &K8sSettings) -> StatefulSet {
    let r = &spec.resource;
    let labels = labels(r, SANDBOX_KIND);
    // A template's size is both what the sandbox asks for and all it gets;
    // what it does not name is the server's.
    let sizing = &spec.sizing;
    let cpu = sizing.cpu.as_deref();
    let memory = sizing.memory.as_deref();
    let container = Container {
        name: CONTAINER.into(),
        image: Some(sizing.image.clone().unwrap_or_else(|| s.image.clone())),
        image_pull_policy: Some(s.image_pull_policy.clone()),
        env: Some(env_vars(spec)),
        ports: Some(vec![ContainerPort {
            name: Some(APP_PORT_NAME.into()),
            container_port: APP_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities([
                ("cpu", cpu.unwrap_or(&s.sandbox_cpu_request)),
                ("memory", memory.unwrap_or(&s.sandbox_memory_request)),
            ])),
            limits: Some(quantities([
                ("cpu", cpu.unwrap_or(&s.sandbox_cpu_limit)),
                ("memory", memory.unwrap_or(&s.sandbox_memory_limit)),
            ])),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: HOME_VOLUME.into(),
            mount_path: HOME.into(),
            ..Default::default()
        }]),
        working_dir: Some(HOME.into()),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(session_probe_command()),
            }),
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        init_containers: {
            let init: Vec<Container> = clone_container(spec, s)
                .into_iter()
                .chain(setup_container(spec, s, &container))
                .collect();
            (!init.is_empty()).then_some(init)
        },
        containers: vec![container],
        // The sandbox runs code an AI wrote; it gets no API credentials.
        automount_service_account_token: Some(false),
        // Service links would put every Service of the namespace in the env.
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(10),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(s.run_as_user),
            run_as_group: Some(s.run_as_user),
            fs_group: Some(s.run_as_user),
            // A large home would otherwise be chowned file by file at every start.
            fs_group_change_policy: Some("OnRootMismatch".into()),
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let home_claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(HOME_VOLUME.into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: s.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(s.home_size.clone()),
                )])),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    };
    StatefulSet {
        metadata: meta(r, statefulset_name(r), SANDBOX_KIND),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            revision_history_limit: Some(1),
            service_name: Some(service_name(r)),
            selector: LabelSelector {
                match_labels: Some(pod_selector(r)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        ENV_HASH_ANNOTATION.to_string(),
                        env_hash(spec),
                    )])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![home_claim]),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    // Delete = the user deleted the sandbox; stop (scale to 0) keeps the home.
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// What the StatefulSet and the Service select pods by.
fn pod_selector(r: &ResourceRef) -> BTreeMap<String, String> {
    BTreeMap::from([(RESOURCE_LABEL.to_string(), r.resource_name.clone())])
}

fn service(r: &ResourceRef) -> Service {
    Service {
        metadata: meta(r, service_name(r), SANDBOX_KIND),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(pod_selector(r)),
            ports: Some(vec![ServicePort {
                name: Some(APP_PORT_NAME.into()),
                port: APP_PORT,
                target_port: Some(IntOrString::Int(APP_PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn ingress(r: &ResourceRef, s: &K8sSettings) -> Option<Ingress> {
    let host = app_host(r, s)?;
    Some(Ingress {
        metadata: meta(r, ingress_name(r), SANDBOX_KIND),
        spec: Some(IngressSpec {
            ingress_class_name: s.ingress_class.clone(),
            rules: Some(vec![IngressRule {
                host: Some(host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: service_name(r),
                                port: Some(ServiceBackendPort {
                                    number: Some(APP_PORT),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            tls: Some(vec![IngressTLS {
                hosts: Some(vec![host]),
                secret_name: Some(s.tls_secret.clone()),
            }]),
            default_backend: None,
        }),
        status: None,
    })
}

fn env_secret(spec: &SandboxSpec) -> Secret {
    let r = &spec.resource;
    Secret {
        metadata: meta(r, env_secret_name(r), SANDBOX_KIND),
        type_: Some("Opaque".into()),
        data: Some(secret_data(spec)),
        ..Default::default()
    }
}
