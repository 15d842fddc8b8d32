//! A real MLflow tracking server for tests: `mlflow server` from the virtualenv `.ci/run`
//! installs (`target/mlflow-venv`, or `STORYFORGE_TEST_MLFLOW` naming the `mlflow` executable),
//! on a free port, with a SQLite backend store and proxied artifacts in a temporary directory.
//!
//! The server runs in a process group of its own and is killed as a group (its workers too) on
//! [`MlflowServer::stop`], on drop, and by a watchdog if the test process dies. Tests share one
//! server per test binary through [`MlflowServer::shared`] and keep apart by experiment name;
//! a test that stops MLflow starts its own.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::app::workspace_root;
use crate::process::{Watchdog, free_port};

/// The version `.ci/run` installs; the notes on MLflow were checked against it.
pub const MLFLOW_VERSION: &str = "3.17.2";
/// MLflow takes 10–20 s to answer on two cores.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct MlflowServer {
    port: u16,
    /// The backend store and artifacts, kept across restarts.
    dir: TempDir,
    running: Option<(Child, Watchdog)>,
}

impl MlflowServer {
    /// The server shared by every test of this test binary, started on first use.
    pub fn shared() -> &'static MlflowServer {
        static SHARED: OnceLock<MlflowServer> = OnceLock::new();
        SHARED.get_or_init(MlflowServer::start)
    }

    /// A server of the caller's own; killed when dropped. Blocks until it answers `/health`.
    pub fn start() -> MlflowServer {
        let dir = tempfile::Builder::new()
            .prefix("sf-mlflow-")
            .tempdir()
            .expect("a directory for MLflow");
        let mut server = MlflowServer {
            port: free_port(),
            dir,
            running: None,
        };
        server.launch();
        server
    }

    /// `http://127.0.0.1:<port>`, for `MLFLOW_TRACKING_URI`.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server and its workers; the data stays for [`MlflowServer::restart`].
    pub fn stop(&mut self) {
        if let Some((mut child, mut watchdog)) = self.running.take() {
            watchdog.fire();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn launch(&mut self) {
        let dir = self.dir.path();
        let log = std::fs::File::create(dir.join("server.log")).expect("MLflow's log file");
        let mut child = Command::new(executable())
            .args(["server", "--backend-store-uri"])
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--workers", "1"])
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("MLflow's log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mlflow server: {e}"));
        let watchdog = Watchdog::kill_group_on_exit(child.id());
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.healthy() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mlflow server exited ({status}): {}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer within {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        self.running = Some((child, watchdog));
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut reply = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut reply).is_ok()
            && (reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"))
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// MLflow's REST API, read directly (not through StoryForge's client), for assertions.
pub struct MlflowApi {
    uri: String,
    http: reqwest::Client,
}

impl MlflowApi {
    pub fn new(uri: &str) -> MlflowApi {
        MlflowApi {
            uri: uri.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/api/2.0/mlflow/{path}", self.uri))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/2.0/{path}", self.uri))
            .send()
            .await
            .unwrap()
    }

    /// Creates the experiment `name`; returns its id.
    pub async fn create_experiment(&self, name: &str) -> String {
        let created = self
            .post("experiments/create", json!({ "name": name }))
            .await;
        created["experiment_id"].as_str().unwrap().to_string()
    }

    /// The trace `tr-<trace_id>` with its spans, once MLflow has it.
    pub async fn trace(&self, trace_id: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/api/3.0/mlflow/traces/get", self.uri))
            .query(&[("trace_id", format!("tr-{trace_id}"))])
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// The ids of the traces linked to a run.
    pub async fn traces_of_run(&self, experiment_id: &str, run_id: &str) -> Vec<String> {
        let response = self
            .http
            .post(format!("{}/api/3.0/mlflow/traces/search", self.uri))
            .json(&json!({
                "locations": [{"type": "MLFLOW_EXPERIMENT",
                               "mlflow_experiment": {"experiment_id": experiment_id}}],
                "filter": format!("attributes.run_id = '{run_id}'"),
            }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "trace search: {}",
            response.status()
        );
        let found: Value = response.json().await.unwrap();
        found["traces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["trace_id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Every live run of the experiment named `experiment`.
    pub async fn runs(&self, experiment: &str) -> Vec<Value> {
        let found: Value = self
            .get(&format!(
                "mlflow/experiments/get-by-name?experiment_name={experiment}"
            ))
            .await
            .json()
            .await
            .unwrap();
        let id = found["experiment"]["experiment_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no experiment {experiment}: {found}"))
            .to_string();
        let reply = self
            .post(
                "runs/search",
                json!({"experiment_ids": [id], "max_results": 1000}),
            )
            .await;
        reply["runs"].as_array().cloned().unwrap_or_default()
    }

    /// A run's artifact, downloaded through the server's proxy.
    pub async fn artifact(&self, run: &Value, path: &str) -> String {
        let location = run["info"]["artifact_uri"]
            .as_str()
            .unwrap()
            .strip_prefix("mlflow-artifacts:/")
            .unwrap()
            .to_string();
        let response = self
            .get(&format!("mlflow-artifacts/artifacts/{location}/{path}"))
            .await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.text().await.unwrap()
    }

    /// The names of a run's top-level artifacts.
    pub async fn artifact_names(&self, run: &Value) -> BTreeSet<String> {
        let id = run["info"]["run_id"].as_str().unwrap();
        let listed: Value = self
            .get(&format!("mlflow/artifacts/list?run_id={id}"))
            .await
            .json()
            .await
            .unwrap();
        listed["files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A run's `data.<field>` (params, metrics or tags) as a map.
pub fn pairs(run: &Value, field: &str) -> HashMap<String, Value> {
    run["data"][field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["key"].as_str().unwrap().to_string(), p["value"].clone()))
        .collect()
}

/// A run's tag `key`, if set.
pub fn tag(run: &Value, key: &str) -> Option<String> {
    pairs(run, "tags")
        .get(key)
        .and_then(|v| v.as_str().map(str::to_string))
}

/// The `mlflow` executable: `STORYFORGE_TEST_MLFLOW`, else the virtualenv `.ci/run` makes.
fn executable() -> PathBuf {
    if let Some(path) = std::env::var_os("STORYFORGE_TEST_MLFLOW") {
        return PathBuf::from(path);
    }
    let path = workspace_root().join("target/mlflow-venv/bin/mlflow");
    assert!(
        path.exists(),
        "MLflow is not installed for the tests: run `bash .ci/run` once, or \
         `python3 -m venv target/mlflow-venv && target/mlflow-venv/bin/pip install mlflow=={MLFLOW_VERSION}`"
    );
    path
}
