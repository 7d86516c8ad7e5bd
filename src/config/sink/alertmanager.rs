//! `[[sinks]] type = "alertmanager"`: Prometheus Alertmanager API v2.

use super::{Entry, SinkKind, with_path};
use crate::config::{ConfigError, secs};

/// Where an `alertmanager` sink posts, below the Alertmanager's address.
pub const ALERTMANAGER_PATH: &str = "/api/v2/alerts";

pub(super) fn validate_alertmanager(e: &Entry) -> Result<SinkKind, ConfigError> {
    // The Alertmanager's address, or the API path itself.
    let url = with_path(&e.url()?, ALERTMANAGER_PATH);
    let resolve_after = secs(
        &format!("{}.resolve_after_secs", e.key),
        e.raw.resolve_after_secs.unwrap_or(3600),
        60,
        7 * 86_400,
    )?;
    Ok(SinkKind::Alertmanager { url, resolve_after })
}
