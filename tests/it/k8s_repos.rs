//! A project with a repository on Kubernetes (issue 19, part 2): created
//! over exec, through the real reconcile loop, against the Kubernetes API
//! emulator over real HTTP. The StatefulSet read back from the emulator has
//! an init container that clones only into an empty home, with the owner's
//! token reaching it from the sandbox's Secret alone. The test then plays
//! kubelet for that init container: it runs the container's own command
//! with the environment the spec gives it (the Secret's value where the spec
//! refers to it) against a private git server on loopback, and reports a
//! failed one as kubelet would (the container's status, git's output as
//! its termination message).
//!
//! Over 500 lines: four end-to-end scenarios and the kubelet stand-in
//! they share.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kiln::backends::Backends;
use kiln::console::RepoPolicy;
use kiln::k8s::objects::{
    CLONE_CONTAINER, CONTAINER, GIT_TOKEN_KEY, SANDBOX_KIND, SETUP_CONTAINER, env_secret_name,
    labels, pod_name, statefulset_name,
};
use kiln::k8s::settings::K8sSettings;
use kiln::model::ProjectStatus;
use kiln::reconcile::{ReconcileConfig, Reconciler};
use kiln::store::Store;
use kiln::store::resources::ResourceKind;
use kiln::store::users::User;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::support::git::git;
use crate::support::git_http::PrivateGitServer;
use crate::support::k8s::Emulator;
use crate::support::{TestDb, eventually};

/// A store, and a reconcile loop whose server cluster is the emulator.
struct Harness {
    _db: TestDb,
    store: Store,
    emu: Emulator,
    loop_: Reconciler,
    /// Sessions and git state of the sandboxes, through the emulator.
    backends: Arc<Backends>,
}

impl Harness {
    async fn new() -> Harness {
        let db = TestDb::new().await;
        let store = db.store().await;
        let emu = Emulator::start().await;
        let backends = Arc::new(crate::support::k8s::server_backends(
            &emu,
            &store,
            K8sSettings::default(),
        ));
        let mut config = ReconcileConfig {
            resync: Duration::from_millis(50),
            ..Default::default()
        };
        config.schedule.poll_interval = Duration::from_millis(50);
        let loop_ = Reconciler::new(
            store.clone(),
            backends.clone(),
            backends.clone(),
            config,
            "k8s-repos",
        );
        Harness {
            _db: db,
            store,
            emu,
            loop_,
            backends,
        }
    }

    /// A new user with a password.
    async fn user(&self, name: &str) -> User {
        self.store
            .create_user(name, Some("a long password"), false)
            .await
            .unwrap()
    }

    /// Adds a global template, as an admin does.
    async fn add_template(&self, text: &str) {
        kiln::console::Console::new(self.store.clone(), None, None)
            .operator()
            .add_template(text)
            .await
            .expect("a valid template");
    }

    /// Runs one exec command as `u` (private git hosts allowed); stdout.
    async fn exec(&self, u: &User, line: &str) -> String {
        let o = kiln::ssh::exec::run(
            &kiln::console::Console::new(self.store.clone(), Some(self.backends.clone()), None)
                .with_repos(RepoPolicy {
                    allow_private_hosts: true,
                })
                .as_user(u.clone(), kiln::console::Front::Exec),
            line,
            b"",
        )
        .await;
        let (out, err) = (
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        );
        assert_eq!(o.code, 0, "{line}: {out} {err}");
        out
    }

    /// The sandbox's StatefulSet and Secret, read from the emulator once
    /// the loop has written them.
    async fn sandbox_objects(&self, u: &User, project: &str) -> (StatefulSet, Secret) {
        let p = self.store.find_project(u.id, project).await.unwrap();
        let r = p
            .resources
            .iter()
            .find(|r| r.kind == ResourceKind::Sandbox)
            .unwrap();
        let ns = format!("kiln-{}", u.username);
        let sets: Api<StatefulSet> = Api::namespaced(self.emu.client(), &ns);
        let secrets: Api<Secret> = Api::namespaced(self.emu.client(), &ns);
        let r = kiln::driver::ResourceRef {
            resource_name: r.resource_name.clone(),
            namespace: ns.clone(),
            project_slug: p.project.slug.clone(),
            owner: u.id,
        };
        let (sts_name, secret_name) = (statefulset_name(&r), env_secret_name(&r));
        eventually(
            "the sandbox's StatefulSet",
            Duration::from_secs(30),
            || async {
                self.loop_.drain().await.unwrap();
                let sts = sets.get_opt(&sts_name).await.unwrap()?;
                let secret = secrets.get_opt(&secret_name).await.unwrap()?;
                Some((sts, secret))
            },
        )
        .await
    }
}

