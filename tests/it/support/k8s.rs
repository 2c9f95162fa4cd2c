//! A Kubernetes API emulator for tests: `tests/k8s_emulator/emulator.py` (kmock 0.8
//! plus the semantics kube-rs needs; its README says what it emulates) as a child
//! process on a free loopback port. kube-rs talks to it over real HTTP; the test
//! plays kubelet and RBAC through the `/_kmock` control endpoints wrapped below.
//!
//! The first use on a machine creates a Python venv at `$KILN_KMOCK_VENV` (default
//! `~/.cache/kiln-k8s-emulator`) and installs `tests/k8s_emulator/requirements.txt`
//! into it. Tests and test processes run in parallel, so the install holds an
//! exclusive `flock` on a lock file beside the venv, and a marker file holding the
//! installed requirements, written after a successful install, says it is done; a
//! venv made from other requirements is made again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::{Client, Config};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The emulator's folder, under the crate root.
const EMULATOR_DIR: &str = "tests/k8s_emulator";
/// Written into the venv only after pip succeeded: the requirements it holds.
const MARKER: &str = ".kiln-requirements";
/// Startup takes about 0.3 s; the bound is for a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep at most this much of the emulator's stderr for error messages.
const STDERR_KEEP: usize = 64 * 1024;

pub struct Emulator {
    url: String,
    child: Child,
    client: Client,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Also closes its stdin, on which the emulator exits by itself.
        let _ = self.child.start_kill();
    }
}

impl Emulator {
    /// Starts a fresh emulator (empty store) and waits for it to listen.
    pub async fn start() -> Emulator {
        let python = tokio::task::spawn_blocking(venv_python)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let script = emulator_dir().join("emulator.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {}: {e}", python.display(), script.display()));

        let stderr = Arc::new(Mutex::new(String::new()));
        let drain = drain_stderr(child.stderr.take().expect("piped stderr"), stderr.clone());
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(url) = line.strip_prefix("READY ") {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await;
        let url = match ready {
            Ok(Some(url)) => url,
            failed => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                let why = if failed.is_err() {
                    format!("no READY line within {READY_TIMEOUT:?}")
                } else {
                    "it exited before printing READY".to_string()
                };
                panic!(
                    "the Kubernetes emulator ({}) did not start: {why}\n--- its stderr ---\n{}",
                    script.display(),
                    stderr.lock().unwrap()
                );
            }
        };
        // Nothing else is printed on stdout, but never let a full pipe block it.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });

