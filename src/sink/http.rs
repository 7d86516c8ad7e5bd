//! HTTP sinks: one POST per finding, with the body and headers of the
//! receiver's format. Failures are classified by retry.rs.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::format::webhook;
use super::retry::classify_status;
use super::{BoxFuture, SendError, Sink};
use crate::config::{Secret, WebhookSettings};
use crate::finding::Finding;

pub struct HttpSink {
    client: reqwest::Client,
    url: Secret,
    headers: HeaderMap,
    timeout: Duration,
    hmac_secret: Option<Secret>,
}

impl HttpSink {
    pub fn webhook(client: reqwest::Client, s: &WebhookSettings, timeout: Duration) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
            hmac_secret: s.hmac_secret.clone(),
        }
    }
}

impl Sink for HttpSink {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = webhook::body(finding);
            let mut req = self
                .client
                .post(self.url.expose())
                .timeout(self.timeout)
                .headers(self.headers.clone())
                .header(webhook::FINDING_ID_HEADER, &finding.finding_id);
            if let Some(secret) = &self.hmac_secret {
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
