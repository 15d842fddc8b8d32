//! A StoryForge deployment for one test: its own job store, a fake LLM, and the API and workers
//! started in-process or as real processes.
//!
//! The store is a namespace of its own on the test binary's private `redis-server`, or, with
//! `STORYFORGE_TEST_STORE=sqlite`, an embedded store in a directory of its own: the same
//! end-to-end suite runs against both (see the README's test command).
//!
//! Settings are passed as an explicit environment map, never through the test process's own
//! environment, so tests running in parallel cannot see each other's configuration.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use storyforge_api::AppState;
use storyforge_runtime::config::Settings;
use storyforge_runtime::services::{Services, open_store};
use storyforge_store::JobStore;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;

use crate::fake_llm::FakeLlm;
use crate::process::{ChildProcess, wait_until};
use crate::redis_server::{RedisServer, unique_namespace};

/// The workspace root, where `prompts/` and `data/` live.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The job store the suite runs against, from `STORYFORGE_TEST_STORE` (`redis`, the default, or
/// `sqlite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Redis,
    Sqlite,
}

impl TestStore {
    pub fn current() -> TestStore {
        match std::env::var("STORYFORGE_TEST_STORE").as_deref() {
            Ok("sqlite") => TestStore::Sqlite,
            Ok("redis") | Err(_) => TestStore::Redis,
            Ok(other) => panic!("STORYFORGE_TEST_STORE={other:?}: expected redis or sqlite"),
        }
    }
}

/// One test's deployment.
pub struct TestEnv {
    pub llm: FakeLlm,
    pub namespace: String,
    redis_url: String,
    /// The embedded store's directory, when the deployment uses one.
    store_dir: Option<Arc<tempfile::TempDir>>,
    /// The embedded store's one handle in this process, opened on first use and shared by the
    /// API and workers started in-process, as `storyforge up` shares it.
    embedded_store: OnceCell<Arc<dyn JobStore>>,
    /// Extra settings, as `STORYFORGE_*` variables.
    env: HashMap<String, String>,
    pub http: reqwest::Client,
}

impl TestEnv {
    /// A deployment on the suite's store (see [`TestStore`]), with short timings so recovery
    /// paths run quickly.
    pub async fn new(llm: FakeLlm) -> TestEnv {
        let env = TestEnv::on_redis(llm, &RedisServer::shared().url());
        match TestStore::current() {
            TestStore::Redis => env,
            TestStore::Sqlite => env.embedded(),
        }
    }

