//! Sending one HTTP request to a provider and turning every way it can go wrong into an
//! [`LlmError`]: the status mapping, `Retry-After` parsing and `reqwest` error classification
//! that all three wire protocols share.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::LlmError;

/// Error bodies are kept for diagnosis, but a provider may echo a whole prompt back.
const MAX_ERROR_BODY_CHARS: usize = 1_000;

/// Sends `request`, and parses a `2xx` body as `T`. Everything, including reading the body,
/// must finish before `deadline`.
pub(crate) async fn send_json<T: DeserializeOwned>(
    request: RequestBuilder,
    deadline: Instant,
) -> Result<T, LlmError> {
    let body = send(request, deadline).await?;
    serde_json::from_slice(&body).map_err(|e| {
        LlmError::BadResponse(format!("{e}; the reply began with: {}", snippet(&body)))
    })
}

/// Sends `request` and returns the body of a `2xx` answer; any other status becomes the matching
/// [`LlmError`].
pub(crate) async fn send(request: RequestBuilder, deadline: Instant) -> Result<Vec<u8>, LlmError> {
    if Instant::now() >= deadline {
        return Err(LlmError::Timeout);
    }
    let exchange = async {
        let response = request.send().await.map_err(classify)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(classify)?;
        Ok::<_, LlmError>((status, headers, body))
    };
    let (status, headers, body) = tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| LlmError::Timeout)??;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        Err(status_error(status, &headers, &body))
    }
}

/// The error a non-success status stands for.
pub(crate) fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let code = status.as_u16();
    match code {
        401 | 403 => LlmError::Unauthorized { status: code },
        // A request timeout is the server giving up on a slow client, not a bad request.
        408 => LlmError::Timeout,
        429 => LlmError::RateLimited {
            retry_after: retry_after(headers),
        },
        400..=499 => LlmError::InvalidRequest {
            status: code,
            body: snippet(body),
        },
        // 529 is Anthropic's "overloaded"; every 5xx is worth another try later.
        _ => LlmError::Unavailable {
            status: code,
            retry_after: retry_after(headers),
            body: snippet(body),
        },
    }
}

/// Splits `reqwest` failures into "could not reach it" and "it took too long"; a body that breaks
/// off mid-way counts as unreachable, since trying again may well work.
fn classify(error: reqwest::Error) -> LlmError {
    if error.is_timeout() {
        return LlmError::Timeout;
    }
    if error.is_connect() {
        // "http://llm:8000/v1/models: Connection refused (os error 111)": the address and the
        // innermost cause, without the layers of "error sending request", "client error".
        let mut cause: &dyn std::error::Error = &error;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let url = error.url().map(|u| format!("{u}: ")).unwrap_or_default();
        return LlmError::Connect(format!("{url}{cause}"));
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_decode() {
        LlmError::BadResponse(text)
    } else {
        LlmError::Connect(text)
    }
}

/// The wait a provider asks for: `retry-after-ms` (Azure OpenAI), else `Retry-After` as seconds
/// or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(millis) = header("retry-after-ms").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_millis(millis));
    }
    parse_retry_after(header("retry-after")?, chrono::Utc::now())
}

fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    // A date in the past means "now".
    Some((at.to_utc() - now).to_std().unwrap_or(Duration::ZERO))
}

/// The start of a body as text, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(MAX_ERROR_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::extract::Path;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::routing::get;

    use super::*;
    use crate::fake_server::FakeServer;

    /// Answers `/status/{code}` with that status, a small JSON error body and, if the test sent
    /// an `x-reply-retry-after` header, a `Retry-After` with its value.
    async fn status_server() -> FakeServer {
        async fn answer(
            Path(code): Path<u16>,
            request_headers: HeaderMap,
        ) -> impl axum::response::IntoResponse {
            let mut headers = HeaderMap::new();
            if let Some(value) = request_headers.get("x-reply-retry-after") {
                headers.insert("retry-after", value.clone());
            }
            let status = StatusCode::from_u16(code).unwrap();
            (status, headers, r#"{"error":{"message":"nope"}}"#)
        }
        FakeServer::start(Router::new().route("/status/{code}", get(answer))).await
    }

    async fn fetch(server: &FakeServer, code: u16, retry_after: Option<&str>) -> LlmError {
        let http = reqwest::Client::new();
        let mut request = http.get(format!("{}/status/{code}", server.base_url));
        if let Some(value) = retry_after {
            request = request.header("x-reply-retry-after", value);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        send(request, deadline).await.unwrap_err()
    }

    #[tokio::test]
    async fn http_statuses_map_to_the_documented_errors() {
        let server = status_server().await;

        assert!(matches!(
            fetch(&server, 401, None).await,
            LlmError::Unauthorized { status: 401 }
        ));
        assert!(matches!(
            fetch(&server, 403, None).await,
            LlmError::Unauthorized { status: 403 }
        ));
        assert!(matches!(fetch(&server, 408, None).await, LlmError::Timeout));
        for code in [400, 404, 422] {
            match fetch(&server, code, None).await {
                LlmError::InvalidRequest { status, body } => {
                    assert_eq!(status, code);
                    assert!(body.contains("nope"), "{body}");
                }
                other => panic!("{code} mapped to {other:?}"),
            }
        }
        for code in [500, 502, 503, 504, 529] {
            let error = fetch(&server, code, None).await;
            assert!(
                matches!(error, LlmError::Unavailable { status, retry_after: None, .. } if status == code),
                "{code} mapped to {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn retry_after_is_read_from_429_and_503_answers() {
        let server = status_server().await;

        let limited = fetch(&server, 429, Some("7")).await;
        let unavailable = fetch(&server, 503, Some("3")).await;
        let limited_without_hint = fetch(&server, 429, None).await;

        assert!(
            matches!(limited, LlmError::RateLimited { .. }),
            "{limited:?}"
        );
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(unavailable.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(limited_without_hint.retry_after(), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .to_utc();

        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("10"));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));

        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
    }

    #[tokio::test]
    async fn a_server_that_answers_too_late_is_a_timeout() {
        let server = FakeServer::start(Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        ))
        .await;
        let request = reqwest::Client::new().get(format!("{}/slow", server.base_url));

        let error = send(request, Instant::now() + Duration::from_millis(200))
            .await
            .unwrap_err();

        assert!(matches!(error, LlmError::Timeout), "{error:?}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let request = reqwest::Client::new().get(format!("http://{address}/"));

        let error = send(request, Instant::now() + Duration::from_secs(10))
            .await
            .unwrap_err();

        assert!(matches!(error, LlmError::Connect(_)), "{error:?}");
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn an_unparseable_success_body_is_a_bad_response() {
        let server = FakeServer::start(
            Router::new().route("/garbage", get(|| async { "<html>oops</html>" })),
        )
        .await;
        let request = reqwest::Client::new().get(format!("{}/garbage", server.base_url));

        let error =
            send_json::<serde_json::Value>(request, Instant::now() + Duration::from_secs(10))
                .await
                .unwrap_err();

        assert!(
            matches!(&error, LlmError::BadResponse(text) if text.contains("<html>oops")),
            "{error:?}"
        );
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let body = "é".repeat(5_000);

        let cut = snippet(body.as_bytes());

        assert_eq!(cut.chars().count(), MAX_ERROR_BODY_CHARS + 1);
    }
}
