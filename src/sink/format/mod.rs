//! Request bodies for each kind of receiver. Pure: a finding in, bytes out.

pub mod alertmanager;
pub mod check;
pub mod escape;
pub mod fit;
pub mod ocsf;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod splunk;
pub mod syslog;
pub mod teams;
pub mod webhook;

use crate::finding::Finding;

/// The webhook, SNS and EventBridge payloads; the config chooses one.
pub use crate::config::PayloadFormat;

impl PayloadFormat {
    /// The body for `f`; `now_ms` is the OCSF `time` of an event whose own
    /// time does not parse.
    pub fn body(self, f: &Finding, now_ms: i64) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_body(f, now_ms, &mut out);
        out
    }

    /// Appends the body for `f` to `out`: a caller that writes many
    /// findings keeps one buffer instead of one allocation per finding.
    pub fn write_body(self, f: &Finding, now_ms: i64, out: &mut Vec<u8>) {
        match self {
            PayloadFormat::Json => f.write_json(out),
            PayloadFormat::Ocsf => serde_json::to_writer(out, &ocsf::body(f, now_ms))
                .expect("a JSON value always serialises"),
        }
    }
}
