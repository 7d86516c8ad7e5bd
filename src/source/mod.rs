//! Sources: where CloudTrail events come from. Each turns its input into
//! [`crate::ack::Unit`]s and acknowledges them only when their outcome is Done.

pub mod checkpoint;
pub mod checkpoint_table;
pub mod cloudwatch_logs;
pub mod file;
pub mod handled;
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

/// A source that could not start, naming it.
#[derive(Debug, thiserror::Error)]
#[error("source `{source_name}`: {message}")]
pub struct SourceError {
    pub source_name: String,
    pub message: String,
}