fn pod_containers(sts: &StatefulSet) -> (Vec<Container>, Vec<Container>) {
    let pod = sts.spec.clone().unwrap().template.spec.unwrap();
    (pod.init_containers.unwrap_or_default(), pod.containers)
}

/// Plays kubelet for `c`: runs its command on this host with the
/// environment its spec gives it, a secret reference resolved from
/// `secret`, and `home` standing for the home volume.
async fn run_init_container(c: &Container, secret: &Secret, home: &Path) -> std::process::Output {
    let data = secret.data.clone().unwrap_or_default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in c.env.clone().unwrap_or_default() {
        let value = match (e.value, e.value_from) {
            (Some(v), _) => v,
            (None, Some(from)) => {
                let key = from.secret_key_ref.expect("a secret reference");
                assert_eq!(key.name, secret.metadata.name.clone().unwrap());
                String::from_utf8(data[&key.key].0.clone()).unwrap()
            }
            (None, None) => String::new(),
        };
        env.insert(e.name, value);
    }
    env.insert("KILN_HOME".into(), home.to_string_lossy().into_owned());
    let command = c.command.clone().unwrap();
    // Not blocking: the git server answers on this test's runtime.
    tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(&env)
        .output()
        .await
        .expect("run the init container's command")
}

#[tokio::test]
async fn a_repository_is_cloned_by_an_init_container_into_an_empty_home_with_the_token_from_the_secret()
 {
    let token = format!("kiln-token-{}", uuid::Uuid::new_v4().simple());
    let repos = PrivateGitServer::start(&token).await;
    let url = repos.repository("private");
    let h = Harness::new().await;
    let alice = h.user("alice").await;
    h.store
        .set_user_config(alice.id, kiln::store::user_configs::GIT_TOKEN, &token, true)
        .await
        .unwrap();
    h.exec(&alice, &format!("create app --repo {url} --branch feature"))
        .await;

    let (sts, secret) = h.sandbox_objects(&alice, "app").await;
    let (init, containers) = pod_containers(&sts);
    assert_eq!(init.len(), 1, "one init container: {init:?}");
    let clone = &init[0];
    assert_eq!(clone.name, "clone");
    let script = clone.command.clone().unwrap().join(" ");
    assert!(
        script.contains("ls -A"),
        "only into an empty home: {script}"
    );
    assert!(script.contains("protocol.file.allow=never"), "{script}");
    let mounts = clone.volume_mounts.clone().unwrap();
    let sandbox = containers.iter().find(|c| c.name == CONTAINER).unwrap();
    let home = &sandbox.volume_mounts.clone().unwrap()[0];
    assert_eq!(
        (mounts[0].name.as_str(), mounts[0].mount_path.as_str()),
        (home.name.as_str(), home.mount_path.as_str()),
        "the clone lands in the sandbox's home volume"
    );
    let env = clone.env.clone().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} in {env:?}"))
            .clone()
    };
    assert_eq!(value("KILN_REPO_URL").value.as_deref(), Some(url.as_str()));
    assert_eq!(value("KILN_REPO_BRANCH").value.as_deref(), Some("feature"));
    let token_var = value(GIT_TOKEN_KEY);
    assert_eq!(token_var.value, None, "never a literal: {token_var:?}");
    let key = token_var.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!(Some(key.name), secret.metadata.name.clone());
    assert_eq!(key.key, GIT_TOKEN_KEY);
    assert_eq!(
        secret.data.clone().unwrap()[GIT_TOKEN_KEY].0,
        token.as_bytes(),
        "the Secret holds it"
    );
    let spec_text = serde_json::to_string(&sts).unwrap();
    assert!(!spec_text.contains(&token), "the token in the StatefulSet");
    assert!(
        sandbox
            .env
            .iter()
            .flatten()
            .all(|e| e.name != GIT_TOKEN_KEY),
        "the sandbox's own container never gets it"
    );

    // Kubelet runs the init container: the clone, with the token.
    let volume = std::env::temp_dir().join(format!(
        "kh-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&volume).unwrap();
    let out = run_init_container(clone, &secret, &volume).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("feature.txt")).unwrap(),
        "on feature\n"
    );
    assert_eq!(
        git(&volume, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "feature"
    );
    let config = std::fs::read_to_string(volume.join(".git/config")).unwrap();
    assert!(
        !config.contains(&token) && !config.contains("credential"),
        "{config}"
    );
    let seen = repos.seen();
    assert!(!seen.process_lists.is_empty(), "{seen:?}");
    for ps in &seen.process_lists {
        assert!(!ps.contains(&token), "the token in the process list: {ps}");
    }

    // A restart finds the home in use: nothing is cloned over the work.
    std::fs::write(volume.join("feature.txt"), "work in progress\n").unwrap();
    let served = repos.seen().served;
    let out = run_init_container(clone, &secret, &volume).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not empty"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("feature.txt")).unwrap(),
        "work in progress\n"
    );
    assert_eq!(repos.seen().served, served, "git never asked the server");
    let _ = std::fs::remove_dir_all(&volume);
}