        let config = Config::new(url.parse().expect("emulator URL"));
        let client = Client::try_from(config).expect("a client for the emulator");
        Emulator {
            url,
            child,
            client,
            stderr,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A client for the emulator: plain HTTP, no authentication, namespace "default".
    pub fn client(&self) -> Client {
        Client::try_from(Config::new(self.url.parse().expect("emulator URL")))
            .expect("a client for the emulator")
    }

    /// A kubeconfig (token user) pointing at the emulator, with `namespace` in its
    /// current context, as a tenant would paste it.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {url}
users:
- name: tenant
  user:
    token: emulator-token-not-secret
contexts:
- name: tenant@emulator
  context:
    cluster: emulator
    user: tenant
    namespace: {namespace}
current-context: tenant@emulator
",
            url = self.url
        )
    }

    /// What the emulator printed on stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Every stored object, as a JSON array.
    pub async fn objects(&self) -> serde_json::Value {
        self.control_json("GET", "/_kmock/objects", None).await
    }

    /// Canned answers for pods/exec: `[{"contains":"psql","stdout":"..","stderr":"..","exit":3}]`
    /// (optional `"pod"`). A rule matching the joined argv wins over the echo.
    pub async fn set_exec_rules(&self, rules: serde_json::Value) {
        self.control_json("PUT", "/_kmock/exec", Some(rules)).await;
    }

    /// Every exec so far: `[{pod, namespace, container, argv, tty, stdin, resizes:[{width,height}]}]`.
    pub async fn exec_calls(&self) -> serde_json::Value {
        self.control_json("GET", "/_kmock/exec/calls", None).await
    }

    /// Sets a pod's log text (and un-ends it).
    pub async fn set_log(&self, ns: &str, pod: &str, text: &str) {
        self.control(
            "PUT",
            &format!("/_kmock/logs/{ns}/{pod}"),
            text.as_bytes().to_vec(),
            "text/plain",
        )
        .await;
    }

    /// Appends to a pod's log; followers receive it.
    pub async fn append_log(&self, ns: &str, pod: &str, text: &str) {
        self.control(
            "POST",
            &format!("/_kmock/logs/{ns}/{pod}"),
            text.as_bytes().to_vec(),
            "text/plain",
        )
        .await;
    }

    /// Ends every `follow=true` stream of this pod's log.
    pub async fn end_log(&self, ns: &str, pod: &str) {
        self.control(
            "POST",
            &format!("/_kmock/logs/{ns}/{pod}/end"),
            Vec::new(),
            "text/plain",
        )
        .await;
    }

    /// SelfSubjectAccessReviews in these namespaces come back `allowed: false` with a reason.
    pub async fn deny_namespaces(&self, ns: &[&str]) {
        let body = serde_json::json!({ "namespaces": ns });
        self.control_json("PUT", "/_kmock/deny", Some(body)).await;
    }

    /// Error injection, replacing earlier rules:
    /// `[{"method":"POST","path_contains":"statefulsets","status":500,"times":2,"delay_ms":0}]`.
    /// `path_contains` is matched against the path and query; without `times` a rule stays.
    pub async fn fail(&self, rules: serde_json::Value) {
        self.control_json("PUT", "/_kmock/fail", Some(rules)).await;
    }

    /// The SelfSubjectAccessReviews asked so far (their resourceAttributes plus `allowed`).
    /// Every API request made so far, as `METHOD /path`.
    pub async fn requests(&self) -> Vec<String> {
        let all = self.control_json("GET", "/_kmock/requests", None).await;
        all.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap(),
                    r["path"].as_str().unwrap()
                )
            })
            .collect()
    }

    pub async fn reviews(&self) -> serde_json::Value {
        self.control_json("GET", "/_kmock/reviews", None).await
    }

    async fn control_json(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let text = self.control(method, path, body, "application/json").await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }

    async fn control(&self, method: &str, path: &str, body: Vec<u8>, content_type: &str) -> String {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(body)
            .expect("control request");
        self.client
            .request_text(request)
            .await
            .unwrap_or_else(|e| panic!("emulator control {method} {path}: {e}\n{}", self.stderr()))
    }
}

fn drain_stderr(stderr: tokio::process::ChildStderr, keep: Arc<Mutex<String>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stderr = stderr;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut kept = keep.lock().unwrap();
            kept.push_str(&String::from_utf8_lossy(&buf[..n]));
            if kept.len() > STDERR_KEEP {
                let cut = kept.len() - STDERR_KEEP;
                let cut = (cut..kept.len())
                    .find(|&i| kept.is_char_boundary(i))
                    .unwrap_or(0);
                kept.drain(..cut);
            }
        }
    })
}

fn emulator_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(EMULATOR_DIR)
}

/// Where the venv lives: `$KILN_KMOCK_VENV`, else `~/.cache/kiln-k8s-emulator`.
fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_KMOCK_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("kiln-k8s-emulator")
}

/// Whether the venv at `dir` was installed from exactly `requirements`.
fn installed(dir: &Path, requirements: &str) -> bool {
    std::fs::read_to_string(dir.join(MARKER)).is_ok_and(|done| done == requirements)
}

/// The venv's interpreter, creating the venv and installing the requirements
/// first if needed. Blocking; at most one process on the machine installs at a time.
fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let requirements_path = emulator_dir().join("requirements.txt");
            let requirements = std::fs::read_to_string(&requirements_path)
                .unwrap_or_else(|e| panic!("read {}: {e}", requirements_path.display()));
            let dir = venv_dir();
            let python = dir.join("bin").join("python");
            if installed(&dir, &requirements) {
                return python;
            }
            let parent = dir.parent().expect("the venv path has a parent");
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
            let name = dir.file_name().expect("venv dir name").to_string_lossy();
            let lock_path = parent.join(format!("{name}.lock"));
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
            // Released when `lock` closes.
            lock.lock()
                .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
            if !installed(&dir, &requirements) {
                install(&dir, &requirements_path, &requirements);
            }
            drop(lock);
            python
        })
        .clone()
}