    /// The same deployment on an embedded store in a fresh directory of its own.
    pub fn embedded(self) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("sf-store-")
            .tempdir()
            .expect("a directory for the embedded store");
        TestEnv {
            store_dir: Some(Arc::new(dir)),
            ..self
        }
    }

    /// The embedded store's directory, if the deployment uses one.
    pub fn store_dir(&self) -> Option<&std::path::Path> {
        self.store_dir.as_deref().map(tempfile::TempDir::path)
    }

    pub fn on_redis(llm: FakeLlm, redis_url: &str) -> TestEnv {
        crate::init_test_logs();
        let namespace = unique_namespace("sf-test");
        let root = workspace_root();
        let env = [
            ("STORYFORGE_LLM_PROVIDER", "openai".to_string()),
            ("STORYFORGE_LLM_BASE_URL", llm.openai_base_url()),
            ("STORYFORGE_LLM_MODEL", "fake-model".to_string()),
            ("STORYFORGE_LLM_TIMEOUT", "5s".to_string()),
            ("STORYFORGE_JUDGE", "off".to_string()),
            // Identical stories would otherwise be served from the result cache.
            ("STORYFORGE_CACHE", "off".to_string()),
            ("STORYFORGE_LEASE_TTL", "3s".to_string()),
            ("STORYFORGE_RECONCILE_INTERVAL", "300ms".to_string()),
            ("STORYFORGE_DISPATCH_TIMEOUT", "5s".to_string()),
            ("STORYFORGE_RETRY_BASE", "100ms".to_string()),
            ("STORYFORGE_SHUTDOWN_GRACE", "5s".to_string()),
            (
                "STORYFORGE_PROMPTS_DIR",
                root.join("prompts").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        TestEnv {
            llm,
            namespace,
            redis_url: redis_url.to_string(),
            store_dir: None,
            embedded_store: OnceCell::new(),
            env,
            http: reqwest::Client::new(),
        }
    }

    /// Sets `STORYFORGE_<key>` for everything started after this call.
    pub fn set(&mut self, key: &str, value: &str) -> &mut TestEnv {
        self.env.insert(
            format!("STORYFORGE_{}", key.to_uppercase()),
            value.to_string(),
        );
        self
    }

    pub fn env_map(&self) -> HashMap<String, String> {
        let mut env = self.env.clone();
        env.insert("STORYFORGE_NAMESPACE".into(), self.namespace.clone());
        match self.store_dir() {
            Some(dir) => env.insert("STORYFORGE_STORE_DIR".into(), dir.display().to_string()),
            None => env.insert("STORYFORGE_REDIS_URL".into(), self.redis_url.clone()),
        };
        env
    }

    pub fn settings(&self) -> Settings {
        Settings::from_sources(None, self.env_map())
            .unwrap_or_else(|e| panic!("test settings: {e}"))
    }

    /// A handle on the job store, for arranging and asserting: the embedded store's one handle,
    /// or a new connection to Redis, as another process would have.
    pub async fn store(&self) -> Arc<dyn JobStore> {
        let settings = self.settings();
        let open = || async {
            open_store(&settings)
                .await
                .unwrap_or_else(|e| panic!("open the test store: {e}"))
        };
        match self.store_dir() {
            Some(_) => self.embedded_store.get_or_init(open).await.clone(),
            None => open().await,
        }
    }

    /// The services an API or worker started in-process runs on.
    async fn services(&self, settings: &Settings) -> Services {
        Services::around(self.store().await, settings, "storyforge-test")
            .expect("build the test services")
    }

    /// Starts the API in-process on a free port.
    pub async fn start_api(&self) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind api");
        let addr = listener.local_addr().expect("api addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = self.settings();
        let state = AppState::new(settings.clone(), self.services(&settings).await);
        let task = tokio::spawn(async move {
            storyforge_api::serve(state, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        let running = Running {
            base_url: format!("http://{addr}"),
            stop: Some(stop),
            task,
        };
        let http = self.http.clone();
        let health = format!("{}/health", running.base_url);
        wait_until(Duration::from_secs(10), "the API answers /health", || {
            let (http, health) = (http.clone(), health.clone());
            async move {
                http.get(&health)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        running
    }

    /// Starts a worker in-process.
    pub async fn start_worker(&self) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = self.settings();
        let services = self.services(&settings).await;
        let task = tokio::spawn(async move {
            let worker = storyforge_worker::run::build_context(settings, services).await?;
            storyforge_worker::run::serve(worker, async {
                let _ = stopped.await;
            })
            .await
        });
        Running {
            base_url: String::new(),
            stop: Some(stop),
            task,
        }
    }

    /// Starts `storyforge-worker` as a child process with this deployment's settings.
    pub fn spawn_worker_process(&self) -> ChildProcess {
        let env = self.env_map();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ChildProcess::spawn("storyforge-worker", &pairs)
    }

    /// Starts the release build of the workspace binary `name` (benchmarks) with this
    /// deployment's settings, `RUST_LOG=warn`, and `extra` on top.
    pub fn spawn_release(&self, name: &str, extra: &[(&str, &str)]) -> ChildProcess {
        let path = workspace_root().join("target/release").join(name);
        assert!(
            path.is_file(),
            "{} is missing: run `cargo build --release --workspace` first",
            path.display()
        );
        let mut vars = self.env_map();
        vars.insert("RUST_LOG".into(), "warn".into());
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ChildProcess::spawn_command(&path.display().to_string(), &[], &pairs)
    }

    /// `POST /v1/jobs` and the created job.
    pub async fn submit(&self, api: &Running, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/jobs", api.base_url))
            .json(&body)
            .send()
            .await
            .expect("POST /v1/jobs");
        let status = response.status();
        let job: Value = response.json().await.expect("job JSON");
        assert_eq!(status, 202, "POST /v1/jobs answered {status}: {job}");
        job
    }

    /// `POST /v1/jobs` and the created job's id.
    pub async fn submit_id(&self, api: &Running, body: Value) -> String {
        let job = self.submit(api, body).await;
        job["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {job}"))
            .to_string()
    }

    /// `GET {path}` on the API, as JSON.
    pub async fn get_json(&self, api: &Running, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", api.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    pub async fn get_job(&self, api: &Running, id: &str) -> Value {
        self.get_json(api, &format!("/v1/jobs/{id}")).await
    }

    /// Submits `body` and waits (up to 30 s) until the job succeeds or fails.
    pub async fn run_job(&self, api: &Running, body: Value) -> Value {
        let id = self.submit_id(api, body).await;
        self.wait_for_status(api, &id, &["succeeded", "failed"], Duration::from_secs(30))
            .await
    }

    /// Starts the API and a worker, runs one job to its end, and stops them: for tests about
    /// what a single job does.
    pub async fn run_job_alone(&self, body: Value) -> Value {
        let api = self.start_api().await;
        let _worker = self.start_worker().await;
        self.run_job(&api, body).await
    }

    /// Polls `GET /v1/jobs/{id}` until the job's status is one of `statuses`.
    pub async fn wait_for_status(
        &self,
        api: &Running,
        id: &str,
        statuses: &[&str],
        timeout: Duration,
    ) -> Value {
        wait_until(timeout, &format!("job {id} is {statuses:?}"), || async {
            let job = self.get_job(api, id).await;
            statuses
                .contains(&job["status"].as_str().unwrap_or_default())
                .then_some(job)
        })
        .await
    }
}

/// An API or worker started in-process; stops (gracefully) when dropped or on `stop()`.
pub struct Running {
    pub base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Signals shutdown and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(anyhow::Error::from)?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A story body for `POST /v1/jobs`.
pub fn story(text: &str) -> Value {
    serde_json::json!({ "story": text })
}