#[tokio::test]
async fn without_a_token_the_clone_is_an_error_told_as_clone_failed_and_a_retry_with_one_clones() {
    let token = format!("kiln-token-{}", uuid::Uuid::new_v4().simple());
    let repos = PrivateGitServer::start(&token).await;
    let url = repos.repository("private");
    let h = Harness::new().await;
    let bob = h.user("bob").await;
    h.exec(&bob, &format!("create app --repo {url}")).await;
    let (sts, secret) = h.sandbox_objects(&bob, "app").await;
    let (init, _) = pod_containers(&sts);
    let clone = &init[0];
    assert!(
        clone
            .env
            .iter()
            .flatten()
            .all(|e| e.name != GIT_TOKEN_KEY && e.value_from.is_none()),
        "{clone:?}"
    );
    assert!(
        !secret
            .data
            .clone()
            .unwrap_or_default()
            .contains_key(GIT_TOKEN_KEY)
    );
    let volume = std::env::temp_dir().join(format!(
        "kh-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&volume).unwrap();
    let out = run_init_container(clone, &secret, &volume).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("fatal"), "git's own message: {stderr}");
    assert!(repos.seen().refused > 0, "{:?}", repos.seen());
    let _ = std::fs::remove_dir_all(&volume);

    // Kubelet reports it as it would: the StatefulSet's pod, its clone
    // container terminated with an error, git's output as its message.
    let ns = "kiln-bob";
    let (pods, r) = make_pod(&h, &bob, "app", &sts).await;
    let pod = pod_name(&r);
    let error = fail_init_container(
        &h,
        &bob,
        "app",
        (&pods, &pod),
        CLONE_CONTAINER,
        128,
        &stderr,
    )
    .await;
    assert!(error.starts_with("git clone failed: "), "{error}");
    assert!(error.contains("fatal"), "git's own message: {error}");
    let list = h.exec(&bob, "notifications --json").await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["kind"], "clone_failed", "{list}");
    assert_eq!(list[0]["message"], error.as_str(), "{list}");

    // Held stopped, not retried forever by kubelet; the pod goes.
    let sets: Api<StatefulSet> = Api::namespaced(h.emu.client(), ns);
    let held = sets.get(&statefulset_name(&r)).await.unwrap();
    assert_eq!(held.spec.unwrap().replicas, Some(0));
    pods.delete(&pod_name(&r), &Default::default())
        .await
        .unwrap();

    // With a token set, a retry starts it afresh and the clone succeeds.
    h.store
        .set_user_config(bob.id, kiln::store::user_configs::GIT_TOKEN, &token, true)
        .await
        .unwrap();
    h.exec(&bob, "retry app").await;
    let (sts, secret) = eventually(
        "the sandbox started again with the token",
        Duration::from_secs(30),
        || async {
            h.loop_.drain().await.unwrap();
            let (sts, secret) = h.sandbox_objects(&bob, "app").await;
            let has_token = secret
                .data
                .as_ref()
                .is_some_and(|d| d.contains_key(GIT_TOKEN_KEY));
            (sts.spec.as_ref().unwrap().replicas == Some(1) && has_token).then_some((sts, secret))
        },
    )
    .await;
    let (init, _) = pod_containers(&sts);
    let volume = std::env::temp_dir().join(format!(
        "kh-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&volume).unwrap();
    let out = run_init_container(&init[0], &secret, &volume).await;
    assert!(out.status.success(), "{out:?}");
    assert!(volume.join("README.md").exists());
    let _ = std::fs::remove_dir_all(&volume);
    let p = h.store.find_project(bob.id, "app").await.unwrap();
    assert_ne!(p.project.status, ProjectStatus::Error);
}

#[tokio::test]
async fn a_templates_image_and_sizes_reach_the_statefulset_and_a_template_saved_from_it() {
    let h = Harness::new().await;
    let alice = h.user("alice").await;
    h.add_template(
        "name = \"sized\"\n[kubernetes]\nimage = \"ghcr.io/acme/py:3.12\"\n\
             cpu = \"750m\"\nmemory = \"1536Mi\"\n",
    )
    .await;
    h.exec(&alice, "create app --template sized").await;
    h.exec(&alice, "create plain").await;

    let defaults = K8sSettings::default();
    let quantities = |c: &Container| {
        let r = c.resources.clone().unwrap();
        let pick = |m: Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >| {
            let m = m.unwrap();
            (m["cpu"].0.clone(), m["memory"].0.clone())
        };
        (pick(r.requests), pick(r.limits))
    };
    let (sts, _) = h.sandbox_objects(&alice, "app").await;
    let (_, containers) = pod_containers(&sts);
    let sandbox = containers.iter().find(|c| c.name == CONTAINER).unwrap();
    assert_eq!(sandbox.image.as_deref(), Some("ghcr.io/acme/py:3.12"));
    let sized = ("750m".to_string(), "1536Mi".to_string());
    assert_eq!(quantities(sandbox), (sized.clone(), sized));

    // A project without a template runs the server's image and sizes.
    let (sts, _) = h.sandbox_objects(&alice, "plain").await;
    let (init, containers) = pod_containers(&sts);
    assert!(init.is_empty(), "no repository, no clone: {init:?}");
    let sandbox = containers.iter().find(|c| c.name == CONTAINER).unwrap();
    assert_eq!(sandbox.image.as_deref(), Some(defaults.image.as_str()));
    assert_eq!(
        quantities(sandbox),
        (
            (
                defaults.sandbox_cpu_request.clone(),
                defaults.sandbox_memory_request.clone()
            ),
            (
                defaults.sandbox_cpu_limit.clone(),
                defaults.sandbox_memory_limit.clone()
            )
        )
    );

    // A template saved from the project keeps them.
    h.exec(&alice, "templates save mine --from app").await;
    let shown = h.exec(&alice, "templates show mine --json").await;
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        shown["template"]["kubernetes"],
        serde_json::json!({"image": "ghcr.io/acme/py:3.12", "cpu": "750m", "memory": "1536Mi"}),
        "{shown}"
    );
}

#[tokio::test]
async fn the_clone_runs_kilns_image_whatever_the_templates_image() {
    let repos = crate::support::git::GitServer::start().await;
    let url = repos.repository("app");
    let h = Harness::new().await;
    let alice = h.user("alice").await;
    h.add_template(&format!(
            "name = \"sized\"\n[repo]\nurl = \"{url}\"\n[kubernetes]\nimage = \"ghcr.io/acme/no-git:1\"\n"
        )).await;
    h.exec(&alice, "create app --template sized").await;
    let (sts, _) = h.sandbox_objects(&alice, "app").await;
    let (init, containers) = pod_containers(&sts);
    let sandbox = containers.iter().find(|c| c.name == CONTAINER).unwrap();
    assert_eq!(sandbox.image.as_deref(), Some("ghcr.io/acme/no-git:1"));
    assert_eq!(init.len(), 1, "{init:?}");
    assert_eq!(
        init[0].image.as_deref(),
        Some(K8sSettings::default().image.as_str())
    );
}

/// The sandbox's pod as kubelet would have made it from the StatefulSet.
async fn make_pod(
    h: &Harness,
    u: &User,
    project: &str,
    sts: &StatefulSet,
) -> (Api<Pod>, kiln::driver::ResourceRef) {
    let p = h.store.find_project(u.id, project).await.unwrap();
    let row = p
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Sandbox)
        .unwrap();
    let ns = format!("kiln-{}", u.username);
    let r = kiln::driver::ResourceRef {
        resource_name: row.resource_name.clone(),
        namespace: ns.clone(),
        project_slug: p.project.slug.clone(),
        owner: u.id,
    };
    let pods: Api<Pod> = Api::namespaced(h.emu.client(), &ns);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&r)),
            labels: Some(labels(&r, SANDBOX_KIND)),
            ..Default::default()
        },
        spec: sts.spec.clone().unwrap().template.spec,
        ..Default::default()
    };
    pods.create(&PostParams::default(), &pod).await.unwrap();
    (pods, r)
}

