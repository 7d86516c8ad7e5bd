//! Request bodies for each kind of receiver. Pure: a finding in, bytes out.

pub mod check;
pub mod escape;
pub mod fit;
pub mod ocsf;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod webhook;

use crate::finding::Finding;

/// What the webhook, SNS and EventBridge sinks send: the finding JSON
/// (the default) or an OCSF Detection Finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Payload {
    #[default]
    Json,
    Ocsf,
}

impl Payload {
    pub const NAMES: &[&str] = &["json", "ocsf"];

    pub fn parse(s: &str) -> Option<Payload> {
        match s {
            "json" => Some(Payload::Json),
            "ocsf" => Some(Payload::Ocsf),
            _ => None,
        }
    }

    /// The body for `f`; `now_ms` is the OCSF `time` of an event whose own
    /// time does not parse.
    pub fn body(self, f: &Finding, now_ms: i64) -> Vec<u8> {
        match self {
            Payload::Json => webhook::body(f),
            Payload::Ocsf => {
                serde_json::to_vec(&ocsf::body(f, now_ms)).expect("a JSON value always serialises")
            }
        }
    }
}
