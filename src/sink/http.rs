//! HTTP sinks: one POST per finding, with the body and headers of the
//! receiver's format. Failures are classified by retry.rs.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::format::{pagerduty, slack, teams, webhook};
use super::retry::classify_status;
use super::{BoxFuture, SendError, Sink};
use crate::config::{Secret, WebhookSettings};
use crate::finding::Finding;

/// The receiver's request format.
pub enum Format {
    Webhook { hmac_secret: Option<Secret> },
    Slack,
    PagerDuty { routing_key: Secret },
    Teams,
}

pub struct HttpSink {
    client: reqwest::Client,
    url: Secret,
    headers: HeaderMap,
    timeout: Duration,
    format: Format,
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}

impl HttpSink {
    /// A Slack, PagerDuty or Teams sink: JSON body, no extra headers.
    pub fn new(client: reqwest::Client, url: Secret, format: Format, timeout: Duration) -> Self {
        HttpSink {
            client,
            url,
            headers: json_headers(),
            timeout,
            format,
        }
    }

    pub fn webhook(client: reqwest::Client, s: &WebhookSettings, timeout: Duration) -> Self {
        let mut headers = json_headers();
        for (name, value) in &s.headers {
            // Both were validated with the config.
            if let (Ok(n), Ok(mut v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose()),
            ) {
                v.set_sensitive(true);
                headers.insert(n, v);
            }
        }
        HttpSink {
            client,
            url: s.url.clone(),
            headers,
            timeout,
            format: Format::Webhook {
                hmac_secret: s.hmac_secret.clone(),
            },
        }
    }

    fn body(&self, f: &Finding) -> Vec<u8> {
        let value = match &self.format {
            Format::Webhook { .. } => return webhook::body(f),
            Format::Slack => slack::body(f),
            Format::PagerDuty { routing_key } => pagerduty::body(f, routing_key.expose()),
            Format::Teams => teams::body(f),
        };
        serde_json::to_vec(&value).expect("a JSON value always serialises")
    }
}

impl Sink for HttpSink {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = self.body(finding);
            let mut req = self
                .client
                .post(self.url.expose())
                .timeout(self.timeout)
                .headers(self.headers.clone())
                .header(webhook::FINDING_ID_HEADER, &finding.finding_id);
            if let Format::Webhook {
                hmac_secret: Some(secret),
            } = &self.format
            {
                let ts = chrono::Utc::now().timestamp();
                req = req
                    .header(webhook::TIMESTAMP_HEADER, ts.to_string())
                    .header(
                        webhook::SIGNATURE_HEADER,
                        webhook::signature(secret.expose().as_bytes(), ts, &body),
                    );
            }
            let resp = req
                .body(body)
                .send()
                .await
                .map_err(|e| SendError::Retriable {
                    // The URL may carry a token: never let it into an error.
                    error: e.without_url().to_string(),
                    retry_after: None,
                })?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if (200..300).contains(&status) {
                return Ok(());
            }
            let text = resp.text().await.unwrap_or_default();
            match classify_status(status, retry_after.as_deref(), &text) {
                None => Ok(()),
                Some(e) => Err(e),
            }
        })
    }
}
