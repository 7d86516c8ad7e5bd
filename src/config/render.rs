//! `rootwatch check-config`: the configuration as rootwatch reads it.

use super::{RawConfig, RawSource};
use crate::secret::REDACTED;

/// The effective configuration as TOML, defaults filled in and secrets
/// replaced, for `check-config`.
pub fn render_effective(raw: &RawConfig) -> String {
    let mut raw = raw.clone();
    let redact = |s: &mut String| {
        if !s.is_empty() {
            *s = REDACTED.into();
        }
    };
    for a in &mut raw.audit.accounts {
        a.external_id.iter_mut().for_each(redact);
    }
    for src in &mut raw.sources {
        if let RawSource::Sqs { external_id, .. } | RawSource::CloudwatchLogs { external_id, .. } =
            src
        {
            external_id.iter_mut().for_each(redact);
        }
    }
    // The defaults rootwatch fills in, shown.
    for src in &mut raw.sources {
        let default = src.default_name();
        match src {
            RawSource::Sqs { name, .. }
            | RawSource::File { name, .. }
            | RawSource::CloudwatchLogs { name, .. } => {
                name.get_or_insert(default);
            }
        }
        if let RawSource::Sqs {
            region, queue_url, ..
        } = src
            && region.is_none()
        {
            *region = crate::aws::region_from_queue_url(queue_url);
        }
    }
    for sink in &mut raw.sinks {
        let default = sink.default_name();
        sink.name.get_or_insert(default);
        sink.min_severity.get_or_insert_with(|| "info".to_owned());
    }
    for sink in &mut raw.sinks {
        sink.url
            .iter_mut()
            .for_each(|u| *u = crate::secret::redact_url(u));
        sink.hmac_secret.iter_mut().for_each(redact);
        sink.routing_key.iter_mut().for_each(redact);
        sink.api_key.iter_mut().for_each(redact);
        sink.external_id.iter_mut().for_each(redact);
        sink.bearer_token.iter_mut().for_each(redact);
        sink.headers
            .iter_mut()
            .flat_map(|h| h.values_mut())
            .for_each(redact);
    }
    toml::to_string_pretty(&raw).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}
