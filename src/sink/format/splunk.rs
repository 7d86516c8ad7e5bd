//! Splunk HTTP Event Collector, event endpoint
//! (`POST /services/collector/event`, `Authorization: Splunk <token>`): the
//! request shape Splunk documents ("Format events for HTTP Event
//! Collector"): `time` (epoch seconds, fractions allowed), `host`,
//! `source`, `sourcetype`, `index` (each optional) and `event`, here the
//! finding JSON. The event's own time is used when it parses, so searches
//! over `_time` find the alert at the time of the CloudTrail event.

use serde_json::{Value, json};

use crate::finding::Finding;

/// Where the sink posts, below the collector's address.
pub const EVENT_PATH: &str = "/services/collector/event";

/// The metadata fields of every event the sink sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub sourcetype: String,
    pub source: String,
    pub index: Option<String>,
}

/// The request body for one finding; `now_secs` when the event has no
/// time of its own.
pub fn body(f: &Finding, meta: &Meta, now_secs: f64) -> Value {
    let time = f
        .event_time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(now_secs, |t| t.timestamp_millis() as f64 / 1000.0);
    let mut v = json!({
        "time": time,
        "source": meta.source,
        "sourcetype": meta.sourcetype,
        "event": f,
    });
    if let Some(i) = &meta.index {
        v["index"] = Value::String(i.clone());
    }
    if let Some(a) = &f.account_id {
        // The account the event is about, as Splunk's host field.
        v["host"] = Value::String(a.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::*;

    #[test]
    fn the_documented_shape_with_the_event_time() {
        let f = enriched();
        let meta = Meta {
            sourcetype: "rootwatch:finding".into(),
            source: "rootwatch".into(),
            index: Some("security".into()),
        };
        let v = body(&f, &meta, 0.0);
        // 2024-05-14T09:12:40Z
        assert_eq!(v["time"], 1_715_677_960.0);
        assert_eq!(v["sourcetype"], "rootwatch:finding");
        assert_eq!(v["source"], "rootwatch");
        assert_eq!(v["index"], "security");
        assert_eq!(v["host"], "111122223333");
        assert_eq!(v["event"]["finding_id"], f.finding_id);
        assert_eq!(v["event"]["account_name"], "prod-payments");
        let no_time = body(
            &hostile(),
            &Meta {
                index: None,
                ..meta
            },
            1.5,
        );
        assert_eq!(no_time["time"], 1.5);
        assert!(no_time.get("index").is_none());
    }
}
