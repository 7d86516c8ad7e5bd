//! `[[sinks]] type = "splunk_hec"`: Splunk HTTP Event Collector.

use super::{Entry, SinkKind, is_uuid, with_path};
use crate::config::{ConfigError, invalid};
use crate::secret::Secret;

pub(super) fn validate_splunk_hec(e: &Entry) -> Result<SinkKind, ConfigError> {
    let s = e.raw;
    let url = with_path(&e.url()?, crate::sink::format::splunk::EVENT_PATH);
    let token = e.required("token", &s.token)?;
    // HEC tokens are GUIDs; anything else would only be refused (403).
    if !is_uuid(&token) {
        return Err(invalid(
            format!("{}.token", e.key),
            "is not a Splunk HEC token (a GUID: 8-4-4-4-12 hex digits)",
        ));
    }
    let name = |field: &str, v: &Option<String>, default: &str| meta_name(e.key, field, v, default);
    let index = match &s.index {
        None => None,
        Some(_) => Some(name("index", &s.index, "")?),
    };
    Ok(SinkKind::SplunkHec {
        url,
        token: Secret::new(token),
        meta: crate::sink::format::splunk::Meta {
            sourcetype: name("sourcetype", &s.sourcetype, "rootwatch:finding")?,
            source: name("source", &s.source, "rootwatch")?,
            index,
        },
    })
}

/// `sourcetype`, `source` or `index` (`default` when unset). Splunk's
/// rules for these names: no spaces or control characters.
fn meta_name(
    key: &str,
    field: &str,
    v: &Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let v = v.clone().unwrap_or_else(|| default.to_owned());
    if v.is_empty() || v.len() > 256 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            format!("{key}.{field}"),
            format!("`{v}` must be 1 to 256 characters without spaces"),
        ));
    }
    Ok(v)
}
