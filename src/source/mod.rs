//! Sources: where CloudTrail events come from. Each turns its input into
//! [`crate::ack::InputHandle`]s and acknowledges them only when their outcome is Done.

pub mod cloudwatch_logs;
pub mod file;
pub mod health;
pub mod s3;
pub mod sqs;

use std::time::Duration;

/// Jittered exponential backoff for source-side API errors: half to all of
/// `base * 2^attempt`, capped.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let half = ceiling / 2;
    half + ceiling.saturating_sub(half).mul_f64(rand::random::<f64>())
}

/// A panic's message, when it has one.
pub fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// A source that could not start, naming it.
#[derive(Debug, thiserror::Error)]
#[error("source `{source_name}`: {message}")]
pub struct SourceError {
    pub source_name: String,
    pub message: String,
}

/// Reports the S3 objects an input named to a source that does not fetch
/// them (`who`): one error each for those kept, one for the rest, every
/// one counted.
pub fn report_unfetched(
    source: &str,
    input: &str,
    who: &str,
    objects: &crate::pipeline::ObjectRefs,
) {
    for o in objects.kept() {
        crate::telemetry::source_error(
            source,
            "read",
            &format!("{input}: names {o}; {who} does not fetch S3 objects"),
        );
    }
    let rest = objects.named() - objects.kept().len() as u64;
    if rest > 0 {
        crate::telemetry::source_errors(
            source,
            "read",
            rest,
            &format!("{input}: names {rest} more S3 objects; {who} does not fetch S3 objects"),
        );
    }
}
