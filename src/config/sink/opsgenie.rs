//! `[[sinks]] type = "opsgenie"`: Opsgenie Alert API v2.

use super::{Entry, SinkKind, is_uuid};
use crate::config::{ConfigError, invalid};
use crate::secret::Secret;

/// Opsgenie's Alert API v2 endpoint (US instance), used when an `opsgenie`
/// sink sets no `url`; EU accounts set `https://api.eu.opsgenie.com/v2/alerts`.
pub const OPSGENIE_DEFAULT_URL: &str = "https://api.opsgenie.com/v2/alerts";

pub(super) fn validate_opsgenie(e: &Entry) -> Result<SinkKind, ConfigError> {
    let s = e.raw;
    let url = match &s.url {
        None => Secret::new(OPSGENIE_DEFAULT_URL),
        Some(_) => e.url()?,
    };
    let api_key = e.required("api_key", &s.api_key)?;
    // Opsgenie API integration keys are UUIDs; anything else would
    // only be refused (401) at the first alert.
    if !is_uuid(&api_key) {
        return Err(invalid(
            format!("{}.api_key", e.key),
            "is not an Opsgenie API integration key (a UUID: 8-4-4-4-12 hex digits)",
        ));
    }
    Ok(SinkKind::Opsgenie {
        url,
        api_key: Secret::new(api_key),
    })
}
