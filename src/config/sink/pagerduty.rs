//! `[[sinks]] type = "pagerduty"`: PagerDuty Events API v2.

use super::{Entry, SinkKind};
use crate::config::{ConfigError, invalid};
use crate::secret::Secret;

/// PagerDuty's Events API v2 endpoint, used when a `pagerduty` sink sets no
/// `url`. The default lives with the validation that applies it, so the
/// config never reaches into a sink for a value.
pub const PAGERDUTY_DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

pub(super) fn validate_pagerduty(e: &Entry) -> Result<SinkKind, ConfigError> {
    let s = e.raw;
    let url = match &s.url {
        None => PAGERDUTY_DEFAULT_URL.to_owned(),
        Some(_) => e.url()?.expose().to_owned(),
    };
    let routing_key = e.required("routing_key", &s.routing_key)?;
    // Events API v2 integration keys are 32 characters.
    if routing_key.len() != 32 || !routing_key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            format!("{}.routing_key", e.key),
            "is not a PagerDuty Events API v2 integration key (32 letters and digits)",
        ));
    }
    Ok(SinkKind::PagerDuty {
        url,
        routing_key: Secret::new(routing_key),
    })
}
