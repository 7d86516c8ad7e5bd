//! The EventBridge sink: one `PutEvents` entry per finding on a bus, with
//! `source = "rootwatch"` and `detail-type = "Rootwatch Finding"`, the
//! detail being the finding JSON (or its OCSF form). Rules on the bus route
//! it to AWS-native responders (Step Functions, Lambda, Security Hub
//! automations).
//!
//! PutEvents answers 200 even when the entry failed: a failed entry is a
//! failed delivery, retried unless its code says retrying cannot help.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::aws::{MAX_BYTES, now_ms, send_error, within};
use super::format::{PayloadFormat, fit};
use super::retry::classify_aws;
use super::{BoxFuture, SendError, Sink};
use crate::config::EventBridgeSettings;
use crate::finding::Finding;

pub const SOURCE: &str = "rootwatch";
pub const DETAIL_TYPE: &str = "Rootwatch Finding";

pub struct EventBridgeSink {
    client: super::aws::LazyClient<aws_sdk_eventbridge::Client>,
    event_bus: String,
    payload: PayloadFormat,
    timeout: Duration,
}

impl EventBridgeSink {
    pub fn new(
        aws: &aws_config::SdkConfig,
        s: &EventBridgeSettings,
        timeout: Duration,
    ) -> EventBridgeSink {
        EventBridgeSink {
            client: super::aws::LazyClient::new(aws, &s.aws, aws_sdk_eventbridge::Client::new),
            event_bus: s.event_bus.clone(),
            payload: s.format,
            timeout,
        }
    }
}

/// The entry's detail for `f`: at most what the 256 KiB entry limit leaves
/// after the source and detail-type (EventBridge counts those, the detail
/// and the resources, of which there are none).
pub fn detail(f: &Finding, payload: PayloadFormat, now_ms: i64) -> Result<String, SendError> {
    let room = MAX_BYTES - SOURCE.len() - DETAIL_TYPE.len();
    let body =
        fit::fit(f, room, |g| payload.body(g, now_ms)).map_err(|size| SendError::Permanent {
            error: format!("the detail is {size} bytes even cut, over the EventBridge limit"),
            status: None,
        })?;
    Ok(String::from_utf8(body).expect("JSON is UTF-8"))
}

impl Sink for EventBridgeSink {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let entry = PutEventsRequestEntry::builder()
                .event_bus_name(&self.event_bus)
                .source(SOURCE)
                .detail_type(DETAIL_TYPE)
                .detail(detail(finding, self.payload, now_ms())?)
                .build();
            let out = within(self.timeout, async {
                self.client
                    .get()
                    .await
                    .put_events()
                    .entries(entry)
                    .send()
                    .await
                    .map_err(|e| send_error(&e))
            })
            .await?;
            let failed = out.entries().iter().find(|e| e.error_code().is_some());
            match (out.failed_entry_count(), failed) {
                (0, None) => Ok(()),
                (_, Some(e)) => Err(classify_aws(
                    e.error_code(),
                    None,
                    e.error_message().unwrap_or_default(),
                )),
                (n, None) => Err(SendError::Retriable {
                    error: format!("{n} entry failed without an error code"),
                    retry_after: None,
                    status: None,
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::{check_golden, golden_findings, hostile};

    /// The PutEvents entry per golden finding and format, its detail
    /// parsed.
    #[test]
    fn golden() {
        for (name, f) in golden_findings() {
            for (p, suffix) in [(PayloadFormat::Json, "json"), (PayloadFormat::Ocsf, "ocsf")] {
                let d = detail(&f, p, 1_700_000_000_000).unwrap();
                let v = serde_json::json!({
                    "Source": SOURCE,
                    "DetailType": DETAIL_TYPE,
                    "Detail": serde_json::from_str::<serde_json::Value>(&d).unwrap(),
                });
                check_golden("eventbridge", &format!("{name}.{suffix}"), &v);
            }
        }
    }

    #[test]
    fn the_entry_stays_under_the_limit() {
        let mut f = hostile();
        let big = format!("{{\"userAgent\":\"{}\"}}", "\\\"".repeat(300_000));
        f.event = crate::finding::RawEvent::from_string(big).unwrap();
        for p in [PayloadFormat::Json, PayloadFormat::Ocsf] {
            let d = detail(&f, p, 0).unwrap();
            assert!(d.len() + SOURCE.len() + DETAIL_TYPE.len() <= MAX_BYTES);
            assert!(
                serde_json::from_str::<serde_json::Value>(&d)
                    .unwrap()
                    .is_object()
            );
        }
    }
}