fn install(dir: &Path, requirements_path: &Path, requirements: &str) {
    // A directory without the marker, or with another one, is an earlier attempt
    // or other requirements.
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }
    let base = std::env::var("KILN_PYTHON").unwrap_or_else(|_| "python3".to_string());
    run(
        std::process::Command::new(&base)
            .args(["-c", "import sys; sys.exit(sys.version_info < (3, 11))"]),
        &format!("{base} must be Python 3.11 or newer (kmock 0.8 needs it); set KILN_PYTHON"),
    );
    run(
        std::process::Command::new(&base)
            .arg("-m")
            .arg("venv")
            .arg(dir),
        &format!("create a venv at {} with {base}", dir.display()),
    );
    run(
        std::process::Command::new(dir.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(requirements_path),
        &format!(
            "pip install -r {} into {}",
            requirements_path.display(),
            dir.display()
        ),
    );
    std::fs::write(dir.join(MARKER), requirements)
        .unwrap_or_else(|e| panic!("write the marker in {}: {e}", dir.display()));
}

fn run(command: &mut std::process::Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run {command:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what}: {command:?} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Plays the StatefulSet controller and kubelet in `ns`: every
/// StatefulSet's status follows its spec (all replicas ready).
pub async fn play_statefulsets(client: &Client, ns: &str) {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::api::{Api, ListParams, Patch, PatchParams};
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    for s in sets.list(&ListParams::default()).await.unwrap().items {
        let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let name = s.metadata.name.clone().unwrap();
        let status = serde_json::json!({ "status": {
            "replicas": want, "readyReplicas": want, "currentReplicas": want,
            "updatedReplicas": want, "availableReplicas": want,
            "observedGeneration": s.metadata.generation,
        }});
        sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
}

/// Plays KubeBlocks in `ns`: a cluster's phase follows its replicas, and
/// its credential Secret appears once it first runs.
pub async fn play_kubeblocks(client: &Client, ns: &str) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use kiln::k8s::database_objects::{cluster_api_resource, credential_secret_name};
    use kube::api::{Api, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
    let clusters: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &cluster_api_resource());
    for c in clusters.list(&ListParams::default()).await.unwrap().items {
        let name = c.metadata.name.clone().unwrap();
        let replicas = c.data["spec"]["componentSpecs"][0]["replicas"]
            .as_i64()
            .unwrap_or(1);
        let phase = if replicas == 0 { "Stopped" } else { "Running" };
        clusters
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "status": { "phase": phase } })),
            )
            .await
            .unwrap();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let r = kiln::driver::ResourceRef {
            resource_name: name.clone(),
            namespace: ns.into(),
            project_slug: String::new(),
            owner: uuid::Uuid::nil(),
        };
        let secret_name = credential_secret_name(&r);
        if replicas > 0 && secrets.get_opt(&secret_name).await.unwrap().is_none() {
            let data = [
                ("host", format!("{name}-postgresql.{ns}.svc")),
                ("port", "5432".into()),
                ("username", "postgres".into()),
                ("password", "s3cret-Pw".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
            .collect();
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(secret_name),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..Secret::default()
            };
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
        }
    }
}

/// The back ends of a server whose cluster is the emulator: every tenant
/// is served there, and the local back end is a fake nothing reaches.
pub fn server_backends(
    emu: &Emulator,
    store: &kiln::store::Store,
    settings: kiln::k8s::settings::K8sSettings,
) -> kiln::backends::Backends {
    let fake = Arc::new(kiln::fake_driver::FakeDriver::new());
    kiln::backends::Backends::new(
        kiln::backends::LocalBackend {
            sandboxes: fake.clone(),
            databases: fake,
            attach: None,
        },
        Some(emu.client()),
        Arc::new(settings),
        Arc::new(store.clone()),
    )
}

/// A reconcile loop's settings for tests on the emulator: resyncs and
/// polls every 50 ms, retries from 20 ms up to 200 ms.
pub fn quick_reconcile() -> kiln::reconcile::ReconcileConfig {
    let mut config = kiln::reconcile::ReconcileConfig {
        resync: Duration::from_millis(50),
        ..Default::default()
    };
    config.schedule.poll_interval = Duration::from_millis(50);
    config.schedule.backoff_base = Duration::from_millis(20);
    config.schedule.backoff_cap = Duration::from_millis(200);
    config
}

/// A kubeconfig file for the emulator (namespace `namespace`), removed
/// when dropped: at the end of the test, not when `kiln serve` has merely
/// started listening (it reads `KUBECONFIG` after binding its ports, and a
/// file removed before that read made it exit).
pub struct KubeconfigFile(std::path::PathBuf);

impl KubeconfigFile {
    pub fn new(emu: &Emulator, namespace: &str) -> KubeconfigFile {
        let path = std::env::temp_dir().join(format!("ko-kc-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, emu.kubeconfig(namespace)).unwrap();
        KubeconfigFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for KubeconfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
