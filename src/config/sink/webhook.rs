//! `[[sinks]] type = "webhook"`: the finding JSON (or OCSF) POSTed to any
//! HTTP receiver, optionally signed.

use super::{Entry, PayloadFormat, SinkKind};
use crate::config::{ConfigError, invalid};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: Secret,
    pub hmac_secret: Option<Secret>,
    pub headers: Vec<(String, Secret)>,
    pub format: PayloadFormat,
}

pub(super) fn validate_webhook(e: &Entry, format: PayloadFormat) -> Result<SinkKind, ConfigError> {
    let (key, s) = (e.key, e.raw);
    let url = e.url()?;
    let mut headers = Vec::new();
    for (h, v) in s.headers.iter().flatten() {
        let hk = format!("{key}.headers.{h}");
        reqwest::header::HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| invalid(&hk, "not a valid HTTP header name"))?;
        reqwest::header::HeaderValue::from_str(v)
            .map_err(|_| invalid(&hk, "not a valid HTTP header value"))?;
        headers.push((h.clone(), Secret::new(v.clone())));
    }
    if s.bearer_token.is_some() {
        let token = e.required("bearer_token", &s.bearer_token)?;
        headers.push((
            "Authorization".into(),
            Secret::new(format!("Bearer {token}")),
        ));
    }
    let hmac_secret = match &s.hmac_secret {
        Some(_) => Some(Secret::new(e.required("hmac_secret", &s.hmac_secret)?)),
        None => None,
    };
    Ok(SinkKind::Webhook(WebhookSettings {
        url,
        hmac_secret,
        headers,
        format,
    }))
}
