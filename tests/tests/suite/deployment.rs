//! The deployment files cannot drift from the code: `docker-compose.yml`, the `Dockerfile` and
//! every manifest under `deploy/kubernetes/` are parsed and checked against what the binaries
//! really are — their names, the settings they read (names and values), the API's port and
//! health paths (asked of a running API), the metric the autoscaler reads, and a worker's
//! termination grace against its lease and shutdown grace. Docker and Kubernetes do not run here.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;
use storyforge_runtime::config::{Settings, parse_duration};
use storyforge_tests::app::{TestEnv, workspace_root};
use storyforge_tests::fake_llm::{FakeLlm, answer};
use storyforge_tests::process::binary_path;

const BINARIES: [&str; 3] = ["storyforge-api", "storyforge-worker", "storyforge"];

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn compose() -> Value {
    let mut value: Value = serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap();
    value.apply_merge().unwrap();
    value
}

/// Every document of every manifest under `deploy/kubernetes/`.
fn manifests() -> Vec<(String, Value)> {
    let dir = workspace_root().join("deploy/kubernetes");
    let mut documents = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            documents.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                value,
            ));
        }
    }
    documents
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// Checks a set of variables: each name is one the settings read, and together the values load.
fn check_variables(origin: &str, vars: &BTreeMap<String, String>) {
    let known = Settings::variables();
    for name in vars.keys().filter(|n| n.starts_with("STORYFORGE_")) {
        assert!(
            known.contains(name),
            "{origin}: {name} is not a setting StoryForge reads"
        );
    }
    let env: HashMap<String, String> = vars.clone().into_iter().collect();
    if let Err(e) = Settings::from_sources(None, env) {
        panic!("{origin}: the settings do not load: {e}");
    }
}

fn command_binary(origin: &str, command: &Value) -> String {
    let binary = text(&command[0]);
    assert!(
        BINARIES.contains(&binary.as_str()),
        "{origin} runs {binary:?}, which is not a StoryForge binary"
    );
    assert!(
        binary_path(&binary).is_file(),
        "{binary} is not built by the workspace"
    );
    binary
}

#[test]
fn the_compose_file_matches_the_code() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let mut ours = 0;
    for (name, service) in services {
        let name = text(name);
        if service["image"].as_str() != Some("storyforge:latest") {
            continue;
        }
        ours += 1;
        command_binary(&format!("service {name}"), &service["command"]);
        let vars: BTreeMap<String, String> = service["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("service {name} has no environment map"))
            .iter()
            .map(|(k, v)| (text(k), text(v)))
            .collect();
        check_variables(&format!("service {name}"), &vars);
        if let Some(addr) = vars.get("STORYFORGE_API_ADDR") {
            let port = addr.rsplit(':').next().unwrap();
            let published = text(&service["ports"][0]);
            assert!(
                published.ends_with(&format!(":{port}")),
                "{name} publishes {published}, listens on {addr}"
            );
            let check = service["healthcheck"]["test"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                check.contains(&format!(":{port}/ready")),
                "{name}'s health check {check:?} is not /ready on {port}"
            );
        }
    }
    assert_eq!(ours, 2, "the API and the worker services");
    assert_eq!(
        text(&compose["services"]["redis"]["command"][2]),
        "yes",
        "Redis keeps its append-only file"
    );
    let worker_grace =
        parse_duration(&text(&compose["services"]["worker"]["stop_grace_period"])).unwrap();
    let shutdown = parse_duration(&text(
        &compose["x-storyforge-env"]["STORYFORGE_SHUTDOWN_GRACE"],
    ))
    .unwrap();
    assert!(
        worker_grace > shutdown,
        "docker stops workers before their shutdown grace ends"
    );
}

#[test]
fn the_dockerfile_builds_every_binary_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    for binary in BINARIES {
        assert!(
            dockerfile.contains(&format!("--bin {binary} "))
                || dockerfile.contains(&format!("--bin {binary}\n")),
            "the image does not build {binary}"
        );
        assert!(
            dockerfile.contains(&format!("/release/{binary} "))
                || dockerfile.contains(&format!("/release/{binary}\n")),
            "the image does not ship {binary}"
        );
    }
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "the runtime image must not run as root"
    );
    assert!(
        dockerfile.matches("FROM ").count() >= 2,
        "a multi-stage build"
    );
}

