//! The HTTP client the `submit`, `status` and `results` commands share: where the API is, the
//! optional API key, and errors a person can act on — the URL of an API that does not answer,
//! or the problem the API named, with the file, row and column of a malformed backlog.

use std::time::Duration;

use anyhow::{anyhow, bail};
use serde_json::Value;

/// Where the API is when neither `--api` nor `STORYFORGE_API_URL` says.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";

pub struct Api {
    base: String,
    http: reqwest::Client,
    key: Option<String>,
}

/// What a request returned.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| anyhow!("the API answered something that is not JSON: {e}"))
    }
}

impl Api {
    /// `url` from `--api`, else `STORYFORGE_API_URL`, else the default; `STORYFORGE_API_KEY`
    /// is sent as a bearer token when set.
    pub fn new(url: Option<String>) -> anyhow::Result<Api> {
        let base = url
            .or_else(|| std::env::var("STORYFORGE_API_URL").ok())
            .unwrap_or_else(|| DEFAULT_API.to_string());
        let base = base.trim_end_matches('/').to_string();
        if !base.contains("://") {
            bail!("--api {base} has no scheme: add http:// (--api http://{base})");
        }
        reqwest::Url::parse(&base).map_err(|e| anyhow!("--api {base} is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Api {
            base,
            http,
            key: std::env::var("STORYFORGE_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let request = match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            let reason = if e.is_timeout() {
                "it did not answer in time".to_string()
            } else if e.is_connect() {
                "nothing answers there (is `storyforge up` or storyforge-api running?)".to_string()
            } else {
                e.to_string()
            };
            anyhow!("cannot reach the StoryForge API at {}: {reason}", self.base)
        })?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response
            .bytes()
            .await
            .map_err(|e| anyhow!("reading the API's answer from {}: {e}", self.base))?
            .to_vec();
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(request).await
    }

    /// POSTs a `multipart/form-data` body.
    pub async fn post_form(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> anyhow::Result<Answer> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .multipart(form);
        self.send(request).await
    }
}

/// The API's problem as one sentence; `source` (a file name) prefixes each field at fault, and
/// `/rows/18/story` reads as `row 18, column story`.
pub fn problem(answer: &Answer, source: Option<&str>) -> anyhow::Error {
    let Ok(problem) = serde_json::from_slice::<Value>(&answer.body) else {
        return anyhow!(
            "the API answered {} without a problem document",
            answer.status
        );
    };
    let detail = problem["detail"].as_str().unwrap_or("no detail given");
    let errors: Vec<String> = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let place = place(
                        e["pointer"].as_str().unwrap_or_default(),
                        e["story_id"].as_str(),
                    );
                    let detail = e["detail"].as_str().unwrap_or_default();
                    match (source, place.is_empty()) {
                        (Some(file), false) => format!("{file}: {place}: {detail}"),
                        (Some(file), true) => format!("{file}: {detail}"),
                        (None, false) => format!("{place}: {detail}"),
                        (None, true) => detail.to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if errors.is_empty() {
        anyhow!("{} ({})", detail, answer.status)
    } else {
        anyhow!("{}", errors.join("; "))
    }
}

/// A JSON pointer as a person says it, with the story's key when it has one: `/rows/18/Summary`
/// → `row 18 (SHOP-3), column Summary`, `/stories/3/acceptance_criteria/1` → `story 3,
/// acceptance_criteria 1`.
fn place(pointer: &str, story_id: Option<&str>) -> String {
    let parts: Vec<String> = pointer
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let key = story_id.map(|k| format!(" ({k})")).unwrap_or_default();
    match parts.as_slice() {
        [rows, row] if rows == "rows" => format!("row {row}{key}"),
        [rows, row, column, ..] if rows == "rows" => format!("row {row}{key}, column {column}"),
        [stories, index, rest @ ..] if stories == "stories" && !rest.is_empty() => {
            format!("story {index}{key}, {}", rest.join(" "))
        }
        _ => parts.join(" "),
    }
}

/// Fails with the API's problem unless the answer is `2xx`.
pub fn ok(answer: Answer, source: Option<&str>) -> anyhow::Result<Answer> {
    if (200..300).contains(&answer.status) {
        Ok(answer)
    } else {
        Err(problem(&answer, source))
    }
}

/// Whether an id is a job's or a batch's: asks for the job first.
pub async fn find(api: &Api, id: &str) -> anyhow::Result<(&'static str, Value)> {
    if uuid_like(id).is_none() {
        bail!("{id:?} is not a job or batch id (a UUID)");
    }
    let job = api.get(&format!("/v1/jobs/{id}")).await?;
    if job.status == 200 {
        return Ok(("job", job.json()?));
    }
    let batch = api.get(&format!("/v1/batches/{id}")).await?;
    if batch.status == 200 {
        return Ok(("batch", batch.json()?));
    }
    bail!("there is no job or batch {id} at {}", api.base())
}

fn uuid_like(id: &str) -> Option<()> {
    (id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(())
}
