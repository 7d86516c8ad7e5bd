//! `[[sinks]] type = "eventbridge"`: Amazon EventBridge `PutEvents` to a
//! bus.

use super::{Entry, PayloadFormat, SinkKind, is_arn_of};
use crate::config::{ConfigError, invalid};

/// Amazon EventBridge `PutEvents` to a bus (a name or an ARN).
#[derive(Debug, Clone)]
pub struct EventBridgeSettings {
    pub event_bus: String,
    /// Region (default: the bus ARN's, else the process's) and role.
    pub aws: crate::aws::AwsSettings,
    pub format: PayloadFormat,
}

pub(super) fn validate_eventbridge(
    e: &Entry,
    format: PayloadFormat,
) -> Result<SinkKind, ConfigError> {
    let event_bus = e.required("event_bus", &e.raw.event_bus)?;
    let ok = if event_bus.starts_with("arn:") {
        is_arn_of(&event_bus, "events", |r| r.starts_with("event-bus/"))
    } else {
        event_bus.len() <= 256
            && event_bus
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
    };
    if !ok {
        return Err(invalid(
            format!("{}.event_bus", e.key),
            "is not an event bus name or ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)",
        ));
    }
    Ok(SinkKind::EventBridge(EventBridgeSettings {
        aws: e.aws("event_bus", &event_bus)?,
        event_bus,
        format,
    }))
}