#[test]
fn the_kubernetes_manifests_match_the_code() {
    let documents = manifests();
    let kinds: Vec<(String, String)> = documents
        .iter()
        .map(|(_, d)| (text(&d["apiVersion"]), text(&d["kind"])))
        .collect();
    for expected in [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("policy/v1", "PodDisruptionBudget"),
        ("keda.sh/v1alpha1", "ScaledObject"),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_string(), expected.1.to_string())),
            "no {expected:?} among {kinds:?}"
        );
    }
    let find = |kind: &str, name: &str| {
        documents
            .iter()
            .map(|(_, d)| d)
            .find(|d| text(&d["kind"]) == kind && text(&d["metadata"]["name"]) == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let config = find("ConfigMap", "storyforge");
    let secret = find("Secret", "storyforge");
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for source in [&config["data"], &secret["stringData"]] {
        for (k, v) in source.as_mapping().unwrap() {
            vars.insert(text(k), text(v));
        }
    }
    check_variables("ConfigMap and Secret", &vars);

    for (name, binary) in [
        ("storyforge-api", "storyforge-api"),
        ("storyforge-worker", "storyforge-worker"),
    ] {
        let deployment = find("Deployment", name);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(command_binary(name, &container["command"]), binary);
        let refs: Vec<String> = container["envFrom"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|r| {
                let name = if r["configMapRef"].is_mapping() {
                    &r["configMapRef"]["name"]
                } else {
                    &r["secretRef"]["name"]
                };
                name.as_str().map(str::to_string)
            })
            .collect();
        assert_eq!(
            refs,
            ["storyforge", "storyforge"],
            "{name} reads the ConfigMap and the Secret"
        );
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"],
            Value::Bool(true),
            "{name} runs as non-root"
        );
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        assert_eq!(
            selector, &deployment["spec"]["template"]["metadata"]["labels"],
            "{name}'s selector matches its pods"
        );
    }

    let api = find("Deployment", "storyforge-api");
    let container = &api["spec"]["template"]["spec"]["containers"][0];
    let addr = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| text(&e["name"]) == "STORYFORGE_API_ADDR")
        .map(|e| text(&e["value"]))
        .unwrap();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        container["ports"][0]["containerPort"].as_u64(),
        Some(port as u64)
    );
    assert_eq!(
        text(&container["readinessProbe"]["httpGet"]["path"]),
        "/ready"
    );
    assert_eq!(
        text(&container["livenessProbe"]["httpGet"]["path"]),
        "/health"
    );

    let worker = find("Deployment", "storyforge-worker");
    let grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    let lease = parse_duration(&vars["STORYFORGE_LEASE_TTL"]).unwrap();
    let shutdown = parse_duration(&vars["STORYFORGE_SHUTDOWN_GRACE"]).unwrap();
    assert!(
        Duration::from_secs(grace) > lease + shutdown,
        "the worker's termination grace ({grace} s) must cover a lease ({lease:?}) and the shutdown grace ({shutdown:?})"
    );

    let scaled = find("ScaledObject", "storyforge-worker");
    assert_eq!(
        text(&scaled["spec"]["scaleTargetRef"]["name"]),
        "storyforge-worker"
    );
    let query = text(&scaled["spec"]["triggers"][0]["metadata"]["query"]);
    assert!(query.contains("storyforge_queue_depth"), "{query}");
}

/// The paths and the metric the deployment files rely on, asked of a running API.
#[tokio::test(flavor = "multi_thread")]
async fn the_health_paths_and_the_scaling_metric_exist() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let api = env.start_api().await;
    for path in ["/health", "/ready"] {
        let response = env
            .http
            .get(format!("{}{path}", api.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = env
        .http
        .get(format!("{}/metrics", api.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("storyforge_queue_depth ")),
        "{metrics}"
    );
}

/// `.env.example`'s `NAME=value` lines, those commented out (`# NAME=value`) included when
/// `commented`.
fn env_example(commented: bool) -> BTreeMap<String, String> {
    read(".env.example")
        .lines()
        .filter_map(|line| match line.strip_prefix("# ") {
            Some(rest) if commented => Some(rest),
            Some(_) => None,
            None => Some(line),
        })
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[test]
fn the_env_example_names_real_settings_and_keeps_the_zero_install_path() {
    let every = env_example(true);
    assert!(every.len() > 10, "{every:?}");
    let unknown = storyforge_runtime::config::unknown_variables(every.keys());
    assert!(unknown.is_empty(), ".env.example: {unknown:?}");
    let loads = every.clone().into_iter().collect();
    if let Err(e) = Settings::from_sources(None, loads) {
        panic!(".env.example with every line uncommented does not load: {e}");
    }
    // As shipped it moves `up` neither off the embedded store nor off the designer's fallback.
    let set = Settings::from_sources(None, env_example(false).into_iter().collect()).unwrap();
    assert!(
        !set.redis_configured && !set.llm_configured,
        "{:?}",
        env_example(false)
    );
}

/// The variable names the README's tables document: `STORYFORGE_X`, and the short forms of a
/// row that names a family (`STORYFORGE_JUDGE_PROVIDER`, `_BASE_URL` → `STORYFORGE_JUDGE_BASE_URL`).
fn documented_variables() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in read("README.md").lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line.split(" | ").next().unwrap_or_default();
        let mut family = None;
        for token in first_cell.split('`').skip(1).step_by(2) {
            let token = token.split('=').next().unwrap_or_default();
            if let Some(short) = token.strip_prefix('_') {
                if let Some(prefix) = &family {
                    names.insert(format!("{prefix}_{short}"));
                }
            } else if token.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                family = token.rsplit_once('_').map(|(prefix, _)| prefix.to_string());
                names.insert(token.to_string());
            }
        }
    }
    names
}

#[test]
fn the_readme_documents_every_setting_and_no_other() {
    let documented = documented_variables();
    let read_by_code = Settings::variables();
    let undocumented: Vec<&String> = read_by_code
        .iter()
        .filter(|n| !documented.contains(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in the README's settings: {undocumented:?}"
    );
    let unknown = storyforge_runtime::config::unknown_variables(documented.iter());
    assert!(
        unknown.is_empty(),
        "the README names settings nothing reads: {unknown:?}"
    );
}
