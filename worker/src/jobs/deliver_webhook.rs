//! Webhook delivery: one event POSTed to its receiver, signed as Standard Webhooks says, and the
//! attempt recorded.
//!
//! Any `2xx` is delivered. Anything else — another status, no answer within 10 s, a refused
//! connection, a host that resolves only to forbidden addresses — is retried after the runner's
//! backoff from `STORYFORGE_WEBHOOK_RETRY_BASE`, at most an hour apart, until the event is
//! `STORYFORGE_WEBHOOK_MAX_AGE` old; then it is dead. The `webhook-id` is the event's id on every
//! attempt; `webhook-timestamp` and the signature are the attempt's.

use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::Url;
use storyforge_runtime::config::Settings;
use storyforge_store::{AttemptReport, Delivery, DeliveryNext, Lease, LeaseState, StoreError};

use super::{Attempt, BackgroundJob, Decision, Outcome};
use crate::context::Context;

pub struct DeliverWebhook {
    pub delivery: Delivery,
}

#[async_trait]
impl BackgroundJob for DeliverWebhook {
    const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
    /// The receiver's `2xx` status.
    type Done = u16;
    /// The receiver's status, if it answered, and what went wrong.
    type Error = AttemptReport;

    fn retry_base(settings: &Settings) -> Duration {
        settings.webhook_retry_base
    }

    async fn perform(&self, attempt: &Attempt<'_>) -> Outcome<u16, AttemptReport> {
        let (ctx, delivery) = (attempt.ctx, &self.delivery);
        let (Some(target), Some(data)) = (&delivery.target, &delivery.data) else {
            return Outcome::GiveUp(failed(
                None,
                format!("{} no longer exists", delivery.subject),
            ));
        };
        let url = match Url::parse(&target.url) {
            Ok(url) => url,
            Err(e) => {
                return Outcome::GiveUp(failed(None, format!("the webhook URL is not a URL: {e}")));
            }
        };
        if !ctx.settings.webhook_allow_private
            && let Some(reason) = storyforge_webhook::literal_refusal(&url)
        {
            return Outcome::GiveUp(failed(None, format!("not sent: the webhook URL {reason}")));
        }
        let body = serde_json::json!({
            "type": delivery.event_type,
            "timestamp": delivery.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string();
        let timestamp = Utc::now().timestamp();
        let mut request = ctx
            .webhooks
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(secret) = &target.secret {
            let signature = storyforge_webhook::signature(
                secret,
                &delivery.event_id,
                timestamp,
                body.as_bytes(),
            );
            request = request.header("webhook-signature", signature);
        }
        let error = match request.body(body).send().await {
            Ok(response) if response.status().is_success() => {
                return Outcome::Done(response.status().as_u16());
            }
            Ok(response) => failed(
                Some(response.status().as_u16()),
                format!("the receiver answered {}", response.status()),
            ),
            Err(e) => failed(None, describe(&e)),
        };
        Outcome::Retry {
            error,
            not_before: None,
        }
    }

    async fn commit(
        &self,
        ctx: &Context,
        lease: &Lease,
        decision: Decision<u16, AttemptReport>,
    ) -> Result<LeaseState, StoreError> {
        let (report, next) = match decision {
            Decision::Done(status) => (
                AttemptReport {
                    status_code: Some(status),
                    error: None,
                },
                DeliveryNext::Delivered,
            ),
            Decision::RetryAfter { delay, error } => {
                let give_up_at = self.delivery.retry_from + ctx.settings.webhook_max_age;
                let next = if Utc::now() + delay > give_up_at {
                    DeliveryNext::Dead
                } else {
                    DeliveryNext::RetryAfter(delay)
                };
                (error, next)
            }
            Decision::GiveUp(error) => (error, DeliveryNext::Dead),
        };
        match next {
            DeliveryNext::Delivered => tracing::info!(
                event.id = %self.delivery.event_id,
                status = report.status_code,
                "webhook delivered"
            ),
            _ => tracing::warn!(
                event.id = %self.delivery.event_id,
                status = report.status_code,
                error = report.error.as_deref().unwrap_or(""),
                next = %next,
                "webhook not delivered"
            ),
        }
        let state = ctx.store.record_delivery(lease, &report, next).await?;
        if state == LeaseState::Held {
            ctx.metrics.webhook_delivery(next.outcome());
        }
        Ok(state)
    }
}

/// A failed attempt's report.
fn failed(status_code: Option<u16>, error: String) -> AttemptReport {
    AttemptReport {
        status_code,
        error: Some(error),
    }
}

/// One sentence for a failed request: a timeout, or the innermost causes.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!(
            "the receiver did not answer within {} s",
            storyforge_webhook::DELIVERY_TIMEOUT.as_secs()
        );
    }
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    match causes.last() {
        Some(cause) => format!("could not reach the receiver: {cause}"),
        None => format!("could not reach the receiver: {e}"),
    }
}