/// Reports init container `container` of `project`'s pod `pod` as kubelet does
/// when it failed (`exit`, `message` as its termination message, retried
/// in a crash loop), and waits for the project's ERROR: its reason.
async fn fail_init_container(
    h: &Harness,
    u: &User,
    project: &str,
    (pods, pod): (&Api<Pod>, &str),
    container: &str,
    exit: i32,
    message: &str,
) -> String {
    let status = serde_json::json!({ "status": { "phase": "Pending", "initContainerStatuses": [{
        "name": container, "image": "kiln", "imageID": "", "ready": false, "restartCount": 1,
        "state": { "waiting": { "reason": "CrashLoopBackOff" } },
        "lastState": { "terminated": { "exitCode": exit, "reason": "Error",
                                       "message": message } } }] } });
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    eventually(
        &format!("{project} in ERROR"),
        Duration::from_secs(30),
        || async {
            h.loop_.drain().await.unwrap();
            let p = h.store.find_project(u.id, project).await.unwrap();
            (p.project.status == ProjectStatus::Error).then(|| {
                p.resources
                    .iter()
                    .find(|r| r.kind == ResourceKind::Sandbox)
                    .and_then(|r| r.last_error.clone())
                    .unwrap_or_default()
            })
        },
    )
    .await
}

