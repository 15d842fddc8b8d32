//! A webhook receiver on a free local port: it records every request it gets and answers as its
//! script says (a status, or never). It checks signatures with its own HMAC code, written from
//! the Standard Webhooks specification, not StoryForge's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How the receiver answers its `n`th request (counting from 0).
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Never answers.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: Option<String>,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    /// Whether the signature is `v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}` with
    /// the secret's key (the decoded bytes of a `whsec_` secret).
    pub fn signed_with(&self, secret: &str) -> bool {
        let key = match secret.strip_prefix("whsec_") {
            Some(encoded) => BASE64.decode(encoded).expect("whsec_ secret is base64"),
            None => secret.as_bytes().to_vec(),
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(self.webhook_id.as_bytes());
        mac.update(b".");
        mac.update(self.timestamp.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
        self.signature
            .as_deref()
            .is_some_and(|header| header.split(' ').any(|sig| sig == expected))
    }
}

pub struct WebhookReceiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts a receiver answering request `n` with `script(n)`.
    pub async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let script = Arc::new(script);
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            let script = script.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Received {
                        webhook_id: header("webhook-id").unwrap_or_default(),
                        timestamp: header("webhook-timestamp").unwrap_or_default(),
                        signature: header("webhook-signature"),
                        body,
                    });
                    log.len() - 1
                };
                match script(n) {
                    Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        StatusCode::OK
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        WebhookReceiver {
            url,
            received,
            task,
        }
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
