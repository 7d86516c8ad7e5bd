#![forbid(unsafe_code)]
//! rootwatch: watches AWS CloudTrail and alerts on root-user activity and
//! on calls from outside IP allow lists.

pub mod ack;
pub mod app;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod dedup;
pub mod detect;
pub mod enrich;
pub mod event;
pub mod finding;
pub mod healthcheck;
pub mod pipeline;
pub mod replay;
pub mod rules_cmd;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod test_alert;
pub mod throttle;

/// Fixtures shared by unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    /// Every plain CloudTrail record of tests/fixtures/third_party, one
    /// JSON text each, in file order.
    pub fn corpus_records() -> Vec<String> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/third_party");
        let mut out = Vec::new();
        for file in [
            "aws-docs-examples/records.jsonl",
            "invictus-aws-dataset/records.jsonl",
            "panther-analysis/all_test_logs_records.jsonl",
            "stratus-red-team/detonation_logs.jsonl",
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            out.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        }
        out
    }
}
