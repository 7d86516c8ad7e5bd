//! HTTP sinks: one POST per finding, with the body and headers of the
//! receiver's format. Failures are classified by retry.rs.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::format::{opsgenie, pagerduty, slack, teams, webhook};
use super::retry::classify_status;
use super::{BoxFuture, SendError, Sink};
use crate::config::WebhookSettings;
use crate::finding::Finding;
use crate::secret::{Secret, Secrets};

/// The receiver's request format.
pub enum Format {
    Webhook {
        hmac_secret: Option<Secret>,
        payload: super::format::PayloadFormat,
    },
    Slack,
    PagerDuty {
        routing_key: Secret,
    },
    Teams,
    /// `Authorization: GenieKey <api_key>`.
    Opsgenie {
        api_key: Secret,
    },
    /// Alertmanager API v2; alerts end `resolve_after` after they are sent.
    Alertmanager {
        resolve_after: Duration,
    },
    /// Splunk HTTP Event Collector: `Authorization: Splunk <token>`.
    SplunkHec {
        token: Secret,
        meta: super::format::splunk::Meta,
    },
}

pub struct HttpSink {
    client: reqwest::Client,
    /// Removed from error text.
    secrets: Secrets,
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
    /// A Slack, PagerDuty, Teams or Opsgenie sink: JSON body, and the
    /// Opsgenie key in its header.
    pub fn new(
        client: reqwest::Client,
        url: Secret,
        secrets: Secrets,
        format: Format,
        timeout: Duration,
    ) -> Self {
        let mut headers = json_headers();
        match &format {
            Format::SplunkHec { token, .. } => {
                // Checked with the config: a header-safe token.
                if let Ok(mut v) = HeaderValue::from_str(&format!("Splunk {}", token.expose())) {
                    v.set_sensitive(true);
                    headers.insert(AUTHORIZATION, v);
                }
            }
            Format::Opsgenie { api_key } => {
                // The key was checked to be a UUID with the config, so it is
                // a valid header value.
                if let Ok(mut v) = HeaderValue::from_str(&format!("GenieKey {}", api_key.expose()))
                {
                    v.set_sensitive(true);
                    headers.insert(AUTHORIZATION, v);
                }
            }
            _ => {}
        }
        HttpSink {
            client,
            secrets,
            url,
            headers,
            timeout,
            format,
        }
    }

    pub fn webhook(
        client: reqwest::Client,
        s: &WebhookSettings,
        secrets: Secrets,
        timeout: Duration,
    ) -> Self {
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
            secrets,
            url: s.url.clone(),
            headers,
            timeout,
            format: Format::Webhook {
                hmac_secret: s.hmac_secret.clone(),
                payload: s.format,
            },
        }
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    fn body(&self, f: &Finding) -> Vec<u8> {
        let value = match &self.format {
            Format::Webhook { payload, .. } => {
                return payload.body(f, chrono::Utc::now().timestamp_millis());
            }
            Format::Slack => slack::body(f),
            Format::PagerDuty { routing_key } => pagerduty::body(f, routing_key.expose()),
            Format::Teams => teams::body(f),
            Format::Opsgenie { .. } => opsgenie::body(f),
            Format::Alertmanager { resolve_after } => {
                super::format::alertmanager::body(f, *resolve_after, chrono::Utc::now())
            }
            Format::SplunkHec { meta, .. } => super::format::splunk::body(
                f,
                meta,
                chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
            ),
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
                ..
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
                    error: self.scrub(&with_causes(e.without_url())),
                    retry_after: None,
                    status: None,
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
            let text = self.scrub(&error_body(resp).await);
            match classify_status(status, retry_after.as_deref(), &text) {
                None => Ok(()),
                Some(e) => Err(e),
            }
        })
    }
}

/// `error` and its chain of causes, `: `-joined, each cause once: reqwest
/// says only "error sending request"; whether the connection was refused,
/// timed out or failed TLS is in the causes, and is what an operator needs.
fn with_causes(error: reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// Most bytes of an error body read: enough for a receiver's message, not
/// a way for a receiver to make rootwatch hold a large page.
pub const MAX_ERROR_BODY: usize = 4096;

/// The start of an error response's body, read chunk by chunk and no
/// further than [`MAX_ERROR_BODY`].
async fn error_body(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ERROR_BODY - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
