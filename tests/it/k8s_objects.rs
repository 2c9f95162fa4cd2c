//! The exact objects Kiln asks a cluster for, as reviewed snapshot files
//! (`tests/snapshots/`): a change to any of them shows in review as a diff
//! of the YAML an operator would `kubectl get -o yaml`.

use std::collections::BTreeSet;

use kiln::driver::{DatabaseSpec, ResourceRef, SandboxSpec};
use kiln::k8s::database_objects::database_objects;
use kiln::k8s::objects::{GIT_TOKEN_KEY, sandbox_objects};
use kiln::k8s::settings::K8sSettings;
use uuid::Uuid;

fn resource(name: &str) -> ResourceRef {
    ResourceRef {
        resource_name: name.into(),
        namespace: "kiln-alice".into(),
        project_slug: "shop".into(),
        owner: Uuid::nil(),
    }
}

fn settings() -> K8sSettings {
    K8sSettings {
        image: "ghcr.io/kiln-dev/kiln-runtime:0.1.0".into(),
        domain: Some("apps.example.com".into()),
        storage_class: Some("fast-ssd".into()),
        ingress_class: Some("nginx".into()),
        db_storage_class: Some("fast-ssd".into()),
        ..K8sSettings::default()
    }
}

fn sandbox_spec() -> SandboxSpec {
    let env = [
        ("ANTHROPIC_AUTH_TOKEN", "sk-ant-test"),
        (
            "DATABASE_URL",
            "postgres://postgres:pw@shop-db-postgresql.kiln-alice.svc:5432/postgres",
        ),
        ("NODE_ENV", "development"),
        ("PROJECT_NAME", "Shop"),
    ];
    SandboxSpec {
        resource: resource("shop-agentruntime-a1b2c3"),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        secret_keys: BTreeSet::from(["ANTHROPIC_AUTH_TOKEN".into(), "DATABASE_URL".into()]),
        repo: None,
        command: None,
        setup: None,
        sizing: Default::default(),
    }
}

#[test]
fn sandbox_statefulset() {
    let o = sandbox_objects(&sandbox_spec(), &settings());
    insta::assert_yaml_snapshot!("sandbox_statefulset", o.statefulset);
}

#[test]
fn a_sandbox_with_a_repository_clones_it_into_an_empty_home_only() {
    let mut spec = sandbox_spec();
    spec.repo = Some(kiln::driver::RepoSource {
        url: "https://github.com/acme/shop.git".into(),
        branch: Some("feature".into()),
        token: Some("ghp-not-in-the-spec".to_string().into()),
    });
    let o = sandbox_objects(&spec, &settings());
    let pod = o
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let init = pod.init_containers.as_ref().expect("an init container");
    assert_eq!(init.len(), 1);
    let clone = &init[0];
    let script = clone.command.as_ref().unwrap().join(" ");
    assert!(
        script.contains("ls -A"),
        "only into an empty home: {script}"
    );
    assert!(script.contains("protocol.file.allow=never"), "{script}");
    let mounts = clone.volume_mounts.as_ref().unwrap();
    assert_eq!(mounts[0].mount_path, "/home/kiln");
    let yaml = serde_yaml::to_string(&o.statefulset).unwrap();
    assert!(
        !yaml.contains("ghp-not-in-the-spec"),
        "no token in the spec"
    );
    // The token is in the Secret, where the init container's reference
    // points; a new token is no reason to roll the pod.
    let data = o.env_secret.data.as_ref().unwrap();
    assert_eq!(data[GIT_TOKEN_KEY].0, b"ghp-not-in-the-spec");
    let mut rotated = spec.clone();
    rotated.repo.as_mut().unwrap().token = Some("ghp-rotated".to_string().into());
    assert_eq!(
        kiln::k8s::objects::env_hash(&rotated),
        kiln::k8s::objects::env_hash(&spec)
    );
    insta::assert_yaml_snapshot!("sandbox_statefulset_with_repository", o.statefulset);
    // Without a repository there is none.
    let plain = sandbox_objects(&sandbox_spec(), &settings());
    let pod = plain.statefulset.spec.unwrap().template.spec.unwrap();
    assert!(pod.init_containers.is_none());
}

#[test]
fn sandbox_service() {
    let o = sandbox_objects(&sandbox_spec(), &settings());
    insta::assert_yaml_snapshot!("sandbox_service", o.service);
}

#[test]
fn sandbox_ingress() {
    let o = sandbox_objects(&sandbox_spec(), &settings());
    insta::assert_yaml_snapshot!("sandbox_ingress", o.ingress);
    // Without a domain there is nothing to publish the app on.
    let no_domain = K8sSettings {
        domain: None,
        ..settings()
    };
    assert!(
        sandbox_objects(&sandbox_spec(), &no_domain)
            .ingress
            .is_none()
    );
}

#[test]
fn sandbox_env_secret() {
    let o = sandbox_objects(&sandbox_spec(), &settings());
    insta::assert_yaml_snapshot!("sandbox_env_secret", o.env_secret);
}

#[test]
fn database_cluster_and_rbac() {
    let spec = DatabaseSpec {
        resource: resource("shop-agentruntime-d4e5f6"),
        password: "unused on Kubernetes".into(),
        sandbox: None,
    };
    let o = database_objects(&spec, &settings());
    insta::assert_yaml_snapshot!("database_cluster", o.cluster);
    insta::assert_yaml_snapshot!("database_service_account", o.service_account);
    insta::assert_yaml_snapshot!("database_role", o.role);
    insta::assert_yaml_snapshot!("database_role_binding", o.role_binding);
}

#[test]
fn tenant_network_policies() {
    let policies = kiln::k8s::network_policy::namespace_policies("kiln-alice", &settings());
    insta::assert_yaml_snapshot!("tenant_network_policies", policies);
}