/// A template's setup script on Kubernetes: an init container after the
/// clone, in the template's image with the sandbox's environment, mounts
/// and confinement. Kubelet's part is played on a directory standing for
/// the home volume: the script runs once (a restart skips it), its output
/// is kept, its files stay out of `git status`; a failing script is an
/// ERROR with its last lines and a `setup_failed` notification. And the
/// sandbox's git state (`git NAME status`) is read from its pod: the
/// command Kiln execs there, run on the same directory, gives the answer
/// the emulator returns.
#[tokio::test]
async fn a_templates_setup_script_runs_once_after_the_clone_and_git_status_reads_the_pod() {
    let repos = crate::support::git::GitServer::start().await;
    let url = repos.repository("app");
    let h = Harness::new().await;
    let alice = h.user("alice").await;
    h.add_template(&format!(
        "name = \"ready\"\nsetup = \"echo preparing; echo made > made.txt\"\n\
         [repo]\nurl = \"{url}\"\n[kubernetes]\nimage = \"ghcr.io/acme/node:20\"\n"
    ))
    .await;
    h.add_template(
        "name = \"broken\"\nsetup = \"echo installing; echo 'npm ERR! missing script: build' >&2; exit 2\"\n",
    )
    .await;
    h.exec(&alice, "create app --template ready").await;
    let (sts, secret) = h.sandbox_objects(&alice, "app").await;
    let (init, containers) = pod_containers(&sts);
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [CLONE_CONTAINER, SETUP_CONTAINER], "clone first");
    let (clone, setup) = (&init[0], &init[1]);
    let sandbox = containers.iter().find(|c| c.name == CONTAINER).unwrap();
    assert_eq!(setup.image.as_deref(), Some("ghcr.io/acme/node:20"));
    assert_eq!(setup.volume_mounts, sandbox.volume_mounts);
    assert_eq!(setup.security_context, sandbox.security_context);
    assert_eq!(setup.resources, sandbox.resources);
    let env_names =
        |c: &Container| -> Vec<String> { c.env.iter().flatten().map(|e| e.name.clone()).collect() };
    for name in env_names(sandbox) {
        assert!(
            env_names(setup).contains(&name),
            "{name} in the setup's env"
        );
    }

    // Kubelet runs both: the clone, then the script.
    let volume = std::env::temp_dir().join(format!(
        "kh-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&volume).unwrap();
    for c in [clone, setup] {
        let out = run_init_container(c, &secret, &volume).await;
        assert!(out.status.success(), "{}: {out:?}", c.name);
    }
    assert_eq!(
        std::fs::read_to_string(volume.join("made.txt")).unwrap(),
        "made\n"
    );
    let log = std::fs::read_to_string(volume.join(".kiln-setup.log")).unwrap();
    assert!(log.contains("preparing"), "{log}");
    let status = git(&volume, &["status", "--porcelain"]);
    assert!(
        !status.contains(".kiln-setup"),
        "Kiln's files in git status: {status}"
    );
    // A restart: the script is not run again.
    std::fs::remove_file(volume.join("made.txt")).unwrap();
    let out = run_init_container(setup, &secret, &volume).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already ran"),
        "{out:?}"
    );
    assert!(!volume.join("made.txt").exists(), "the script ran twice");

    // `git app status`: Kiln execs its command in the sandbox container;
    // the answer is what that command prints on the home volume.
    std::fs::write(volume.join("README.md"), "changed\n").unwrap();
    std::fs::write(volume.join("notes.txt"), "new\n").unwrap();
    let command = kiln::k8s::attach::git_state_command(&volume.to_string_lossy());
    let printed = std::process::Command::new(&command[0])
        .args(&command[1..])
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(printed.contains("# branch.head"), "{printed}");
    let (pods, r) = make_pod(&h, &alice, "app", &sts).await;
    let pod = pod_name(&r);
    h.emu
        .set_exec_rules(serde_json::json!([{ "contains": "--porcelain=v2", "stdout": printed }]))
        .await;
    let json = h.exec(&alice, "git app status --json").await;
    let state: serde_json::Value = serde_json::from_str(&json).unwrap();
    let head = git(&volume, &["rev-parse", "--abbrev-ref", "HEAD"]);
    assert_eq!(state["branch"], head.trim(), "{state}");
    assert_eq!(
        state["upstream"],
        format!("origin/{}", head.trim()),
        "{state}"
    );
    // README.md changed and notes.txt new (Kiln's own files excluded).
    assert_eq!(state["changed"], 2, "{state}");
    let calls = h.emu.exec_calls().await;
    let call = calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.to_string().contains("--porcelain=v2"))
        .unwrap_or_else(|| panic!("no git exec in {calls}"));
    assert!(call.to_string().contains(&pod), "{call}");
    assert!(call.to_string().contains(CONTAINER), "{call}");
    // A home that is no repository reads as none.
    h.emu
        .set_exec_rules(serde_json::json!([{ "contains": "--porcelain=v2",
            "stdout": format!("{}\n", kiln::k8s::attach::NO_REPOSITORY) }]))
        .await;
    let text = h.exec(&alice, "git app status").await;
    assert!(text.contains("has no git repository"), "{text}");
    drop(pods);
    let _ = std::fs::remove_dir_all(&volume);

    // A failing script: kubelet reports its container terminated with the
    // script's last lines as its message.
    h.exec(&alice, "create other --template broken").await;
    let (sts, secret) = h.sandbox_objects(&alice, "other").await;
    let (init, _) = pod_containers(&sts);
    assert_eq!(init.len(), 1, "no repository, no clone: {init:?}");
    let volume = std::env::temp_dir().join(format!(
        "kh-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&volume).unwrap();
    let out = run_init_container(&init[0], &secret, &volume).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("npm ERR! missing script: build"), "{said}");
    assert!(!volume.join(".kiln-setup.done").exists());
    let _ = std::fs::remove_dir_all(&volume);
    let (pods, r) = make_pod(&h, &alice, "other", &sts).await;
    let pod = pod_name(&r);
    let error = fail_init_container(
        &h,
        &alice,
        "other",
        (&pods, &pod),
        SETUP_CONTAINER,
        2,
        &said,
    )
    .await;
    assert_eq!(
        error,
        "the setup script failed: installing; npm ERR! missing script: build"
    );
    let list = h.exec(&alice, "notifications --json").await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let kinds: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["setup_failed"], "{list}");
}
